"""Inpainting by keyframes: exact pixels outside the mask, static composites, motion following,
selection and jump handling, and the whole workflow with a tiny random-weight diffusers pipeline."""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import clip
from remaster import host
from remaster.media.decode import open_video
from remaster.stages import inpaint as inp
from remaster.stages.inpaint.keyframes import analyse_keyframes
from remaster.stages.package import comparison
from remaster.stream import from_tensor

sys.path.insert(0, str(Path(__file__).parent))
from tiny_sd import build_tiny_inpaint_pipeline  # noqa: E402


def recolour(image, mask, seed):
    """Stand-in edit: swap colour channels (a very visible 'new shirt'), stronger per candidate."""
    out = image[0][..., [2, 0, 1]].clone()
    return out * (1.0 - 0.1 * (seed % 3))


def _run(stream, fn=recolour, picks="", count=2, **prop):
    plan = analyse_keyframes(stream, **prop.pop("kf", {}))
    cands = inp.inpaint_keyframes(stream, plan, inp.CallableInpaint(fn), count=count, resolution=128)
    sel = inp.select_candidates(cands, picks)
    return plan, cands, sel, inp.propagate(stream, sel, **prop)


def test_pixels_outside_dilated_mask_equal_source_decode():
    """The final video (encoded losslessly with FFV1 by the core encoder, decoded back) equals a
    fresh decode of the source everywhere outside the dilated mask."""
    from remaster.media.encode import save_video

    path = clip("juggle_720p24.mp4")
    src = inp.rectangle_mask(open_video(path, max_side=320, end_time=0.7), 0.35, 0.25, 0.3, 0.45)
    plan, cands, sel, out = _run(src, kf={"min_group": 2})
    final = save_video(out, "inpainted", "ffv1_mkv")
    got = open_video(final).read()
    ref = open_video(path, max_side=320, end_time=0.7).read()  # a fresh decode
    assert got.frames.shape == ref.frames.shape
    region = inp.edit_region(src.read().mask, grow=4, radius=8)
    outside = ~region[..., None].expand_as(got.frames)
    # the decoder gives float RGB straight from YUV; FFV1 RGB stores 8 bits: equal to within that rounding
    assert float((got.frames[outside] - ref.frames[outside]).abs().max()) <= 0.5 / 255 + 1e-6
    # and the edit is really there inside the mask
    inside = region[..., None].expand_as(got.frames)
    assert float((got.frames - ref.frames).abs()[inside].mean()) > 0.03


@pytest.mark.parametrize("mode", ["delta", "replace"])
def test_static_scene_composite_identical_on_every_frame(mode):
    frame = open_video(clip("dog_720p30_audio.mp4"), max_side=256, end_time=0.1).read().frames[:1]
    frames = frame.expand(12, -1, -1, -1).clone()
    s = inp.rectangle_mask(from_tensor(frames, 30), 0.3, 0.3, 0.3, 0.4)
    plan, cands, sel, out = _run(s, kf={"min_group": 2}, mode=mode)
    assert plan.keyframes == [0]
    got = out.read().frames
    for i in range(1, 12):
        assert torch.equal(got[i], got[0]), f"frame {i} differs from the keyframe's composite"
    assert not torch.equal(got[0], frames[0])


