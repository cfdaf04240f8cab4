"""BiRefNet on the stream (random Swin-T weights in the official file format through the real
loader) and its temporal stabiliser as a plain function: on a synthetic moving square (edge lag
in pixels) and on a real clip's RVM matte (real weights) with per-frame segmentation-like noise."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from conftest import clip, shared_model
from remaster import host
from remaster.media.decode import open_video
from remaster.models import birefnet
from remaster.models.swin import SWIN_T
from remaster.stages import matting
from remaster.stream import from_tensor


def _lite_file() -> tuple[str, birefnet.BiRefNet]:
    torch.manual_seed(0)
    net = birefnet.BiRefNet(SWIN_T).eval()
    d = host.model_dirs("matting")[0] / "birefnet-lite"
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: (v.half() if v.is_floating_point() else v) for k, v in net.state_dict().items()},
              str(d / "model.safetensors"), metadata={"format": "pt"})
    return "birefnet-lite", birefnet.load(d / "model.safetensors")


def _frames(n: int, h: int = 72, w: int = 128) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, h, w, 3, generator=g).expand(n, h, w, 3).clone()
    for t in range(n):  # a bright square moving right over a still background
        base[t, 20:50, 10 + 4 * t : 40 + 4 * t] = torch.tensor([0.9, 0.8, 0.7])
    return base


def test_birefnet_matte_on_stream_matches_the_network(monkeypatch):
    monkeypatch.setattr(matting, "compute_dtype", lambda device: torch.float32)
    model, net = _lite_file()
    frames = _frames(4)
    src = from_tensor(frames)
    out = matting.birefnet_matte(src, model, resolution=128, stabilise=0.0)
    got = out.read()
    assert out.info.has_mask and got.mask.shape == (4, 72, 128)
    assert torch.equal(got.frames, frames)
    x = F.interpolate(frames.permute(0, 3, 1, 2), size=(128, 128), mode="bilinear", align_corners=False, antialias=True)
    with torch.inference_mode():
        want = F.interpolate(net(birefnet.normalise(x)), size=(72, 128), mode="bilinear", align_corners=False)[:, 0]
    assert float((got.mask - want).abs().max()) < 1e-5
    assert float(got.mask.std()) > 1e-3


def test_birefnet_matte_stabilised_range_render_and_cuts(monkeypatch):
    monkeypatch.setattr(matting, "compute_dtype", lambda device: torch.float32)
    model, _ = _lite_file()
    frames = _frames(14)
    src = from_tensor(frames)
    raw = matting.birefnet_matte(src, model, resolution=128, stabilise=0.0).read().mask
    full = matting.birefnet_matte(src, model, resolution=128, stabilise=0.5).read().mask
    assert torch.equal(full[0], raw[0]) and not torch.equal(full[1:], raw[1:])
    assert matting.stabiliser_warmup(0.5) == 10
    part = matting.birefnet_matte(src, model, resolution=128, stabilise=0.5).read(12, 14).mask
    assert float((part - full[12:14]).abs().max()) < 2e-3  # warm-up from frame 2 is enough
    cut = matting.birefnet_matte(src.with_info(scene_cuts=(7,)), model, resolution=128, stabilise=0.5).read().mask
    assert torch.equal(cut[7], raw[7]) and torch.equal(cut[:7], full[:7])


def test_birefnet_matte_rejects_bad_settings():
    src = from_tensor(torch.zeros(1, 64, 64, 3))
    with pytest.raises(ValueError, match="multiple of 32"):
        matting.birefnet_matte(src, "birefnet-lite", resolution=1000)
    with pytest.raises(ValueError, match="stabilise"):
        matting.birefnet_matte(src, "birefnet-lite", stabilise=1.0)
    with pytest.raises(ValueError, match="patch_order"):
        matting.birefnet_matte(src, "birefnet-lite", patch_order="rows")


# ---- the stabiliser as a plain function ------------------------------------------------------
def segmentation_noise(alpha: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Per-frame flicker like a per-frame segmenter's: the matte jittered by up to 1 px, blotchy
    noise in a band around its edges, faint noise everywhere."""
    g = torch.Generator().manual_seed(seed)
    n, h, w = alpha.shape
    out = []
    for t in range(n):
        a = alpha[t][None, None]
        dx, dy = (torch.rand(2, generator=g) * 2 - 1).tolist()
        theta = torch.tensor([[[1, 0, 2 * dx / w], [0, 1, 2 * dy / h]]])
        a = F.grid_sample(a, F.affine_grid(theta, list(a.shape), align_corners=False), align_corners=False,
                          padding_mode="border")
        band = F.max_pool2d(((a > 0.1) & (a < 0.9)).float(), 13, 1, 6)
        blobs = F.avg_pool2d(torch.randn(1, 1, h, w, generator=g), 7, 1, 3) * 1.05
        out.append((a + blobs * band + 0.03 * torch.randn(1, 1, h, w, generator=g))[0, 0].clamp(0, 1))
    return torch.stack(out)


