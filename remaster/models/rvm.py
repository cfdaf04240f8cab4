"""Robust Video Matting (Lin et al., 2021): a recurrent matting network.

Our own module layout chosen so the official checkpoints (``rvm_mobilenetv3.pth``,
``rvm_resnet50.pth``) load by their key names. Backbones come from torchvision (MobileNetV3-Large
with a dilated last stage, ResNet-50 with a dilated ``layer4``), so only the small decoder is
written here.

The network sees a time series: convolutions run on all frames of a chunk at once, and the four
ConvGRU states are carried frame by frame; the caller keeps them between chunks.

Checkpoint layouts accepted:

* the official release: BatchNorm layers with their statistics, DeepGuidedFilter refiner weights;
* "folded" conversions (e.g. from the TF.js release) where BatchNorm scale was folded into the
  preceding convolution and its shift into the BatchNorm bias, the statistics left at identity
  (weight 1, mean 0, var 1 - eps); such files may lack the refiner weights, and then the
  parameter-free fast guided filter is used.

Both are plain state dicts with the official key names, so one loader serves both.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.mobilenetv3 import InvertedResidualConfig, MobileNetV3
from torchvision.models.resnet import Bottleneck, ResNet

from . import registry

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std


class MobileNetV3Encoder(MobileNetV3):
    """MobileNetV3-Large, last stage dilated (output stride 16); returns features at 1/2..1/16."""

    def __init__(self) -> None:
        c = InvertedResidualConfig
        setting = [
            c(16, 3, 16, 16, False, "RE", 1, 1, 1),
            c(16, 3, 64, 24, False, "RE", 2, 1, 1),
            c(24, 3, 72, 24, False, "RE", 1, 1, 1),
            c(24, 5, 72, 40, True, "RE", 2, 1, 1),
            c(40, 5, 120, 40, True, "RE", 1, 1, 1),
            c(40, 5, 120, 40, True, "RE", 1, 1, 1),
            c(40, 3, 240, 80, False, "HS", 2, 1, 1),
            c(80, 3, 200, 80, False, "HS", 1, 1, 1),
            c(80, 3, 184, 80, False, "HS", 1, 1, 1),
            c(80, 3, 184, 80, False, "HS", 1, 1, 1),
            c(80, 3, 480, 112, True, "HS", 1, 1, 1),
            c(112, 3, 672, 112, True, "HS", 1, 1, 1),
            c(112, 5, 672, 160, True, "HS", 2, 2, 1),
            c(160, 5, 960, 160, True, "HS", 1, 2, 1),
            c(160, 5, 960, 160, True, "HS", 1, 2, 1),
        ]
        super().__init__(setting, last_channel=1280)
        del self.avgpool
        del self.classifier

    channels = (16, 24, 40, 960)

    def forward(self, x: torch.Tensor):
        x = _normalize(x)
        feats = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in (1, 3, 6, 16):
                feats.append(x)
        return feats


class ResNet50Encoder(ResNet):
    """ResNet-50 with a dilated ``layer4`` (output stride 16)."""

    def __init__(self) -> None:
        super().__init__(Bottleneck, [3, 4, 6, 3], replace_stride_with_dilation=[False, False, True])
        del self.avgpool
        del self.fc

    channels = (64, 256, 512, 2048)

    def forward(self, x: torch.Tensor):
        x = _normalize(x)
        f1 = self.relu(self.bn1(self.conv1(x)))
        f2 = self.layer1(self.maxpool(f1))
        f3 = self.layer2(f2)
        f4 = self.layer4(self.layer3(f3))
        return [f1, f2, f3, f4]


class LRASPP(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.aspp1 = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))
        self.aspp2 = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aspp1(x) * self.aspp2(x)


class ConvGRU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.ih = nn.Sequential(nn.Conv2d(channels * 2, channels * 2, 3, padding=1), nn.Sigmoid())
        self.hh = nn.Sequential(nn.Conv2d(channels * 2, channels, 3, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor, h: Optional[torch.Tensor]):
        """``x`` is ``[T, C, H, W]`` (one sequence); returns all T outputs and the last state."""
        if h is None:
            h = torch.zeros_like(x[:1])
        outs = []
        for t in range(x.shape[0]):
            xt = x[t : t + 1]
            r, z = self.ih(torch.cat([xt, h], 1)).split(self.channels, 1)
            c = self.hh(torch.cat([xt, r * h], 1))
            h = (1 - z) * h + z * c
            outs.append(h)
        return torch.cat(outs), h


class _Bottleneck(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.half = channels // 2
        self.gru = ConvGRU(channels // 2)

    def forward(self, x, r):
        a, b = x.split(self.half, 1)
        b, r = self.gru(b, r)
        return torch.cat([a, b], 1), r


def _up_to(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return x[:, :, : ref.shape[2], : ref.shape[3]]


class _Upsampling(nn.Module):
    def __init__(self, cin: int, cskip: int, csrc: int, cout: int) -> None:
        super().__init__()
        self.half = cout // 2
        self.conv = nn.Sequential(nn.Conv2d(cin + cskip + csrc, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))
        self.gru = ConvGRU(cout // 2)

    def forward(self, x, f, s, r):
        x = self.conv(torch.cat([_up_to(x, s), f, s], 1))
        a, b = x.split(self.half, 1)
        b, r = self.gru(b, r)
        return torch.cat([a, b], 1), r


class _Output(nn.Module):
    def __init__(self, cin: int, csrc: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cin + csrc, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True),
        )

    def forward(self, x, s):
        return self.conv(torch.cat([_up_to(x, s), s], 1))


class RecurrentDecoder(nn.Module):
    def __init__(self, feat: tuple, dec: tuple) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(2, 2, count_include_pad=False, ceil_mode=True)
        self.decode4 = _Bottleneck(feat[3])
        self.decode3 = _Upsampling(feat[3], feat[2], 3, dec[0])
        self.decode2 = _Upsampling(dec[0], feat[1], 3, dec[1])
        self.decode1 = _Upsampling(dec[1], feat[0], 3, dec[2])
        self.decode0 = _Output(dec[2], 3, dec[3])

    def forward(self, s0, f1, f2, f3, f4, rec):
        s1 = self.pool(s0)
        s2 = self.pool(s1)
        s3 = self.pool(s2)
        x4, r4 = self.decode4(f4, rec[3])
        x3, r3 = self.decode3(x4, f3, s3, rec[2])
        x2, r2 = self.decode2(x3, f2, s2, rec[1])
        x1, r1 = self.decode1(x2, f1, s1, rec[0])
        return self.decode0(x1, s0), [r1, r2, r3, r4]


class Projection(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x)


class _GuidedRefiner(nn.Module):
    """Guided-filter refinement: coefficients fitted on the low-resolution (source, prediction)
    pair, upsampled and applied to the full-resolution source. Subclasses give the box mean and
    the slope ``a`` from the covariances."""

    def _box(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _slope(self, cov_xy, var_x, base_hid):
        raise NotImplementedError

    def forward(self, fine_src, base_src, base_fgr, base_pha, base_hid):
        lr_x = torch.cat([base_src, base_src.mean(1, keepdim=True)], 1)
        hr_x = torch.cat([fine_src, fine_src.mean(1, keepdim=True)], 1)
        lr_y = torch.cat([base_fgr, base_pha], 1)
        mean_x, mean_y = self._box(lr_x), self._box(lr_y)
        cov_xy = self._box(lr_x * lr_y) - mean_x * mean_y
        var_x = self._box(lr_x * lr_x) - mean_x * mean_x
        a = self._slope(cov_xy, var_x, base_hid)
        b = mean_y - a * mean_x
        size = fine_src.shape[2:]
        a = F.interpolate(a, size, mode="bilinear", align_corners=False)
        b = F.interpolate(b, size, mode="bilinear", align_corners=False)
        return (a * hr_x + b).split([3, 1], 1)


class FastGuidedFilterRefiner(_GuidedRefiner):
    """Parameter-free refiner (used when a checkpoint carries no refiner weights)."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def _box(self, t):
        return F.avg_pool2d(t, 3, 1, 1, count_include_pad=False)

    def _slope(self, cov_xy, var_x, base_hid):
        return cov_xy / (var_x + self.eps)


