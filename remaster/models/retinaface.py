"""RetinaFace face detector (boxes + 5 landmarks) that loads facexlib-format weights.

The weights published for facexlib (``detection_mobilenet0.25_Final.pth``,
``detection_Resnet50_Final.pth``) and by the original Pytorch_Retinaface project use one key
layout: ``body.*`` (backbone), ``fpn.*``, ``ssh1..3.*``, ``ClassHead/BboxHead/LandmarkHead.*``.
No maintained package loads them without pulling facexlib's heavy, unpinned dependencies
(numba, filterpy, opencv-python) and its unsafe ``torch.load``, so the small network lives here,
written from the paper's description and the published key layout. Loading is safe (tensors only).
"""
from __future__ import annotations

import itertools
import math
from typing import Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# Two trainings share the key layout: facexlib's (leaky ReLU 0.1 in the MobileNet parts, anchors
# 16..512) and Face-Detector-1MB-with-landmark's (plain ReLU, anchors 10..256, trained on small
# images). ``variant`` picks one; the registry entry of a file says which it is.
VARIANTS = {
    "facexlib": {"leaky": 0.1, "min_sizes": ((16, 32), (64, 128), (256, 512))},
    "1mb": {"leaky": 0.0, "min_sizes": ((10, 20), (32, 64), (128, 256))},
}
STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)


def _conv_bn(cin: int, cout: int, stride: int = 1, k: int = 3, leaky: float = 0.0, act: bool = True,
             groups: int = 1) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def _conv_dw(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """Depthwise 3x3 + pointwise 1x1, each with batch norm and leaky ReLU (6 modules)."""
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False),
        nn.BatchNorm2d(cin),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(cin, cout, 1, 1, 0, bias=False),
        nn.BatchNorm2d(cout),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1x025(nn.Module):
    """MobileNet v1 at width 0.25; returns the stride-8, 16 and 32 feature maps."""

    def __init__(self, leaky: float = 0.1) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            _conv_bn(3, 8, 2, leaky=leaky),
            _conv_dw(8, 16, 1, leaky),
            _conv_dw(16, 32, 2, leaky),
            _conv_dw(32, 32, 1, leaky),
            _conv_dw(32, 64, 2, leaky),
            _conv_dw(64, 64, 1, leaky),
        )
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2, leaky), *[_conv_dw(128, 128, 1, leaky) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2, leaky), _conv_dw(256, 256, 1, leaky))
        self.channels = (64, 128, 256)

    def forward(self, x):
        a = self.stage1(x)
        b = self.stage2(a)
        return a, b, self.stage3(b)


