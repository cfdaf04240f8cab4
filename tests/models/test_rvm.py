"""RobustVideoMatting architecture: snapshots for fixed random weights (both backbones, with
and without the refiner path, the recurrent state carried), the official file format through the
real loader, and the real MobileNetV3 weights on a real frame."""
from __future__ import annotations

import pytest
import torch

from conftest import clip, shared_model
from remaster.models import registry, rvm
from snapshot import check, inputs, seeded


def _net(variant: str, refiner: str = "deep") -> rvm.RVM:
    torch.manual_seed(0)
    return seeded(rvm.RVM(variant, refiner))


@pytest.mark.parametrize("variant,ratio", [("mobilenetv3", 1.0), ("mobilenetv3", 0.5), ("resnet50", 0.5)])
@torch.inference_mode()
def test_snapshot_two_frames_with_recurrent_state(variant, ratio):
    net = _net(variant)
    x = inputs(2, 3, 64, 96)
    fgr1, pha1, rec = net(x[:1], None, ratio)
    fgr2, pha2, rec = net(x[1:], rec, ratio)
    assert len(rec) == 4 and all(r is not None for r in rec)
    check(f"rvm_{variant}_{ratio}", {"fgr1": fgr1, "pha1": pha1, "fgr2": fgr2, "pha2": pha2})


@torch.inference_mode()
def test_state_changes_the_second_frame():
    """The recurrence is real: the same frame after another frame gives another matte."""
    net = _net("mobilenetv3")
    x = inputs(2, 3, 64, 64)
    _, pha_fresh, _ = net(x[1:], None)
    _, _, rec = net(x[:1], None)
    _, pha_after, _ = net(x[1:], rec)
    assert float((pha_fresh - pha_after).abs().max()) > 1e-4


@torch.inference_mode()
def test_official_file_format_round_trip(tmp_path):
    net = _net("mobilenetv3", "fast")
    path = tmp_path / "rvm_mobilenetv3.pth"
    torch.save(net.state_dict(), path)
    loaded = rvm.load(path)
    assert loaded.variant == "mobilenetv3" and isinstance(loaded.refiner, rvm.FastGuidedFilterRefiner)
    x = inputs(1, 3, 64, 64)
    assert torch.equal(net(x, None, 0.5)[1], loaded(x, None, 0.5)[1])


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(1, 1, 1, 1)}, path)
    with pytest.raises(registry.ModelError, match="RobustVideoMatting"):
        rvm.load(path)


@torch.inference_mode()
def test_real_weights_matte_the_person_not_the_room():
    from remaster.media.decode import open_video

    net = rvm.load(shared_model("matting/rvm_mobilenetv3.pth"))
    frame = open_video(str(clip("fullbody_720x1080_25_audio.mp4")), max_side=384).read(0, 1).frames
    x = frame.permute(0, 3, 1, 2)
    _, pha, _ = net(x, None, rvm.auto_downsample_ratio(*x.shape[2:]))
    pha = pha[0, 0]
    h, w = pha.shape
    centre = pha[int(h * 0.3):int(h * 0.7), int(w * 0.4):int(w * 0.6)].mean()
    corners = torch.stack([pha[:h // 8, :w // 8].mean(), pha[:h // 8, -w // 8:].mean()]).mean()
    assert centre > 0.8 and corners < 0.1, (float(centre), float(corners))
