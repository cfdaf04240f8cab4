"""Face restore stage: detectors on a real clip, random-weight GFPGAN / CodeFormer checkpoints in
the official layout through the real loader, untouched pixels outside the face, zero-face no-op,
landmark smoothing and its reset at scene cuts."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import clip, shared_model
from remaster import host
from remaster.media.decode import open_video
from remaster.models import registry
from remaster.stages import face_restore as fr
from remaster.stream import from_tensor


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict:
    """Random-weight GFPGAN v1 clean and CodeFormer, saved like the official releases
    (``{"params_ema": state_dict}`` in a .pth) from spandrel's own architecture classes."""
    from spandrel.architectures.GFPGAN import GFPGAN

    d = tmp_path_factory.mktemp("face_ckpt")
    torch.manual_seed(0)
    out = {}
    g = GFPGAN()
    torch.save({"params_ema": g.state_dict()}, d / "random_gfpgan.pth")
    out["gfpgan"] = d / "random_gfpgan.pth"
    try:
        from spandrel_extra_arches.architectures.CodeFormer import CodeFormer

        c = CodeFormer()
        torch.save({"params_ema": c.state_dict()}, d / "random_codeformer.pth")
        out["codeformer"] = d / "random_codeformer.pth"
    except ImportError:
        pass
    return out


def place(src: Path, folder: str, name: str | None = None) -> str:
    d = host.model_dirs(folder)[0]
    d.mkdir(parents=True, exist_ok=True)
    name = name or src.name
    os.symlink(src, d / name)
    return name


@pytest.fixture()
def yunet() -> str:
    return place(shared_model("face/face_detection_yunet.onnx"), fr.DETECT_FOLDER)


@pytest.fixture()
def retina() -> str:
    # the registry knows this file (sha256 verified) as the Face-Detector-1MB training
    return place(shared_model("face/retinaface_mobilenet0.25.pth"), fr.DETECT_FOLDER)


def head_frames(n: int, size: int = 256) -> torch.Tensor:
    """The first ``n`` frames of the talking-head clip, scaled to ``size`` square."""
    s = open_video(str(clip("talking_head_512_30_audio.mp4")), width=size, height=size)
    f = s.read(0, n).frames
    assert f.shape[1:3] == (size, size)
    return f.contiguous()


@pytest.fixture(scope="session")
def head_clip_256() -> np.ndarray:
    """Every frame (448) of the talking-head clip at 256x256, uint8 (decoded once)."""
    s = open_video(str(clip("talking_head_512_30_audio.mp4")), width=256, height=256)
    out = [np.clip(c.frames.numpy() * 255 + 0.5, 0, 255).astype(np.uint8) for c in s.chunks(64)]
    return np.concatenate(out)


@pytest.mark.parametrize("which", ["yunet", "retina"])
def test_detectors_find_the_face_on_every_frame(which, request, head_clip_256):
    """All 448 frames of the talking-head clip (at 256x256, the face is ~100 px wide): one
    confident face, inside the frame, eyes above the mouth, and a track that never jumps."""
    name = request.getfixturevalue(which)
    det = fr.FaceDetector(name, 0.6, det_size=256)
    assert len(head_clip_256) == 448
    prev = None
    for n, f in enumerate(head_clip_256):
        faces = det(f.astype(np.float32) / 255)
        assert len(faces) >= 1, f"no face on frame {n}"
        x1, y1, x2, y2, score = faces[0, :5]
        pts = faces[0, 5:].reshape(5, 2)
        assert score >= 0.6 and -10 <= x1 < x2 <= 266 and -10 <= y1 < y2 <= 286
        assert x2 - x1 > 50  # the close-up face is big
        assert pts[0, 1] < pts[3, 1] and pts[1, 1] < pts[4, 1]  # eyes above mouth corners
        assert pts[0, 0] < pts[1, 0]  # image-left eye first
        c = pts.mean(0)
        if prev is not None:
            assert np.linalg.norm(c - prev) < 20  # no jump to another place
        prev = c


def test_retinaface_variant_comes_from_the_registry(retina):
    e = registry.by_filename("retinaface_mobilenet0.25.pth", fr.DETECT_FOLDER)
    assert e is not None and e.extra.get("variant") == "1mb"
    assert registry.hash_matches(registry.resolve(retina, fr.DETECT_FOLDER), e)


def _face_box(det: fr.FaceDetector, frame: np.ndarray) -> tuple:
    """Bounding box of the pasted square for the best face (as the stage computes it)."""
    faces = det(frame)
    pts = faces[0, 5:].reshape(5, 2)
    M = fr.align_matrix(pts)
    inv = cv2.invertAffineTransform(M)
    corners = np.array([[0, 0, 1], [512, 0, 1], [0, 512, 1], [512, 512, 1]], np.float32) @ inv.T
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    return max(0, x0), max(0, y0), x1, y1


