"""Output snapshots for fixed random weights, as spandrel keeps them: an architecture change
that alters what a checkpoint computes fails here before it reaches a stage.

``REMASTER_UPDATE_SNAPSHOTS=1 python -m pytest tests/models`` rewrites the files after a change
that is meant to alter outputs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

HERE = Path(__file__).parent / "snapshots"
SAMPLES = 48


def seeded(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Put deterministic non-trivial values into every BatchNorm running statistic."""
    g = torch.Generator().manual_seed(seed + 1)
    for name, buf in model.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.rand(buf.shape, generator=g) * 0.2 - 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    return model.eval()


def inputs(*shape: int, seed: int = 7) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


def summary(t: torch.Tensor) -> dict:
    flat = t.detach().float().reshape(-1)
    idx = torch.linspace(0, flat.numel() - 1, min(SAMPLES, flat.numel())).long()
    return {
        "shape": list(t.shape),
        "mean": float(flat.mean()),
        "std": float(flat.std()) if flat.numel() > 1 else 0.0,
        "samples": [float(v) for v in flat[idx]],
    }


def check(name: str, outputs: dict, rtol: float = 2e-3, atol: float = 2e-4) -> None:
    """Compare ``outputs`` (name -> tensor) with the stored snapshot ``name``."""
    got = {k: summary(v) for k, v in outputs.items()}
    path = HERE / f"{name}.json"
    if os.environ.get("REMASTER_UPDATE_SNAPSHOTS") or not path.exists():
        if not os.environ.get("REMASTER_UPDATE_SNAPSHOTS") and os.environ.get("CI"):
            raise AssertionError(f"snapshot {path.name} is missing; create it with REMASTER_UPDATE_SNAPSHOTS=1")
        HERE.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1) + "\n")
        return
    want = json.loads(path.read_text())
    assert sorted(want) == sorted(got), f"snapshot {name}: outputs {sorted(got)} != {sorted(want)}"
    for k in want:
        w, g = want[k], got[k]
        assert w["shape"] == g["shape"], f"{name}.{k}: shape {g['shape']} != {w['shape']}"
        for field in ("mean", "std"):
            assert abs(w[field] - g[field]) <= atol + rtol * abs(w[field]), f"{name}.{k}.{field}: {g[field]} != {w[field]}"
        ws, gs = torch.tensor(w["samples"]), torch.tensor(g["samples"])
        assert torch.allclose(gs, ws, rtol=rtol, atol=atol), (
            f"{name}.{k}: samples differ by up to {float((gs - ws).abs().max()):.3g}"
        )
