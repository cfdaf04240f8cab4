"""Shipped workflows whose models are all in ../shared/models give the same decoded frames as
when the golden hashes were taken: a refactor that changes outputs fails here.

Each workflow runs in-process on a few frames of a real clip, written losslessly (FFV1), and the
decoded RGB frames are hashed. If an output changes on purpose, regenerate the golden file with
``REMASTER_UPDATE_HASHES=1 python -m pytest tests/core/test_workflow_hashes.py`` and say why in
the commit."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import av
import pytest
import torch

from conftest import clip, shared_model
from remaster.headless.cli import main
from remaster.models import registry

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "data" / "workflow_hashes.json"
UPDATE = os.environ.get("REMASTER_UPDATE_HASHES") == "1"

# workflow -> the ../shared/models files it needs (every model it loads)
WORKFLOWS = {
    "passthrough": (),
    "upscale": ("realesrgan/realesr-general-x4v3.pth",),
    "interpolate_60fps": ("rife/flownet_v4.25.pkl",),
    "background": ("matting/rvm_mobilenetv3.pth",),
}


def frame_hash(path: Path) -> tuple[int, str]:
    h = hashlib.sha256()
    n = 0
    with av.open(str(path)) as c:
        for f in c.decode(c.streams.video[0]):
            a = f.to_ndarray(format="rgb24")
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
            n += 1
    return n, h.hexdigest()


@pytest.fixture
def portable(monkeypatch):
    """The same figures on any CPU and under any load: fp32 everywhere (no bf16 where the CPU has
    it), the upscaler's fixed rule instead of its timing-based choice, and one thread (the thread
    count can change float summation order)."""
    from remaster import host

    monkeypatch.setattr(host, "cpu_has_fast_bf16", lambda: False)
    monkeypatch.setenv("REMASTER_UPSCALE_AUTOTUNE", "0")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("name", list(WORKFLOWS))
def test_decoded_frames_unchanged(name, tmp_path, portable, shared_models):
    for rel in WORKFLOWS[name]:
        shared_model(rel)
    registry.link_existing(shared_models)
    src = clip("talking_head_512_30_audio.mp4")
    out = tmp_path / f"{name}.mkv"
    code = main(["run", str(ROOT / "workflows" / "api" / f"{name}.json"), "--input", str(src), "--output", str(out),
                 "--set", "Load Video.end_time=0.2", "--set", "Load Video.resize=max_side",
                 "--set", "Load Video.max_side=64", "--set", "Save Video.format=ffv1_mkv"])
    assert code == 0 and out.is_file()
    got = frame_hash(out)
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    if UPDATE:
        golden[name] = list(got)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert name in golden, f"no golden hash for {name}: run with REMASTER_UPDATE_HASHES=1 once"
    assert list(got) == golden[name], f"{name}: decoded frames differ from the golden hash"
