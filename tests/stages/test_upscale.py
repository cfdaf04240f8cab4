"""Upscale stage: exactness against spandrel's plain fp32 inference with the real Real-ESRGAN
weights, seamless tiling, exact output sizes, denoise/blend maths, OOM back-off, the stream."""
from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import pytest
import torch

from conftest import clip, shared_model
from remaster import host
from remaster.models import registry
from remaster.stages import upscale as up
from remaster.stream import from_tensor

CPU = torch.device("cpu")


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@pytest.fixture(autouse=True)
def _fresh_cache():
    up._model_cache.clear()
    yield
    up._model_cache.clear()


def place(rel: str, name: str | None = None) -> str:
    """Link a shared model into this test's upscale_models folder; return its file name."""
    src = shared_model(rel)
    d = host.model_dirs(up.FOLDER)[0]
    d.mkdir(parents=True, exist_ok=True)
    name = name or os.path.basename(rel)
    os.symlink(src, d / name)
    return name


def real_crop(h: int, w: int, y: int = 200, x: int = 560) -> torch.Tensor:
    """A crop of a real frame (a woman with a dog), [1,h,w,3] float32."""
    cap = cv2.VideoCapture(str(clip("dog_720p30_audio.mp4")))
    ok, fr = cap.read()
    cap.release()
    assert ok
    rgb = cv2.cvtColor(fr[y : y + h, x : x + w], cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).float().div(255)[None].contiguous()


def reference(rel: str, x: torch.Tensor) -> torch.Tensor:
    """spandrel's plain fp32 NCHW whole-image inference (what ComfyUI core does, untiled)."""
    from spandrel import ModelLoader

    desc = ModelLoader().load_from_file(str(shared_model(rel))).eval()
    desc.model.float()
    with torch.inference_mode():
        return desc(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).float()


@pytest.mark.parametrize(
    "rel,size",
    [("realesrgan/realesr-general-x4v3.pth", 96), ("realesrgan/RealESRGAN_x4plus.pth", 40)],
)
def test_matches_spandrel_fp32_full_image(rel, size):
    name = place(rel)
    x = real_crop(size, size)
    ref = reference(rel, x)
    desc = up.load_model(name)
    y32 = up.Upscaler(desc, CPU, "fp32")(x)
    assert y32.shape == ref.shape == (1, size * 4, size * 4, 3)
    assert psnr(y32, ref) >= 50.0
    up._model_cache.clear()
    ybf = up.Upscaler(up.load_model(name), CPU, "bf16")(x)
    assert ybf.dtype == torch.float32
    assert psnr(ybf, ref) >= 40.0


def test_auto_precision_follows_the_cpu():
    dtype, cl = up.pick_precision(CPU, "auto")
    if host.cpu_has_fast_bf16():
        assert dtype == torch.bfloat16 and cl
    else:
        assert dtype == torch.float32 and not cl
    with pytest.raises(up.UpscaleError, match="fp16 is for GPUs"):
        up.pick_precision(CPU, "fp16")
    with pytest.raises(up.UpscaleError, match="precision must be one of"):
        up.pick_precision(CPU, "int8")


def test_tiles_leave_no_seam():
    """Tiled vs untiled output of the same fp32 model: the difference is tiny everywhere and
    does not rise at the tile borders."""
    name = place("realesrgan/realesr-general-x4v3.pth")
    x = real_crop(112, 112, 150, 520)
    desc = up.load_model(name)
    whole = up.Upscaler(desc, CPU, "fp32", tile=512)(x)
    tiled = up.Upscaler(desc, CPU, "fp32", tile=48, overlap=24)(x)
    starts = up.tile_starts(112, 48, 24)
    assert len(starts) >= 3  # really tiled
    assert psnr(tiled, whole) >= 45.0
    diff = (tiled - whole).abs().mean(dim=(0, 3))  # [H, W]
    col, row = diff.mean(0), diff.mean(1)
    # tile edges in output pixels (where an unblended seam would be a step)
    edges = sorted({(s + 48) * 4 for s in starts[:-1]} | {s * 4 for s in starts[1:]})
    for prof in (col, row):
        at_edges = torch.stack([prof[max(0, e - 2) : e + 2].mean() for e in edges])
        assert float(at_edges.max()) < 2.0 / 255  # far below one code value on average
        assert float(prof.max()) < 3.0 / 255
    # the blended result is a smooth mixture: no pixel is off by more than a few code values
    assert float((tiled - whole).abs().max()) < 8.0 / 255


