"""Training a restorer: exact x1/x2 derivation from the x4 weights, a few steps on tiny real data
lower the loss, the checkpoint loads in the Upscale node (temporal: the pack's loader; frame-wise:
spandrel), resuming continues the run, the CLI subcommand, bad settings."""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from conftest import clip, shared_model
from remaster import host
from remaster.models import registry
from remaster.models import temporal_compact as tcm
from remaster.stream import from_tensor
from remaster.train import loop
from remaster.train import pairs as P


@pytest.fixture
def base():
    src = shared_model("realesrgan/realesr-general-x4v3.pth")
    d = host.model_dirs("upscale_models")[0]
    d.mkdir(parents=True, exist_ok=True)
    os.symlink(src, d / "realesr-general-x4v3.pth")
    return "realesr-general-x4v3.pth"


def tiny_cfg(name, temporal=True, steps=10, **kw):
    # carphone: a real 176x144 talking head, the smallest real clip
    return loop.TrainConfig(name=name, clips=[str(clip("carphone_pristine.mp4"))], base="realesr-general-x4v3.pth",
                            scale=1, temporal=temporal, steps=steps, batch=4, seq_len=2, patch=32, samples=4,
                            lr=2e-4, max_frames=8, save_every=5, **kw)


def pool_loss(model, cfg):
    batch = P.collate(loop.make_pool(cfg))
    with torch.no_grad():
        return float(loop.sequence_loss(model, batch, cfg.temporal, cfg.temporal_weight, False)[0])


def test_x1_x2_derivation_is_exact(base):
    sd = loop.base_state_dict(base, 4)
    x = torch.rand(1, 3, 20, 24)
    with torch.no_grad():
        y4 = tcm.compact_from_state_dict(sd)(x)
        for s in (1, 2):
            ys = tcm.compact_from_state_dict(loop.base_state_dict(base, s))(x)
            assert torch.allclose(ys, F.avg_pool2d(y4, 4 // s), atol=1e-5)
        t = tcm.TemporalCompact(tcm.compact_from_state_dict(sd))
        assert torch.equal(t(x, torch.rand(1, 64, 20, 24), torch.ones(1, 1, 20, 24))[0], y4)  # starts as the plain model


@pytest.mark.parametrize("temporal", [True, False])
def test_few_steps_lower_the_loss_and_load_in_upscale(base, temporal):
    from nodes.upscale import RemasterUpscale

    cfg = tiny_cfg("tiny_t" if temporal else "tiny_f", temporal)
    start = pool_loss(loop.build_model(loop.base_state_dict(base, 1), temporal), cfg)
    out = loop.train(cfg)
    path = loop.model_path(cfg.name)
    assert path.suffix == ".safetensors" and path.is_file()
    assert tcm.is_temporal_file(path) == temporal
    trained = tcm.load(path) if temporal else loop.build_model(registry.load_state_dict(path), False)
    assert pool_loss(trained, cfg) < 0.95 * start
    rd = loop.run_dir(cfg.name)
    rows = [json.loads(r) for r in (rd / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert (rd / "loss.png").stat().st_size > 1000 and out["steps"] == 10

    # the Upscale node picks the file by name and runs it (scale 0 = the model's own, x1 here)
    frames = torch.rand(3, 24, 32, 3)
    (res, w, h) = RemasterUpscale().run(from_tensor(frames), path.name, scale=0.0, precision="fp32")
    got = res.read().frames
    assert (w, h) == (32, 24) and got.shape == frames.shape
    if temporal:
        from remaster.stages.upscale.temporal import TemporalRunner

        r = TemporalRunner(tcm.load(path), torch.device("cpu"), "fp32")
        ref = torch.stack([r.step(frames[i]) for i in range(3)])
    else:
        from spandrel import ModelLoader

        desc = ModelLoader().load_from_file(str(path)).eval()
        with torch.no_grad():
            ref = desc(frames.permute(0, 3, 1, 2)).clamp(0, 1).permute(0, 2, 3, 1)
    assert torch.allclose(got, ref, atol=1e-4)


def test_resume_and_cli(base):
    from remaster.headless.cli import main

    argv = ["train", "--name", "cli_run", "--clip", str(clip("carphone_pristine.mp4")), "--base", base,
            "--steps", "3", "--batch", "2", "--seq-len", "2", "--patch", "32", "--samples", "2", "--max-frames", "6"]
    assert main(argv) == 0
    rd = loop.run_dir("cli_run")
    assert len((rd / "log.jsonl").read_text().splitlines()) == 3
    assert main(argv[:5] + argv[5:7] + ["--steps", "5"] + argv[9:]) == 0  # resumes at step 3
    steps = [json.loads(r)["step"] for r in (rd / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    st = torch.load(str(rd / "state.pt"), weights_only=True)
    assert st["step"] == 5


def test_bad_settings(base):
    with pytest.raises(loop.TrainError, match="no training data"):
        loop.train(loop.TrainConfig(name="x", base=base))
    with pytest.raises(loop.TrainError, match="scale must be 1, 2 or 4"):
        loop.train(loop.TrainConfig(name="x", clips=["a.mp4"], scale=3))
    with pytest.raises(ValueError, match="same frame count"):
        P.sample_from_pairs(torch.rand(4, 40, 40, 3), torch.rand(5, 40, 40, 3), 1, 2, 32)
    with pytest.raises(ValueError, match="unknown degradation"):
        P.degradation("sepia")


def test_simple_degradation_is_deterministic():
    x = torch.rand(3, 40, 48, 3)
    a, b = P.simple_degradation(x, 5, 1), P.simple_degradation(x, 5, 1)
    assert torch.equal(a, b) and a.shape == x.shape
    assert not torch.equal(P.simple_degradation(x, 6, 1)[0], a[0])