def _marker_fn(fx, fy, size=6):
    def fn(image, mask, seed):
        out = image[0].clone()
        h, w = out.shape[:2]
        cx, cy = int(round(fx * w)), int(round(fy * h))
        out[cy - size // 2: cy + size // 2, cx - size // 2: cx + size // 2] = torch.tensor([0.0, 1.0, 0.0])
        return out
    return fn


def test_propagated_edit_follows_motion_on_real_clip():
    # a child jumping on a bed: a textured patch moves ~10 px down in 8 frames
    src = inp.rectangle_mask(open_video(clip("bedroom_540p30.mp4"), max_side=320, end_time=0.3),
                             0.06, 0.06, 0.38, 0.88)
    n = src.info.frame_count
    first = src.read(0, 1)
    x0, y0, x1, y1 = inp.crop_box(first.mask[0], 0.25, 4 + 16 + 8)
    mx, my = 70, 80  # marker centre in frame pixels, on the moving child
    fn = _marker_fn((mx - x0) / (x1 - x0), (my - y0) / (y1 - y0))
    plan, cands, sel, out = _run(src, fn=fn, count=1, blend=0, kf={"min_group": 64, "max_group": 64})
    assert plan.keyframes == [0]
    got, ref = out.read(), src.read()
    g0 = (ref.frames[0].numpy().mean(-1) * 255).astype(np.uint8)
    P = 24
    tmpl = g0[my - P // 2: my + P // 2, mx - P // 2: mx + P // 2]
    moved = 0.0
    for t in range(n):
        # where did the source content under the marker go (template matching, independent of our flow)?
        gt = (ref.frames[t].numpy().mean(-1) * 255).astype(np.uint8)
        r = cv2.matchTemplate(gt, tmpl, cv2.TM_CCOEFF_NORMED)
        _, score, _, loc = cv2.minMaxLoc(r)
        tx, ty = loc[0] + P // 2, loc[1] + P // 2
        # where is the marker in the output?
        o, s = got.frames[t].numpy(), ref.frames[t].numpy()
        green = (o[..., 1] - (o[..., 0] + o[..., 2]) / 2) - (s[..., 1] - (s[..., 0] + s[..., 2]) / 2)
        ys, xs = np.nonzero(green > 0.35)
        assert len(xs) > 8, f"marker lost at frame {t}"
        cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
        assert score > 0.8
        assert abs(cx - tx) < 2.5 and abs(cy - ty) < 2.5, f"frame {t}: marker at {cx:.1f},{cy:.1f}, content at {tx},{ty}"
        moved = max(moved, float(np.hypot(tx - mx, ty - my)))
    assert moved >= 6.0  # the content really moved, so a static paste would have failed


def test_selection_auto_manual_and_drop():
    frames = torch.full((16, 64, 96, 3), 0.5)
    frames[8:, 20:40, 30:60] = 0.6  # a change inside the mask at frame 8 → two groups
    s = inp.rectangle_mask(from_tensor(frames, 24), 0.25, 0.25, 0.5, 0.5)

    def fn(image, mask, seed):  # candidate 0 garish everywhere, candidate 1 only changes inside the mask
        out = image[0].clone()
        m = mask[0, ..., None] > 0.5
        if seed % 2 == 0:
            return torch.ones_like(out)
        return torch.where(m, out * 0.5, out)

    plan = analyse_keyframes(s, min_group=2)
    assert plan.keyframes == [0, 8]
    cands = inp.inpaint_keyframes(s, plan, inp.CallableInpaint(fn), count=2, resolution=64)
    auto = inp.select_candidates(cands)
    assert auto.picks == [1, 1]
    manual = inp.select_candidates(cands, "0, drop")
    assert manual.picks == [0, None] and manual.manual == [True, True]
    out = inp.propagate(s, manual, blend=0).read().frames
    assert torch.equal(out[8:], frames[8:])  # dropped group stays original
    assert not torch.equal(out[:8], frames[:8])
    with pytest.raises(ValueError, match="pick"):
        inp.select_candidates(cands, "5")
    with pytest.raises(ValueError, match="cannot read"):
        inp.select_candidates(cands, "blue")


def test_jumping_group_is_reported_and_dropped():
    frames = torch.full((16, 64, 96, 3), 0.4)
    frames[8:, 20:40, 30:60] = 0.45
    s = inp.rectangle_mask(from_tensor(frames, 24), 0.25, 0.25, 0.5, 0.5)
    calls = []

    def fn(image, mask, seed):  # keyframe 0: mild edit; keyframe 1: a wild one
        if seed == 0:
            calls.append(1)
        return image[0] * 0.9 if len(calls) == 1 else image[0] * 0.0 + torch.tensor([1.0, 0.0, 1.0])

    plan = analyse_keyframes(s, min_group=2)
    cands = inp.inpaint_keyframes(s, plan, inp.CallableInpaint(fn), count=1, resolution=64)
    sel = inp.select_candidates(cands)
    kept = inp.propagate(s, sel, blend=0, on_jump="drop", jump_threshold=0.05)
    assert kept.info.get_extra("inpaint_dropped") == (1,)
    scores = kept.info.get_extra("inpaint_jump_scores")
    assert scores[1] > 0.05 > scores[0]
    out = kept.read().frames
    assert torch.equal(out[8:], frames[8:])
    assert not torch.equal(out[:8], frames[:8])


def test_comparison_layouts_and_report(tmp_path):
    frames = torch.rand(6, 32, 48, 3)
    s = inp.rectangle_mask(from_tensor(frames, 24), 0.25, 0.25, 0.5, 0.5)
    plan, cands, sel, out = _run(s, kf={"min_group": 1})
    report = tmp_path / "r.json"
    side = comparison(s, out, "side_by_side", sel, report)
    got = side.read().frames
    assert got.shape == (6, 32, 96, 3)
    assert torch.equal(got[:, :, :48], frames)
    rep = json.loads(report.read_text())
    assert rep["keyframes"] == plan.keyframes and len(rep["picks"]) == len(plan.keyframes)
    assert len(rep["jump_scores"]) == len(plan.groups) and "inpaint_settings" in rep
    wipe = comparison(s, out, "wipe").read().frames
    assert wipe.shape == frames.shape
    assert torch.equal(wipe[-1][:, :40], frames[-1][:, :40])  # late frames: mostly "before"
    with pytest.raises(ValueError, match="layout"):
        comparison(s, out, "diagonal")


def test_errors_name_the_fix():
    s = from_tensor(torch.rand(4, 32, 32, 3))
    plan = analyse_keyframes(s)
    with pytest.raises(ValueError, match="mask"):
        inp.inpaint_keyframes(s, plan, inp.CallableInpaint(recolour))
    with pytest.raises(FileNotFoundError, match="models"):
        inp.resolve_diffusers_folder("nope")
    with pytest.raises(ValueError, match="min_group"):
        analyse_keyframes(s, min_group=5, max_group=2)


def test_tiny_diffusers_pipeline_runs_the_workflow_end_to_end(tmp_path):
    """The shipped API workflow, run by the real runner, with a random-weight diffusers folder."""
    from remaster.headless import runner
    from remaster.headless.cli import node_mappings

    video = clip("juggle_720p24.mp4")
    build_tiny_inpaint_pipeline(host.model_dirs("diffusers")[0] / "tiny-inpaint")
    prompt = runner.load_workflow(Path(__file__).parents[2] / "workflows/api/inpainting.json")
    out_video = tmp_path / "edited.mp4"
    prompt = runner.apply_overrides(prompt, [
        "Load Video.max_side=192", "Load Video.end_time=0.5",
        "Inpaint Keyframes.diffusers_model=tiny-inpaint", "Inpaint Keyframes.steps=4",
        "Inpaint Keyframes.resolution=128", "Inpaint Keyframes.candidates=2",
        "Keyframes.min_group=3",
    ], str(video), str(out_video))
    result = runner.run(prompt, node_mappings())
    assert out_video.is_file()
    edited = open_video(out_video).read()
    source = open_video(video, max_side=192, end_time=0.5).read()
    assert edited.frames.shape == source.frames.shape
    reports = list((host.output_dir() / "remaster").glob("inpaint_report_*.json"))
    assert len(reports) == 1
    rep = json.loads(reports[0].read_text())
    assert rep["frames"] == source.frames.shape[0]
    assert rep["inpaint_settings"]["backend"] == "diffusers" and rep["inpaint_settings"]["model"] == "tiny-inpaint"
    assert all(isinstance(p["pick"], int) for p in rep["picks"])
    comp = [p for p in runner.output_paths(result) if "comparison" in p]
    assert comp and open_video(comp[0]).info.width == 2 * source.frames.shape[2]
    # the random model changed the masked region (and the encoder kept the rest close to the source)
    H, W = source.frames.shape[1:3]
    ys, xs = slice(int(0.3 * H) + 4, int(0.7 * H) - 4), slice(int(0.35 * W) + 4, int(0.65 * W) - 4)
    assert float((edited.frames[:, ys, xs] - source.frames[:, ys, xs]).abs().mean()) > 0.03
    assert float((edited.frames[:, :, :20] - source.frames[:, :, :20]).abs().mean()) < 0.02


def test_blend_fades_between_groups():
    frames = torch.full((16, 64, 96, 3), 0.5)
    frames[8:, 20:40, 30:60] = 0.55  # a change inside the mask at frame 8 → groups [0,8) and [8,16)
    s = inp.rectangle_mask(from_tensor(frames, 24), 0.25, 0.25, 0.5, 0.5)
    seen = []

    def fn(image, mask, seed):  # keyframe 0 → dark edit, keyframe 8 → bright edit
        seen.append(1)
        return image[0] * 0.0 + (0.1 if len(seen) == 1 else 0.9)

    plan = analyse_keyframes(s, min_group=2)
    cands = inp.inpaint_keyframes(s, plan, inp.CallableInpaint(fn), count=1, resolution=64)
    out = inp.propagate(s, inp.select_candidates(cands), blend=3).read().frames
    centre = out[:, 32, 48, 0]  # a pixel deep inside the mask
    assert abs(float(centre[0]) - 0.1) < 0.02 and abs(float(centre[8]) - 0.9) < 0.02
    assert float(centre[4]) == pytest.approx(float(centre[0]), abs=1e-4)  # before the blend window
    ramp = [float(centre[i]) for i in (4, 5, 6, 7, 8)]
    assert all(b > a + 0.1 for a, b in zip(ramp, ramp[1:]))  # 5, 6, 7 fade towards the next edit


def test_node_inputs_have_tooltips_and_category():
    from nodes import inpaint as nodes_inpaint

    for key, cls in nodes_inpaint.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY == "Remaster/Inpaint" and cls.DESCRIPTION and key in nodes_inpaint.NODE_DISPLAY_NAME_MAPPINGS
        types = cls.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, spec in types.get(section, {}).items():
                assert spec[1].get("tooltip"), f"{key}.{name} has no tooltip"


def test_comfy_backend_calls_comfyui_nodes(monkeypatch):
    """The ComfyUI back-end (ComfyInpaint) against a stand-in for ComfyUI's ``nodes`` module:
    one KSampler call per candidate with seeds seed, seed+1, ..., denoise = strength, the noise mask
    asked for, and results put back to the crop's size (ComfyUI crops to multiples of 8). Checked in
    a real ComfyUI too (random-weight 9-channel SD1.5 inpainting checkpoint, whole workflow)."""
    import types

    calls = {"encode": [], "sample": []}

    class CLIPTextEncode:
        def encode(self, clip, text):
            calls["encode"].append(text)
            return ([[torch.zeros(1, 77, 8), {}]],)

    class InpaintModelConditioning:
        def encode(self, positive, negative, pixels, vae, mask, noise_mask=True):
            calls["noise_mask"] = noise_mask
            h, w = pixels.shape[1] // 8 * 8, pixels.shape[2] // 8 * 8
            return positive, negative, {"samples": torch.zeros(1, 4, h // 8, w // 8)}

    def common_ksampler(model, seed, steps, cfg, sampler_name, scheduler, pos, neg, latent, denoise=1.0):
        calls["sample"].append((seed, steps, cfg, sampler_name, scheduler, denoise))
        return ({"samples": latent["samples"] + seed},)

    class VAE:
        def decode(self, s):
            b, _, h, w = s.shape
            return torch.full((b, h * 8, w * 8, 3), float(s[0, 0, 0, 0]) / 10.0)

    fake = types.SimpleNamespace(CLIPTextEncode=CLIPTextEncode, InpaintModelConditioning=InpaintModelConditioning,
                                 common_ksampler=common_ksampler)
    monkeypatch.setitem(sys.modules, "nodes", fake)
    monkeypatch.setattr(host.comfy, "IN_COMFYUI", True)
    image, mask = torch.rand(1, 37, 52, 3), torch.zeros(1, 37, 52)
    backend = inp.ComfyInpaint(object(), object(), VAE(), "dpmpp_2m", "karras")
    out = backend.generate(image, mask, prompt="a red shirt", negative="", strength=0.4, seed=3, steps=5,
                           guidance=6.0, count=3)
    assert out.shape == (3, 37, 52, 3)
    assert calls["encode"] == ["a red shirt", ""] and calls["noise_mask"] is True
    assert calls["sample"] == [(s, 5, 6.0, "dpmpp_2m", "karras", 0.4) for s in (3, 4, 5)]
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([0.3, 0.4, 0.5]))
    assert backend.describe() == {"backend": "comfyui", "sampler": "dpmpp_2m", "scheduler": "karras"}
