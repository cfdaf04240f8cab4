"""RetinaFace architecture: snapshots for fixed random weights (MobileNet-0.25 and ResNet-50
bodies), the facexlib key layout through the real loader, and the real MobileNet weights finding
the face and its landmarks on a real frame."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import clip, shared_model
from remaster.models import registry, retinaface
from snapshot import check, inputs, seeded


def _net(backbone: str) -> retinaface.RetinaFace:
    torch.manual_seed(0)
    return seeded(retinaface.RetinaFace(backbone))


@pytest.mark.parametrize("backbone", ["mobilenet0.25", "resnet50"])
@torch.inference_mode()
def test_snapshot(backbone):
    loc, conf, landm = _net(backbone)(inputs(1, 3, 64, 64) * 255 - 110)
    n_priors = retinaface.priors(64, 64).shape[0]
    assert loc.shape == (1, n_priors, 4) and conf.shape == (1, n_priors, 2) and landm.shape == (1, n_priors, 10)
    check(f"retinaface_{backbone}", {"loc": loc, "conf": conf, "landm": landm})


@torch.inference_mode()
def test_facexlib_layout_round_trip(tmp_path):
    net = _net("mobilenet0.25")
    path = tmp_path / "detection_mobilenet0.25_Final.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    loaded = retinaface.from_state_dict(registry.load_state_dict(path))
    x = inputs(1, 3, 64, 64)
    assert torch.equal(net(x)[0], loaded(x)[0])


def test_foreign_file_is_refused():
    with pytest.raises(ValueError, match="not a RetinaFace checkpoint"):
        retinaface.from_state_dict({"conv.weight": torch.zeros(1)})


def test_real_weights_find_the_face_and_landmarks():
    from remaster.media.decode import open_video

    sd = registry.load_state_dict(shared_model("face/retinaface_mobilenet0.25.pth"))
    net = retinaface.from_state_dict(sd)
    frame = open_video(str(clip("talking_head_512_30_audio.mp4")), max_side=320).read(0, 1).frames[0]
    bgr = np.ascontiguousarray((frame.numpy() * 255).round().astype(np.uint8)[:, :, ::-1])
    faces = retinaface.detect(net, bgr, threshold=0.8)
    assert len(faces) >= 1
    x1, y1, x2, y2, score = faces[0][:5]
    pts = faces[0][5:].reshape(5, 2)
    assert score > 0.9 and (x2 - x1) > 60 and (y2 - y1) > 60
    inside = (pts[:, 0] > x1) & (pts[:, 0] < x2) & (pts[:, 1] > y1) & (pts[:, 1] < y2)
    assert inside.all()
    eyes_y, mouth_y = pts[:2, 1].mean(), pts[3:, 1].mean()
    assert eyes_y < pts[2, 1] < mouth_y  # eyes above the nose above the mouth
    assert pts[0, 0] < pts[1, 0]  # image-left eye first