def test_gfpgan_checkpoint_restores_only_inside_the_face(checkpoints, yunet):
    model = place(checkpoints["gfpgan"], fr.RESTORE_FOLDER, "GFPGANv1.4_random.pth")
    desc = fr.load_restorer(model)
    assert desc.architecture.id == "GFPGAN"
    frames = head_frames(2, 256)
    # a wide canvas so that most pixels are far from the face
    canvas = torch.full((2, 256, 448, 3), 0.3)
    canvas[:, :, 96:352] = frames
    out = fr.face_restore(from_tensor(canvas), model, yunet, strength=1.0, smoothing=0.0).read().frames
    assert out.shape == canvas.shape
    det = fr.FaceDetector(yunet, 0.6)
    for i in range(2):
        x0, y0, x1, y1 = _face_box(det, canvas[i].numpy())
        changed = (out[i] != canvas[i]).any(-1)
        inside = torch.zeros_like(changed)
        inside[y0:y1, x0:x1] = True
        assert not bool(changed[~inside].any()), "pixels outside the face square changed"
        assert float(changed[inside].float().mean()) > 0.3  # the face really was replaced
        # the feathered mask: the centre is fully the restored face, the border still original
        assert bool(changed[(y0 + y1) // 2, (x0 + x1) // 2])


def test_codeformer_checkpoint_runs_through_the_stage(checkpoints, yunet):
    if "codeformer" not in checkpoints:
        pytest.skip("spandrel-extra-arches is not installed")
    model = place(checkpoints["codeformer"], fr.RESTORE_FOLDER, "codeformer_random.pth")
    desc = fr.load_restorer(model)
    assert desc.architecture.id == "CodeFormer"
    frames = head_frames(1, 160)
    out = fr.face_restore(from_tensor(frames), model, yunet, codeformer_fidelity=0.7).read().frames
    x0, y0, x1, y1 = _face_box(fr.FaceDetector(yunet, 0.6), frames[0].numpy())
    changed = (out[0] != frames[0]).any(-1)
    assert bool(changed[(y0 + y1) // 2, (x0 + x1) // 2]) and torch.isfinite(out).all()
    outside = torch.ones_like(changed)
    outside[y0:y1, x0:x1] = False
    assert not bool(changed[outside].any())


def test_zero_faces_is_a_no_op(checkpoints, retina):
    model = place(checkpoints["gfpgan"], fr.RESTORE_FOLDER, "gfpgan_random.pth")
    g = torch.Generator().manual_seed(3)
    frames = torch.nn.functional.interpolate(torch.rand(3, 3, 12, 16, generator=g), size=(120, 160),
                                             mode="bilinear").permute(0, 2, 3, 1).contiguous()
    s = from_tensor(frames)
    out = fr.face_restore(s, model, retina).read().frames
    assert torch.equal(out, frames)


def test_faces_below_min_size_are_left_alone(checkpoints, yunet):
    model = place(checkpoints["gfpgan"], fr.RESTORE_FOLDER, "gfpgan_random.pth")
    frames = head_frames(1, 128)
    out = fr.face_restore(from_tensor(frames), model, yunet, min_face_size=200).read().frames
    assert torch.equal(out, frames)


def test_landmark_smoothing_steadies_and_resets():
    rng = np.random.default_rng(0)
    base = fr.TEMPLATE_512 * 0.5 + 100
    sm = fr.LandmarkSmoother(smoothing=0.8)
    raw, smooth = [], []
    for i in range(40):
        pts = base + rng.normal(0, 1.0, base.shape)
        face = np.concatenate([[80, 80, 280, 300, 0.9], pts.ravel()]).astype(np.float32)[None]
        raw.append(pts)
        smooth.append(sm(i, face)[0])
    jitter_raw = np.std(np.diff(np.array(raw), axis=0))
    jitter_smooth = np.std(np.diff(np.array(smooth[5:]), axis=0))
    assert jitter_smooth < 0.5 * jitter_raw
    # a big move (another shot, or a fast turn) is followed at once, no lag
    moved = base + 60
    face = np.concatenate([[140, 140, 340, 360, 0.9], moved.ravel()]).astype(np.float32)[None]
    assert np.allclose(sm(40, face)[0], moved)
    # a reset (scene cut) forgets the history
    sm.reset()
    assert sm.tracks == []


def test_stage_resets_tracks_at_scene_cuts(checkpoints, yunet):
    """Frame 1 is frame 0 moved by 6 pixels. With heavy smoothing the track lags behind the
    detection; with a scene cut at frame 1 the track restarts exactly at the detection."""
    model = place(checkpoints["gfpgan"], fr.RESTORE_FOLDER, "gfpgan_random.pth")
    desc = fr.load_restorer(model)
    det = fr.FaceDetector(yunet, 0.6)
    f0 = head_frames(1, 160)[0]
    f1 = torch.roll(f0, shifts=(6, 6), dims=(0, 1))
    chunk = from_tensor(torch.stack([f0, f1])).read()
    raw1 = det(f1.numpy())[0, 5:].reshape(5, 2)
    lags = {}
    for cuts in ([], [1]):
        r = fr.FaceRestorer(desc, det, smoothing=0.9, cuts=cuts, device=torch.device("cpu"), precision="fp32")
        assert len(r.locate(chunk)) == 2  # detection, tracking and alignment, no restoration
        assert len(r.smoother.tracks) == 1
        lags[len(cuts)] = float(np.abs(r.smoother.tracks[0]["pts"] - raw1).max())
    assert lags[1] < 1e-6
    assert lags[0] > 1.0


def test_bad_settings_name_the_input(checkpoints, yunet):
    model = place(checkpoints["gfpgan"], fr.RESTORE_FOLDER, "gfpgan_random.pth")
    s = from_tensor(torch.rand(1, 32, 32, 3))
    with pytest.raises(fr.FaceRestoreError, match="strength"):
        fr.face_restore(s, model, yunet, strength=2)
    with pytest.raises(fr.FaceRestoreError, match="min_face_size"):
        fr.face_restore(s, model, yunet, min_face_size=-1)
    with pytest.raises(registry.ModelNotFound, match="facerestore_models"):
        fr.face_restore(s, "GFPGANv1.4.pth", yunet)
    up_dir = host.model_dirs(fr.RESTORE_FOLDER)[0]
    torch.save({"params": {"conv_first.weight": torch.zeros(64, 3, 3, 3)}}, up_dir / "not_a_face_model.pth")
    with pytest.raises(fr.FaceRestoreError):
        fr.face_restore(s, "not_a_face_model.pth", yunet)