def stabilise(frames: torch.Tensor, alpha: torch.Tensor, **kw) -> torch.Tensor:
    s = matting.AlphaStabiliser(**kw)
    return torch.stack([s.step(frames[i], alpha[i]) for i in range(len(alpha))])


def flicker_and_motion(frames, clean, m) -> tuple[float, float, float]:
    """(mean |d alpha| over still pixels, mean |alpha - clean| and agreement with clean on the
    side of 0.5 over pixels the clean matte crosses between frames)."""
    still = (frames[1:] - frames[:-1]).abs().amax(-1) < 0.03
    moving = (clean[1:] - clean[:-1]).abs() > 0.5
    assert float(still.float().mean()) > 0.5 and int(moving.sum()) > 200
    return (float((m[1:] - m[:-1]).abs()[still].mean()), float((m[1:] - clean[1:]).abs()[moving].mean()),
            float(((m[1:] > 0.5) == (clean[1:] > 0.5))[moving].float().mean()))


def test_stabiliser_still_picture_passes_unchanged_and_validates():
    frames = torch.rand(1, 16, 16, 3).expand(5, 16, 16, 3)
    alpha = torch.rand(1, 16, 16).expand(5, 16, 16)
    assert torch.equal(stabilise(frames, alpha), alpha)
    with pytest.raises(ValueError, match="stabilise"):
        matting.AlphaStabiliser(strength=-0.1)


def test_stabiliser_moving_square_edges_do_not_lag():
    n, h, w, v = 16, 64, 160, 5  # square moving v px per frame over a textured still background
    g = torch.Generator().manual_seed(2)
    frames = (0.3 + 0.2 * torch.rand(1, h, w, 3, generator=g)).expand(n, h, w, 3).clone()
    clean = torch.zeros(n, h, w)
    for t in range(n):
        x0 = 20 + v * t
        frames[t, 16:48, x0 : x0 + 40] = 0.85 + 0.1 * torch.rand(32, 40, 3, generator=g)
        clean[t, 16:48, x0 : x0 + 40] = 1
    noisy = segmentation_noise(clean)
    out = stabilise(frames, noisy)
    for t in range(1, n):  # edges where the rows cross 0.5, against the true edges
        row = out[t, 24:40].mean(0)
        inside = torch.nonzero(row > 0.5)[:, 0]
        left, right = int(inside.min()), int(inside.max()) + 1
        assert abs(left - (20 + v * t)) <= 1 and abs(right - (60 + v * t)) <= 1, (t, left, right)
    f_raw, e_raw, s_raw = flicker_and_motion(frames, clean, noisy)
    f_out, e_out, s_out = flicker_and_motion(frames, clean, out)
    assert f_out < f_raw / 2  # measured 0.029 -> 0.012
    assert e_out <= e_raw + 0.01 and s_out >= s_raw - 0.01


def test_stabiliser_on_a_real_matte_damps_flicker_without_trailing(tmp_path):
    """RVM's matte (real weights) of the juggler as the truth, segmentation-like noise added per
    frame: the stabilised matte flickers at least 2.5x less where the picture is still and is no
    further from the truth where the juggler moves."""
    src_model = shared_model("matting/rvm_mobilenetv3.pth")
    d = host.model_dirs("matting")[0]
    d.mkdir(parents=True, exist_ok=True)
    (d / src_model.name).symlink_to(src_model)
    src = open_video(clip("juggle_720p24.mp4"), end_time=1.5, max_side=256)
    got = matting.rvm_matte(src, src_model.name).read()
    frames, clean = got.frames, got.mask
    noisy = segmentation_noise(clean)
    f_raw, e_raw, s_raw = flicker_and_motion(frames, clean, noisy)
    f_out, e_out, s_out = flicker_and_motion(frames, clean, stabilise(frames, noisy))
    assert f_out < f_raw / 2.5
    assert e_out <= e_raw + 0.015 and s_out >= s_raw - 0.02


def test_quality_matting_node_runs_the_stage(monkeypatch):
    from nodes.masks import NODE_CLASS_MAPPINGS, RemasterQualityMatting

    assert NODE_CLASS_MAPPINGS["RemasterQualityMatting"] is RemasterQualityMatting
    monkeypatch.setattr(matting, "compute_dtype", lambda device: torch.float32)
    model, _ = _lite_file()
    names = RemasterQualityMatting.INPUT_TYPES()["required"]["model"][0]
    assert "birefnet-lite/model.safetensors" in names and "rvm_mobilenetv3.pth" not in names
    src = from_tensor(_frames(3))
    (out,) = RemasterQualityMatting().run(src, "birefnet-lite/model.safetensors", resolution=128, stabilize=0.0)
    want = matting.birefnet_matte(src, model, resolution=128, stabilise=0.0).read().mask
    assert torch.equal(out.read().mask, want)
