"""MODNet architecture: a snapshot for fixed random weights, the official checkpoint layout
(DataParallel ``module.`` keys, the backbone stored twice) through the real loader, and a clear
refusal of other files."""
from __future__ import annotations

import pytest
import torch

from remaster.models import modnet, registry
from snapshot import check, inputs, seeded


def _net() -> modnet.MODNet:
    torch.manual_seed(0)
    return seeded(modnet.MODNet())


@torch.inference_mode()
def test_snapshot():
    net = _net()
    x = inputs(1, 3, 64, 96) * 2 - 1
    check("modnet", {"alpha": net(x)})


@torch.inference_mode()
def test_official_ckpt_layout_round_trip(tmp_path):
    net = _net()
    path = tmp_path / "modnet_photographic_portrait_matting.ckpt"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    loaded = modnet.load(path)
    x = inputs(1, 3, 64, 64) * 2 - 1
    assert torch.equal(net(x), loaded(x))


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"conv.weight": torch.zeros(1, 1, 1, 1)}, path)
    with pytest.raises(registry.ModelError, match="not a MODNet checkpoint"):
        modnet.load(path)