def test_output_size_is_exact_for_any_scale():
    name = place("realesrgan/realesr-general-x4v3.pth")
    frames = real_crop(27, 41).repeat(2, 1, 1, 1)
    for kw, want in (
        ({"scale": 2.0}, (54, 82)),
        ({"scale": 1.5}, (40, 62)),
        ({"scale": 0}, (108, 164)),
        ({"scale": 2.0, "target_height": 100}, (100, 152)),
        ({"scale": 3.0}, (81, 123)),
    ):
        out = up.upscale(from_tensor(frames), name, precision="fp32", **kw)
        assert (out.info.height, out.info.width) == want
        got = out.read().frames
        assert tuple(got.shape) == (2, *want, 3)
        assert float(got.min()) >= 0 and float(got.max()) <= 1


def test_downscale_is_antialiased():
    """x4 model to x2 output must low-pass: a grating at 0.4 cycles/pixel (above the Nyquist
    limit of the half-size result) must vanish, not fold back as a coarse false pattern."""
    x = torch.arange(128).float()
    hi = (0.5 + 0.5 * torch.sin(2 * math.pi * 0.4 * x)).expand(1, 3, 64, 128).contiguous()
    lo = up.resize(hi, 32, 64)
    assert lo.shape == (1, 3, 32, 64)
    assert float(lo.std()) < 0.03 and abs(float(lo.mean()) - 0.5) < 0.02
    naive = torch.nn.functional.interpolate(hi, size=(32, 64), mode="bicubic", antialias=False)
    assert float(naive.std()) > 0.15  # what an unfiltered resize does: a false coarse pattern


def test_denoise_strength_interpolates_weights():
    name = place("realesrgan/realesr-general-x4v3.pth")
    sd = registry.unwrap_state_dict(registry.load_state_dict(shared_model("realesrgan/realesr-general-x4v3.pth")))
    g = torch.Generator().manual_seed(1)
    wdn = {k: v.float() + 0.02 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in sd.items()}
    torch.save({"params": wdn}, host.model_dirs(up.FOLDER)[0] / "realesr-general-wdn-x4v3.pth")
    full = up.load_model(name, 1.0)
    half = up.load_model(name, 0.5)
    none = up.load_model(name, 0.0)
    k = "body.0.weight"
    a, b = sd[k].float(), wdn[k]
    assert torch.allclose(full.model.state_dict()[k], a)
    assert torch.allclose(none.model.state_dict()[k], b)
    assert torch.allclose(half.model.state_dict()[k], 0.5 * a + 0.5 * b, atol=1e-6)
    with pytest.raises(up.UpscaleError, match="denoise_strength"):
        up.load_model(name, 1.5)


def test_denoise_strength_without_wdn_explains():
    name = place("realesrgan/realesr-general-x4v3.pth")
    with pytest.raises(up.UpscaleError, match="realesr-general-wdn-x4v3"):
        up.load_model(name, 0.5)


def test_two_model_blend_is_the_weighted_mix():
    a = place("realesrgan/realesr-general-x4v3.pth")
    b = place("realesrgan/realesr-animevideov3.pth")
    x = real_crop(24, 32)
    s = from_tensor(x)
    ya = up.upscale(s, a, scale=0, precision="fp32").read().frames
    yb = up.upscale(s, b, scale=0, precision="fp32").read().frames
    ym = up.upscale(s, a, scale=0, precision="fp32", model_b=b, blend=0.25).read().frames
    assert torch.allclose(ym, 0.75 * ya + 0.25 * yb, atol=1e-5)
    assert psnr(ya, yb) < 40  # the two models really differ


def test_out_of_memory_backs_off_to_smaller_tiles():
    """A model that runs out of memory on inputs larger than 40x40: the upscaler halves the
    batch, then the tile, and the result equals the untiled one (seamless blend)."""
    name = place("realesrgan/realesr-animevideov3.pth")
    desc = up.load_model(name)
    x = real_crop(64, 64).repeat(2, 1, 1, 1)
    whole = up.Upscaler(desc, CPU, "fp32")(x)
    forward = desc.model.forward
    calls = []

    def limited(t):
        calls.append(tuple(t.shape))
        if t.shape[-1] * t.shape[-2] > 40 * 40:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return forward(t)

    desc.model.forward = limited
    try:
        u = up.Upscaler(desc, CPU, "fp32", tile=64, overlap=8)
        y = u(x)
    finally:
        desc.model.forward = forward
    assert u._plan is not None and u._plan.tile == 32 and u._plan.batch == 1
    assert calls[0] == (2, 3, 64, 64)
    assert psnr(y, whole) > 40