class ResNet50Body(nn.Module):
    """torchvision's ResNet-50 trunk; returns layer2..layer4 (strides 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        import torchvision

        r = torchvision.models.resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = r.conv1, r.bn1, r.relu, r.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = r.layer1, r.layer2, r.layer3, r.layer4
        self.channels = (512, 1024, 2048)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        a = self.layer2(self.layer1(x))
        b = self.layer3(a)
        return a, b, self.layer4(b)


class FPN(nn.Module):
    def __init__(self, in_channels: tuple, out: int, leaky: float) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out, k=1, leaky=leaky)
        self.output2 = _conv_bn(in_channels[1], out, k=1, leaky=leaky)
        self.output3 = _conv_bn(in_channels[2], out, k=1, leaky=leaky)
        self.merge1 = _conv_bn(out, out, leaky=leaky)
        self.merge2 = _conv_bn(out, out, leaky=leaky)

    def forward(self, feats):
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return o1, o2, o3


class SSH(nn.Module):
    """Single-stage context module: parallel 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches."""

    def __init__(self, cin: int, out: int, leaky: float) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(cin, out // 2, act=False)
        self.conv5X5_1 = _conv_bn(cin, out // 4, leaky=leaky)
        self.conv5X5_2 = _conv_bn(out // 4, out // 4, act=False)
        self.conv7X7_2 = _conv_bn(out // 4, out // 4, leaky=leaky)
        self.conv7x7_3 = _conv_bn(out // 4, out // 4, act=False)

    def forward(self, x):
        c5_1 = self.conv5X5_1(x)
        c7_2 = self.conv7X7_2(c5_1)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(c7_2)], 1))


class _Head(nn.Module):
    def __init__(self, cin: int, outs: int) -> None:
        super().__init__()
        self.conv1x1 = nn.Conv2d(cin, outs, 1)

    def forward(self, x):
        return self.conv1x1(x)


class RetinaFace(nn.Module):
    def __init__(self, backbone: str = "mobilenet0.25", variant: str = "facexlib") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown RetinaFace variant '{variant}' (known: {', '.join(VARIANTS)})")
        leaky = VARIANTS[variant]["leaky"]
        if backbone == "mobilenet0.25":
            self.body, out = MobileNetV1x025(leaky), 64
        elif backbone == "resnet50":
            self.body, out = ResNet50Body(), 256
            leaky = 0.0  # the wide heads use plain ReLU
        else:
            raise ValueError(f"unknown RetinaFace backbone '{backbone}'")
        self.backbone = backbone
        self.min_sizes = VARIANTS[variant]["min_sizes"]
        self.fpn = FPN(self.body.channels, out, leaky)
        self.ssh1, self.ssh2, self.ssh3 = SSH(out, out, leaky), SSH(out, out, leaky), SSH(out, out, leaky)
        anchors = 2
        self.ClassHead = nn.ModuleList([_Head(out, anchors * 2) for _ in range(3)])
        self.BboxHead = nn.ModuleList([_Head(out, anchors * 4) for _ in range(3)])
        self.LandmarkHead = nn.ModuleList([_Head(out, anchors * 10) for _ in range(3)])

    def forward(self, x):
        feats = self.fpn(self.body(x))
        feats = (self.ssh1(feats[0]), self.ssh2(feats[1]), self.ssh3(feats[2]))
        n = x.shape[0]

        def flat(heads, k):
            return torch.cat([h(f).permute(0, 2, 3, 1).reshape(n, -1, k) for h, f in zip(heads, feats)], 1)

        return flat(self.BboxHead, 4), flat(self.ClassHead, 2).softmax(-1), flat(self.LandmarkHead, 10)


def backbone_of(sd: dict) -> str:
    if "body.stage1.0.0.weight" in sd:
        return "mobilenet0.25"
    if "body.layer1.0.conv1.weight" in sd:
        return "resnet50"
    raise ValueError(
        "not a RetinaFace checkpoint in facexlib layout (expected keys body.stage1.* for "
        "mobilenet0.25 or body.layer1.* for resnet50)"
    )


def from_state_dict(sd: dict, variant: str = "facexlib") -> RetinaFace:
    sd = {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}
    net = RetinaFace(backbone_of(sd), variant)
    # the ResNet trunk here keeps torchvision's names without the IntermediateLayerGetter wrapper
    missing, unexpected = net.load_state_dict(sd, strict=False)
    bad_unexpected = [k for k in unexpected if not k.startswith("body.fc.")]
    if missing or bad_unexpected:
        raise ValueError(
            f"RetinaFace weights do not fit: missing {missing[:4]}, unexpected {bad_unexpected[:4]}"
        )
    return net.eval()


def priors(h: int, w: int, min_sizes: tuple = VARIANTS["facexlib"]["min_sizes"]) -> torch.Tensor:
    """Anchor boxes (cx, cy, w, h) normalised to the image, in the network's output order."""
    out = []
    for (sizes, step) in zip(min_sizes, STEPS):
        fh, fw = math.ceil(h / step), math.ceil(w / step)
        for i, j in itertools.product(range(fh), range(fw)):
            for s in sizes:
                out.append(((j + 0.5) * step / w, (i + 0.5) * step / h, s / w, s / h))
    return torch.tensor(out, dtype=torch.float32)


@torch.inference_mode()
def detect(net: RetinaFace, bgr: np.ndarray, threshold: float = 0.8, nms: float = 0.4,
           prior_cache: Optional[dict] = None) -> np.ndarray:
    """Faces in a uint8 BGR image: ``[k, 15]`` rows of x1, y1, x2, y2, score, 5 (x, y) landmarks
    (image-left eye, image-right eye, nose, left and right mouth corner), best first."""
    import torchvision

    h, w = bgr.shape[:2]
    dev = next(net.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(bgr)).to(dev).float()
    x = (x - torch.tensor(BGR_MEAN, device=dev)).permute(2, 0, 1)[None]
    loc, conf, landm = net(x)
    key = (h, w)
    if prior_cache is not None and key in prior_cache:
        pr = prior_cache[key]
    else:
        pr = priors(h, w, net.min_sizes)
        if prior_cache is not None:
            prior_cache[key] = pr
    pr = pr.to(dev)
    loc, conf, landm = loc[0].float(), conf[0, :, 1].float(), landm[0].float()
    keep = conf > threshold
    if not bool(keep.any()):
        return np.zeros((0, 15), np.float32)
    loc, conf, landm, pr = loc[keep], conf[keep], landm[keep], pr[keep]
    centre = pr[:, :2] + loc[:, :2] * VARIANCE[0] * pr[:, 2:]
    size = pr[:, 2:] * torch.exp(loc[:, 2:] * VARIANCE[1])
    boxes = torch.cat([centre - size / 2, centre + size / 2], 1) * torch.tensor([w, h, w, h], device=dev)
    pts = pr[:, None, :2] + landm.view(-1, 5, 2) * VARIANCE[0] * pr[:, None, 2:]
    pts = pts * torch.tensor([w, h], device=dev)
    order = torchvision.ops.nms(boxes, conf, nms)
    out = torch.cat([boxes[order], conf[order, None], pts[order].reshape(-1, 10)], 1)
    return out.cpu().numpy().astype(np.float32)
