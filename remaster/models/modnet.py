"""MODNet portrait matting (Ke et al., AAAI 2022), laid out so the official checkpoints
(``modnet_photographic_portrait_matting.ckpt``, ``modnet_webcam_portrait_matting.ckpt``: state
dicts saved from ``nn.DataParallel`` with ``module.`` prefixed keys) load by name.

Inference path only: the low-resolution semantic branch, the high-resolution detail branch and
the fusion branch; the training-only heads (``lr_branch.conv_lr``, ``hr_branch.conv_hr``) are kept
as modules so the checkpoint loads strictly but never run. Input: RGB normalised to -1..1, both
sides multiples of 32. Output: alpha ``[N,1,H,W]`` in 0..1.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import registry


def _up(x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)


class IBNorm(nn.Module):
    """Batch norm on the first half of the channels, instance norm (no affine) on the rest."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.bnorm = nn.BatchNorm2d(self.split, affine=True)
        self.inorm = nn.InstanceNorm2d(channels - self.split, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x[:, : self.split], x[:, self.split :]
        return torch.cat([self.bnorm(a.contiguous()), self.inorm(b.contiguous())], 1)


class ConvIBReLU(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0,
                 ibn: bool = True, relu: bool = True) -> None:
        super().__init__()
        mods: list = [nn.Conv2d(cin, cout, k, stride=stride, padding=padding, bias=True)]
        if ibn:
            mods.append(IBNorm(cout))
        if relu:
            mods.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*mods)

    def forward(self, x):
        return self.layers(x)


class SEBlock(nn.Module):
    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid(),
        )

    def forward(self, x):
        w = self.fc(self.pool(x).flatten(1))
        return x * w[:, :, None, None]


# ---- MobileNetV2 backbone (the variant MODNet ships: ReLU6, width 1.0, last conv 1280) ---------
def _conv_bn(cin, cout, k, stride, groups=1, act=True):
    mods = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        mods.append(nn.ReLU6(inplace=True))
    return mods


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = round(cin * expansion)
        self.residual = stride == 1 and cin == cout
        mods = [] if expansion == 1 else _conv_bn(cin, hidden, 1, 1)
        mods += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        mods += _conv_bn(hidden, cout, 1, 1, act=False)
        self.conv = nn.Sequential(*mods)

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))

    def __init__(self) -> None:
        super().__init__()
        layers = [nn.Sequential(*_conv_bn(3, 32, 3, 2))]
        cin = 32
        for t, c, n, s in self.SETTING:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(nn.Sequential(*_conv_bn(cin, 1280, 1, 1)))
        self.features = nn.Sequential(*layers)


class Backbone(nn.Module):
    enc_channels = (16, 24, 32, 96, 1280)
    taps = (1, 3, 6, 13, 18)  # feature indices whose outputs are the 1/2 .. 1/32 encodings

    def __init__(self) -> None:
        super().__init__()
        self.model = MobileNetV2()

    def forward(self, x):
        out = []
        for i, layer in enumerate(self.model.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
        return out


class LRBranch(nn.Module):
    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        e = backbone.enc_channels
        self.backbone = backbone
        self.se_block = SEBlock(e[4], 4)
        self.conv_lr16x = ConvIBReLU(e[4], e[3], 5, padding=2)
        self.conv_lr8x = ConvIBReLU(e[3], e[2], 5, padding=2)
        self.conv_lr = ConvIBReLU(e[2], 1, 3, stride=2, padding=1, ibn=False, relu=False)  # training head

    def forward(self, img):
        enc2x, enc4x, _e8, _e16, enc32x = self.backbone(img)
        lr16x = self.conv_lr16x(_up(self.se_block(enc32x)))
        lr8x = self.conv_lr8x(_up(lr16x))
        return lr8x, enc2x, enc4x


class HRBranch(nn.Module):
    def __init__(self, hr: int, e: tuple) -> None:
        super().__init__()
        self.tohr_enc2x = ConvIBReLU(e[0], hr, 1)
        self.conv_enc2x = ConvIBReLU(hr + 3, hr, 3, stride=2, padding=1)
        self.tohr_enc4x = ConvIBReLU(e[1], hr, 1)
        self.conv_enc4x = ConvIBReLU(2 * hr, 2 * hr, 3, padding=1)
        self.conv_hr4x = nn.Sequential(
            ConvIBReLU(3 * hr + 3, 2 * hr, 3, padding=1),
            ConvIBReLU(2 * hr, 2 * hr, 3, padding=1),
            ConvIBReLU(2 * hr, hr, 3, padding=1),
        )
        self.conv_hr2x = nn.Sequential(
            ConvIBReLU(2 * hr, 2 * hr, 3, padding=1),
            ConvIBReLU(2 * hr, hr, 3, padding=1),
            ConvIBReLU(hr, hr, 3, padding=1),
            ConvIBReLU(hr, hr, 3, padding=1),
        )
        self.conv_hr = nn.Sequential(  # training head
            ConvIBReLU(hr + 3, hr, 3, padding=1),
            ConvIBReLU(hr, 1, 1, ibn=False, relu=False),
        )

    def forward(self, img, enc2x, enc4x, lr8x):
        img2x = _up(img, 0.5)
        img4x = _up(img, 0.25)
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat([img2x, enc2x], 1))
        hr4x = self.conv_enc4x(torch.cat([hr4x, self.tohr_enc4x(enc4x)], 1))
        hr4x = self.conv_hr4x(torch.cat([hr4x, _up(lr8x), img4x], 1))
        return self.conv_hr2x(torch.cat([_up(hr4x), enc2x], 1))


