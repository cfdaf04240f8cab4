"""Temporal Consistency on real clips: after a deliberately flickering per-frame stage and after
the real upscaler, warping error down by half or more at no PSNR cost; no ghosting around a fast
hand or at a scene cut; bad input refused before any work."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import clip, shared_model
from remaster.analysis import flow as flowlib
from remaster.media.decode import open_video
from remaster.stages import temporal_consistency as tc
from remaster.stream import from_tensor


def psnr(a, b):
    return 10 * math.log10(1.0 / float(((a.float() - b.float()) ** 2).mean()))


def flickering_stage(clean: torch.Tensor, seed: int = 1) -> torch.Tensor:
    """A per-frame stage that invents different texture and brightness on every frame."""
    g = torch.Generator().manual_seed(seed)
    n, h, w, _ = clean.shape
    gain = 1 + 0.05 * torch.randn(n, 1, 1, 1, generator=g)
    tex = F.interpolate(torch.randn(n, 3, h // 2, w // 2, generator=g), size=(h, w), mode="bilinear")
    return (clean * gain + 0.04 * tex.permute(0, 2, 3, 1)).clamp(0, 1)


def run(proc, orig, **kw):
    return tc.temporal_consistency(from_tensor(proc), from_tensor(orig), **kw).read().frames


@pytest.fixture(scope="module")
def juggle():
    # the juggler's hands and balls move fast (up to ~15 px per frame at this size)
    return open_video(clip("juggle_720p24.mp4"), start_time=2.0, end_time=3.0, max_side=400).read().frames


def fast_motion_mask(clean: torch.Tensor, t: int, px: float) -> np.ndarray:

    a, b = flowlib.grey(clean[t], 0), flowlib.grey(clean[t - 1], 0)
    f = flowlib.estimate_flow(a, b, "dis_medium")
    return flowlib.flow_magnitude(f) > px


def test_flickering_stage_steadied_without_loss_or_ghosts(juggle):
    clean = juggle
    proc = flickering_stage(clean)
    out = run(proc, clean)
    we_proc, we_out = flowlib.warping_error(proc, clean), flowlib.warping_error(out, clean)
    assert we_out <= 0.5 * we_proc, (we_proc, we_out)
    assert psnr(out, clean) >= psnr(proc, clean) - 0.3
    # ghosting around the fast hands and balls: where the source moves > 6 px/frame, the output
    # is no further from the clean frame than the per-frame result is
    err_out = err_proc = err_naive = 0.0
    naive = [proc[0]]

    for t in range(1, clean.shape[0]):
        fl = flowlib.estimate_flow(flowlib.grey(clean[t], 0), flowlib.grey(clean[t - 1], 0), "dis_medium")
        naive.append(0.15 * proc[t] + 0.85 * torch.from_numpy(flowlib.remap(naive[-1].numpy(), fl)))
    naive = torch.stack(naive)
    moving = 0
    for t in range(1, clean.shape[0]):
        m = torch.from_numpy(fast_motion_mask(clean, t, 6.0))
        if m.sum() < 50:
            continue
        moving += 1
        err_out += float((out[t] - clean[t]).abs().mean(-1)[m].mean())
        err_proc += float((proc[t] - clean[t]).abs().mean(-1)[m].mean())
        err_naive += float((naive[t] - clean[t]).abs().mean(-1)[m].mean())
    assert moving >= 5
    assert err_out <= 1.05 * err_proc, (err_out, err_proc)
    assert err_naive > 1.2 * err_proc, "the check must be able to see ghosting (blending without trust masks)"


def test_scene_cut_resets_without_ghosts(juggle):
    other = open_video(clip("bedroom_540p30.mp4"), end_time=0.5, max_side=400).read().frames
    h, w = juggle.shape[1:3]
    other = F.interpolate(other.permute(0, 3, 1, 2), size=(h, w), mode="area").permute(0, 2, 3, 1)
    clean = torch.cat([juggle[:12], other[:10]])
    cut = 12
    proc = flickering_stage(clean, seed=2)
    for kw in ({}, {"reset_on_cuts": False}):  # detected cut, or the low-confidence fallback
        out = run(proc, clean, **kw)
        assert torch.allclose(out[cut], proc[cut], atol=1e-6), "the first frame of a shot is the per-frame result"
        for t in range(cut + 1, cut + 4):  # no trace of the old shot in the new one
            assert (out[t] - clean[t]).abs().mean() <= (proc[t] - clean[t]).abs().mean() * 1.02
    # with the cut attached as metadata it is used as given
    s = from_tensor(proc).with_info(scene_cuts=(cut,))
    out = tc.temporal_consistency(s, from_tensor(clean)).read().frames
    assert torch.allclose(out[cut], proc[cut], atol=1e-6)


def test_after_the_upscaler(juggle, shared_models):
    """JPEG-damaged half-size frames through realesr-general-x4v3 (then down to x2): steadier, no
    PSNR loss against the clean full-size clip. Flow on the small original, scaled up."""
    import cv2
    from spandrel import ModelLoader

    clean = juggle[:10, :144, :256].contiguous()
    small = F.interpolate(clean.permute(0, 3, 1, 2), scale_factor=0.5, mode="area").permute(0, 2, 3, 1)

    def jpeg(x):
        u8 = (x.numpy() * 255 + 0.5).astype(np.uint8)
        ok, b = cv2.imencode(".jpg", u8[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 40])
        return torch.from_numpy(cv2.imdecode(b, 1)[..., ::-1].copy()).float() / 255

    orig = torch.stack([jpeg(f) for f in small])
    desc = ModelLoader().load_from_file(str(shared_model("realesrgan/realesr-general-x4v3.pth"))).eval()
    desc.model.float()
    with torch.inference_mode():
        up = desc(orig.permute(0, 3, 1, 2))
        proc = F.interpolate(up, size=clean.shape[1:3], mode="bicubic", antialias=True).clamp(0, 1)
    proc = proc.permute(0, 2, 3, 1).contiguous()
    out = run(proc, orig)
    we_proc, we_out = flowlib.warping_error(proc, orig), flowlib.warping_error(out, orig)
    assert we_out <= 0.5 * we_proc, (we_proc, we_out)
    assert psnr(out, clean) >= psnr(proc, clean) - 0.3


def test_mismatched_inputs_fail_before_any_work():
    x = torch.rand(5, 32, 32, 3)
    touched = []
    src = from_tensor(x)
    spy = src.map("spy", {}, lambda: (lambda ch: touched.append(1) or ch))
    with pytest.raises(tc.TemporalError, match="original has 4 frames"):
        tc.temporal_consistency(spy, from_tensor(x[:4]))
    with pytest.raises(tc.TemporalError, match="strength"):
        tc.temporal_consistency(spy, from_tensor(x), strength=1.5)
    assert not touched


def test_strength_zero_is_identity_and_state_is_one_frame():
    x = torch.rand(6, 40, 48, 3)
    out = run(x, x, strength=0.0)
    assert torch.allclose(out, x, atol=1e-6)
    b = tc.TemporalBlender()
    for i in range(3):
        b.step(x[i], x[i])
    assert b.prev_out.shape == (40, 48, 3)  # the whole state: one frame and one small grey frame


def test_example_workflow_runs_end_to_end(tmp_path, shared_models):
    """workflows/api/upscale_steady.json (Load → Upscale x2 → Temporal Consistency guided by the
    loaded original → Save) through the in-process runner on a short real clip."""
    import os
    from pathlib import Path

    from remaster import host
    from remaster.headless import cli, runner
    from remaster.media.decode import probe

    d = host.model_dirs("upscale_models")[0]
    d.mkdir(parents=True, exist_ok=True)
    os.symlink(shared_model("realesrgan/realesr-general-x4v3.pth"), d / "realesr-general-x4v3.pth")
    prompt = runner.load_workflow(Path(__file__).resolve().parents[2] / "workflows/api/upscale_steady.json")
    out = tmp_path / "steady.mp4"
    prompt = runner.apply_overrides(
        prompt, ["Load Video.end_time=0.25", "Load Video.resize=max_side", "Load Video.max_side=96"],
        str(clip("bedroom_540p30.mp4")), str(out))
    runner.run(prompt, cli.node_mappings())
    p = probe(out)
    want = open_video(clip("bedroom_540p30.mp4"), end_time=0.25).info.frame_count
    assert (p.width, p.height) == (192, 108)
    assert len(p.times) == want >= 5