class DeepGuidedFilterRefiner(_GuidedRefiner):
    def __init__(self, hid: int = 16) -> None:
        super().__init__()
        self.box_filter = nn.Conv2d(4, 4, 3, padding=1, bias=False, groups=4)
        self.box_filter.weight.data[...] = 1 / 9
        self.conv = nn.Sequential(
            nn.Conv2d(4 * 2 + hid, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU(True),
            nn.Conv2d(hid, hid, 1, bias=False), nn.BatchNorm2d(hid), nn.ReLU(True),
            nn.Conv2d(hid, 4, 1, bias=True),
        )

    def _box(self, t):
        return self.box_filter(t)

    def _slope(self, cov_xy, var_x, base_hid):
        return self.conv(torch.cat([cov_xy, var_x, base_hid], 1))


class RVM(nn.Module):
    """The matting network. ``forward(src[T,3,H,W], rec, downsample_ratio) -> (fgr, pha, rec)``."""

    def __init__(self, variant: str = "mobilenetv3", refiner: str = "deep") -> None:
        super().__init__()
        if variant == "mobilenetv3":
            self.backbone = MobileNetV3Encoder()
            self.aspp = LRASPP(960, 128)
            self.decoder = RecurrentDecoder((16, 24, 40, 128), (80, 40, 32, 16))
        elif variant == "resnet50":
            self.backbone = ResNet50Encoder()
            self.aspp = LRASPP(2048, 256)
            self.decoder = RecurrentDecoder((64, 256, 512, 256), (128, 64, 32, 16))
        else:
            raise ValueError(f"unknown RVM variant '{variant}' (mobilenetv3 or resnet50)")
        self.variant = variant
        self.project_mat = Projection(16, 4)
        self.project_seg = Projection(16, 1)
        self.refiner = DeepGuidedFilterRefiner() if refiner == "deep" else FastGuidedFilterRefiner()

    def forward(self, src: torch.Tensor, rec: Optional[list] = None, downsample_ratio: float = 1.0):
        rec = list(rec) if rec is not None else [None] * 4
        if downsample_ratio != 1:
            src_sm = F.interpolate(src, scale_factor=downsample_ratio, mode="bilinear", align_corners=False,
                                   recompute_scale_factor=False)
        else:
            src_sm = src
        f1, f2, f3, f4 = self.backbone(src_sm)
        f4 = self.aspp(f4)
        hid, rec = self.decoder(src_sm, f1, f2, f3, f4, rec)
        fgr_res, pha = self.project_mat(hid).split([3, 1], 1)
        if downsample_ratio != 1:
            fgr_res, pha = self.refiner(src, src_sm, fgr_res, pha, hid)
        return (fgr_res + src).clamp(0, 1), pha.clamp(0, 1), rec


def detect_variant(sd: dict) -> str:
    if any(k.startswith("backbone.features.") for k in sd):
        return "mobilenetv3"
    if any(k.startswith("backbone.layer4.") for k in sd):
        return "resnet50"
    raise registry.ModelError(
        "this file is not a RobustVideoMatting checkpoint (no 'backbone.features.*' or 'backbone.layer4.*' keys); "
        "pick rvm_mobilenetv3.pth or rvm_resnet50.pth in the matting folder"
    )


def build_from_state_dict(sd: dict) -> RVM:
    """An RVM in eval mode holding ``sd`` (official or BatchNorm-folded layout), float32."""
    sd = registry.unwrap_state_dict(sd)
    variant = detect_variant(sd)
    refiner = "deep" if any(k.startswith("refiner.") for k in sd) else "fast"
    model = RVM(variant, refiner)
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise registry.ModelError(
            f"RVM {variant} checkpoint does not match the architecture: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}. Use an official RobustVideoMatting .pth file."
        )
    model.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}, strict=False)
    return model.eval()


def load(path: Path | str) -> RVM:
    return build_from_state_dict(registry.load_state_dict(path))


def auto_downsample_ratio(height: int, width: int, target: int = 640) -> float:
    """The ratio that brings the longer side to ``target`` px, never above 1: 0.5 for 720p,
    1/3 for 1080p, 1/6 for 4K; between the RVM authors' advice for portraits and full-body shots
    (0.375/0.6 at 720p, 0.25/0.4 at 1080p, 0.125/0.2 at 4K)."""
    side = max(height, width)
    return float(min(1.0, target / side)) if side > 0 else 1.0