class FusionBranch(nn.Module):
    def __init__(self, hr: int, e: tuple) -> None:
        super().__init__()
        self.conv_lr4x = ConvIBReLU(e[2], hr, 5, padding=2)
        self.conv_f2x = ConvIBReLU(2 * hr, hr, 3, padding=1)
        self.conv_f = nn.Sequential(
            ConvIBReLU(hr + 3, hr // 2, 3, padding=1),
            ConvIBReLU(hr // 2, 1, 1, ibn=False, relu=False),
        )

    def forward(self, img, lr8x, hr2x):
        lr2x = _up(self.conv_lr4x(_up(lr8x)))
        f2x = self.conv_f2x(torch.cat([lr2x, hr2x], 1))
        return torch.sigmoid(self.conv_f(torch.cat([_up(f2x), img], 1)))


class MODNet(nn.Module):
    def __init__(self, hr_channels: int = 32) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.lr_branch = LRBranch(self.backbone)  # shares the backbone, as the official model does
        self.hr_branch = HRBranch(hr_channels, Backbone.enc_channels)
        self.f_branch = FusionBranch(hr_channels, Backbone.enc_channels)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """``img`` ``[N,3,H,W]`` in -1..1 (H, W multiples of 32) -> alpha ``[N,1,H,W]``."""
        lr8x, enc2x, enc4x = self.lr_branch(img)
        hr2x = self.hr_branch(img, enc2x, enc4x, lr8x)
        return self.f_branch(img, lr8x, hr2x)


def build_from_state_dict(sd: dict) -> MODNet:
    sd = registry.unwrap_state_dict(sd)
    model = MODNet()
    own = model.state_dict()
    # the backbone is stored twice (as backbone.* and lr_branch.backbone.*); accept either copy
    full = {}
    for k in own:
        if k in sd:
            full[k] = sd[k]
        elif k.startswith("backbone.") and "lr_branch." + k in sd:
            full[k] = sd["lr_branch." + k]
        elif k.startswith("lr_branch.backbone.") and k[len("lr_branch."):] in sd:
            full[k] = sd[k[len("lr_branch."):]]
    missing = [k for k in own if k not in full and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    if missing or unexpected:
        raise registry.ModelError(
            f"this file is not a MODNet checkpoint: missing {missing[:4]}, unexpected {unexpected[:4]}. "
            "Use modnet_photographic_portrait_matting.ckpt or modnet_webcam_portrait_matting.ckpt "
            "from the official release."
        )
    full = {k: (v.float() if v.is_floating_point() else v) for k, v in full.items()}
    model.load_state_dict(full, strict=False)
    return model.eval()


def load(path: Path | str) -> MODNet:
    return build_from_state_dict(registry.load_state_dict(path))