def test_stream_stage_sizes_mask_and_chunks():
    name = place("realesrgan/realesr-animevideov3.pth")
    frames = real_crop(20, 30).repeat(5, 1, 1, 1)
    mask = torch.zeros(5, 20, 30)
    mask[:, 5:15, 10:20] = 1
    s = from_tensor(frames, fps=25, mask=mask).rechunked(4)
    out = up.upscale(s, name, scale=2.0, precision="fp32")
    assert (out.info.width, out.info.height, out.info.frame_count) == (60, 40, 5)
    assert out.info.chunk_size == 1  # keeps one chunk's bytes about the same as upstream
    c = out.read()
    assert c.frames.shape == (5, 40, 60, 3) and c.mask.shape == (5, 40, 60)
    assert float(c.mask[:, 20, 30].min()) == pytest.approx(1.0) and float(c.mask[:, 2, 2].max()) == 0.0
    again = up.upscale(s, name, scale=2.0, precision="fp32")
    assert again.fingerprint == out.fingerprint
    assert up.upscale(s, name, scale=3.0, precision="fp32").fingerprint != out.fingerprint


def test_bad_inputs_name_the_input():
    name = place("realesrgan/realesr-animevideov3.pth")
    s = from_tensor(torch.rand(1, 8, 8, 3))
    with pytest.raises(up.UpscaleError, match="scale"):
        up.upscale(s, name, scale=-1)
    with pytest.raises(up.UpscaleError, match="target_height"):
        up.upscale(s, name, target_height=-5)
    with pytest.raises(up.UpscaleError, match="blend"):
        up.upscale(s, name, blend=2.0)
    with pytest.raises(registry.ModelNotFound, match="upscale_models"):
        up.upscale(s, "RealESRGAN_x2plus.pth")
    bogus = host.model_dirs(up.FOLDER)[0] / "bogus.pth"
    torch.save({"foo": torch.zeros(3)}, bogus)
    with pytest.raises(up.UpscaleError, match="spandrel does not recognise"):
        up.upscale(s, "bogus.pth")


def test_tile_starts_cover_and_overlap():
    for length in (1, 47, 48, 49, 100, 1000):
        for tile in (48, 64):
            st = up.tile_starts(length, tile, 16)
            t = min(tile, length)
            assert st[0] == 0 and st[-1] + t == length
            for a, b in zip(st, st[1:]):
                assert b > a and a + t - b >= 16  # at least the requested overlap


def test_example_workflow_runs_end_to_end(tmp_path):
    """workflows/api/upscale.json through the in-process runner on a short real clip: the file
    written is twice the size of the (shrunk) input, with every frame."""
    from remaster import cli, runner
    from remaster.media.decode import probe

    place("realesrgan/realesr-general-x4v3.pth")
    prompt = runner.load_workflow(Path(__file__).resolve().parents[2] / "workflows/api/upscale.json")
    out = tmp_path / "up.mp4"
    prompt = runner.apply_overrides(
        prompt,
        ["Load Video.end_time=0.25", "Load Video.resize=max_side", "Load Video.max_side=96"],
        str(clip("anime_480p_23976_audio.mp4")),
        str(out),
    )
    runner.run(prompt, cli.node_mappings())
    from remaster.media.decode import open_video

    p = probe(out)
    want = open_video(clip("anime_480p_23976_audio.mp4"), end_time=0.25).info.frame_count
    assert (p.width, p.height) == (192, 144)
    assert len(p.times) == want >= 5


def test_progress_advances_within_a_chunk():
    """A short clip that arrives as one chunk still reports progress (and checks for interrupt)
    after every forward batch, not once at the end."""
    name = place("realesrgan/realesr-animevideov3.pth")
    frames = real_crop(24, 24).repeat(6, 1, 1, 1)
    s = from_tensor(frames, fps=25).rechunked(6)
    events = []
    listener = events.append
    host.add_progress_listener(listener)
    try:
        out = up.upscale(s, name, scale=2.0, precision="fp32", max_batch=2)
        assert out.read().frames.shape == (6, 48, 48, 3)
    finally:
        host.remove_progress_listener(listener)
    done = [e["done"] for e in events if e.get("label") == "upscale" and not e.get("closed")]
    assert len(done) >= 3 and done == sorted(set(done)) and done[-1] == 6, done  # batches of at most 2
