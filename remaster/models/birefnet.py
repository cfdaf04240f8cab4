"""BiRefNet (Zheng et al., "Bilateral Reference for High-Resolution Dichotomous Image
Segmentation", CAAI AIR 2024), laid out so the released checkpoints load by name: the general,
portrait and matting weights (Swin-L backbone) and BiRefNet_lite (Swin-T), as the
``model.safetensors`` files of the ZhengPeng7 Hugging Face repositories or ``.pth`` state dicts.

Inference path of the released configuration: the Swin backbone runs on the image and on a
half-size copy and their features are concatenated per stage; the three shallower stages are
pooled onto the deepest one (context) and squeezed by a decoder block; four decoder blocks
(3x3 conv, BatchNorm, ReLU, a deformable ASPP, 3x3 conv, BatchNorm) go back up with lateral 1x1
skips, with the image itself fed in as space-to-channel patches at every level ("input patch"
blocks) and, at the three deeper levels, a gradient-attention gate. The multi-scale supervision
heads and the gradient prediction heads are training-only; they are kept as modules so loading
is strict but never run.

Input: RGB in 0..1 normalised with the ImageNet mean/std (:func:`normalise`), ``[N,3,H,W]`` with
H and W multiples of 32; the weights were trained at 1024x1024. Output: alpha ``[N,1,H,W]``,
the sigmoid of the last prediction.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from . import registry
from .swin import SWIN_L, SWIN_T, SwinConfig, SwinTransformer, config_from_state_dict

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PREFIXES = ("module.", "_orig_mod.", "birefnet.")
# how the input-patch blocks stack an image's k x k grid of patches into channels:
# "channel-major" is channel c, row i, column j -> c*k*k + i*k + j (the current official code);
# "column-major" is column j, row i, channel c -> (j*k + i)*3 + c (the code before November 2024)
PATCH_ORDERS = ("channel-major", "column-major")


def normalise(rgb: torch.Tensor) -> torch.Tensor:
    """``[N,3,H,W]`` RGB in 0..1 -> the network's input."""
    mean = torch.tensor(MEAN, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb - mean) / std


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


def image_patches(x: torch.Tensor, size, order: str = "channel-major") -> torch.Tensor:
    """Cut ``x`` ``[N,C,H,W]`` into a grid of ``size``-sized patches stacked along channels."""
    n, c, h, w = x.shape
    gh, gw = h // size[0], w // size[1]
    t = x.reshape(n, c, gh, size[0], gw, size[1])
    if order == "column-major":
        t = t.permute(0, 4, 2, 1, 3, 5)  # n, col, row, c, h, w
    else:
        t = t.permute(0, 1, 2, 4, 3, 5)  # n, c, row, col, h, w
    return t.reshape(n, c * gh * gw, size[0], size[1])


# ---- decoder building blocks ------------------------------------------------------------------
class DeformConv(nn.Module):
    """Modulated deformable convolution (DCNv2) whose offsets and mask come from the input."""

    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.pad = k // 2
        self.offset_conv = nn.Conv2d(cin, 2 * k * k, k, padding=self.pad)
        self.modulator_conv = nn.Conv2d(cin, k * k, k, padding=self.pad)
        self.regular_conv = nn.Conv2d(cin, cout, k, padding=self.pad, bias=False)

    def forward(self, x):
        mask = 2.0 * torch.sigmoid(self.modulator_conv(x))
        offset, weight = self.offset_conv(x), self.regular_conv.weight
        if x.device.type != "cuda" and min(x.shape[2:]) > 1:
            # CPU (and MPS): ~3x faster than torchvision's CPU kernel, which has no bf16 either;
            # the sampling positions are computed in float32
            y = sampled_deform_conv(x.float(), offset.float(), mask.float(), weight.float(), self.pad)
            return y.to(x.dtype)
        return deform_conv2d(x, offset, weight, None, padding=(self.pad, self.pad), mask=mask)


def sampled_deform_conv(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                        pad: int, budget: int = 2**24) -> torch.Tensor:
    """Modulated deformable convolution (stride 1, dilation 1, no bias) as one bilinear
    ``grid_sample`` per band of rows and a matrix product: the same result as
    ``torchvision.ops.deform_conv2d`` (samples outside the map are zero, offsets are (dy, dx)
    per tap). ``budget`` bounds the sampled values held at once."""
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    k = kh * kw
    dev = x.device
    tap_y = torch.arange(kh, device=dev, dtype=x.dtype).repeat_interleave(kw).view(k, 1, 1) - pad
    tap_x = torch.arange(kw, device=dev, dtype=x.dtype).repeat(kh).view(k, 1, 1) - pad
    wm = weight.reshape(o, c * k)
    band = max(1, budget // (c * k * w))
    out = x.new_empty(n, o, h, w)
    for b in range(n):
        for r0 in range(0, h, band):
            r1 = min(h, r0 + band)
            off = offset[b, :, r0:r1].reshape(k, 2, r1 - r0, w)
            ys = torch.arange(r0, r1, device=dev, dtype=x.dtype).view(1, -1, 1) + tap_y + off[:, 0]
            xs = torch.arange(w, device=dev, dtype=x.dtype).view(1, 1, -1) + tap_x + off[:, 1]
            grid = torch.stack([xs * (2 / (w - 1)) - 1, ys * (2 / (h - 1)) - 1], -1)
            sampled = F.grid_sample(x[b : b + 1], grid.view(1, k * (r1 - r0), w, 2), mode="bilinear",
                                    padding_mode="zeros", align_corners=True)
            sampled = sampled.view(c, k, -1) * mask[b, :, r0:r1].reshape(1, k, -1)
            out[b, :, r0:r1] = (wm @ sampled.view(c * k, -1)).view(o, r1 - r0, w)
    return out


class DeformBranch(nn.Module):
    def __init__(self, cin: int, cout: int, k: int) -> None:
        super().__init__()
        self.atrous_conv = DeformConv(cin, cout, k)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.atrous_conv(x)))


class DeformASPP(nn.Module):
    """Parallel deformable branches (1x1, then 1x1, 3x3, 7x7) and a global-pool branch, fused by 1x1."""

    def __init__(self, ch: int, inner: int = 256, kernels=(1, 3, 7)) -> None:
        super().__init__()
        self.aspp1 = DeformBranch(ch, inner, 1)
        self.aspp_deforms = nn.ModuleList(DeformBranch(ch, inner, k) for k in kernels)
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(ch, inner, 1, bias=False), nn.BatchNorm2d(inner), nn.ReLU()
        )
        self.conv1 = nn.Conv2d(inner * (2 + len(kernels)), ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)

    def forward(self, x):
        parts = [self.aspp1(x)] + [b(x) for b in self.aspp_deforms]
        parts.append(_resize(self.global_avg_pool(x), x.shape[2:]))
        return F.relu(self.bn1(self.conv1(torch.cat(parts, 1))))


class DecBlock(nn.Module):
    def __init__(self, cin: int, cout: int, inner: int = 64) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cin, inner, 3, padding=1)
        self.bn_in = nn.BatchNorm2d(inner)
        self.dec_att = DeformASPP(inner)
        self.conv_out = nn.Conv2d(inner, cout, 3, padding=1)
        self.bn_out = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = self.dec_att(F.relu(self.bn_in(self.conv_in(x))))
        return self.bn_out(self.conv_out(x))


class Lateral(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.conv(x)


class PatchConvs(nn.Module):
    """Two 3x3 convolutions (no activation) over the image's space-to-channel patches."""

    def __init__(self, cin: int, cout: int, inner: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, inner, 3, padding=1)
        self.conv_out = nn.Conv2d(inner, cout, 3, padding=1)

    def forward(self, x):
        return self.conv_out(self.conv1(x))


def _gate(cin: int, n: int = 16) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, n, 3, padding=1), nn.BatchNorm2d(n), nn.ReLU())


def _head(cin: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, 1, 1))


class Decoder(nn.Module):
    def __init__(self, ch: tuple, patch_order: str = "channel-major") -> None:
        """``ch``: encoder widths deepest first (after the multi-scale concat), e.g. Swin-L
        ``(3072, 1536, 768, 384)``."""
        super().__init__()
        self.patch_order = patch_order
        out = (ch[1], ch[2], ch[3], ch[3] // 2)  # decoder block outputs, deep to shallow
        ipt = (ch[0] // 8, ch[0] // 8, ch[1] // 8, ch[2] // 8, ch[3] // 8)  # input-patch widths, blk5..1
        self.ipt_blk5 = PatchConvs(3 * 32 * 32, ipt[0])
        self.ipt_blk4 = PatchConvs(3 * 16 * 16, ipt[1])
        self.ipt_blk3 = PatchConvs(3 * 8 * 8, ipt[2])
        self.ipt_blk2 = PatchConvs(3 * 4 * 4, ipt[3])
        self.ipt_blk1 = PatchConvs(3, ipt[4])
        self.decoder_block4 = DecBlock(ch[0] + ipt[0], out[0])
        self.decoder_block3 = DecBlock(ch[1] + ipt[1], out[1])
        self.decoder_block2 = DecBlock(ch[2] + ipt[2], out[2])
        self.decoder_block1 = DecBlock(ch[3] + ipt[3], out[3])
        self.conv_out1 = _head(out[3] + ipt[4])
        self.lateral_block4 = Lateral(ch[1], out[0])
        self.lateral_block3 = Lateral(ch[2], out[1])
        self.lateral_block2 = Lateral(ch[3], out[2])
        for lvl, c in zip((4, 3, 2), out[:3]):
            self.add_module(f"conv_ms_spvn_{lvl}", nn.Conv2d(c, 1, 1))  # training-only
            self.add_module(f"gdt_convs_{lvl}", _gate(c))
            self.add_module(f"gdt_convs_pred_{lvl}", _head(16))  # training-only
            self.add_module(f"gdt_convs_attn_{lvl}", _head(16))

    def _with_patches(self, img, feat, blk, order):
        size = feat.shape[2:]
        grid = (img.shape[2] // size[0], img.shape[3] // size[1])
        patches = image_patches(img, size, order) if grid != (1, 1) else img
        return torch.cat([feat, blk(_resize(patches, size))], 1)

    def _gated(self, p, lvl: int):
        g = getattr(self, f"gdt_convs_attn_{lvl}")(getattr(self, f"gdt_convs_{lvl}")(p))
        return p * torch.sigmoid(g)

    def forward(self, img, x1, x2, x3, x4, patch_order: str | None = None):
        o = patch_order or self.patch_order
        p = self._gated(self.decoder_block4(self._with_patches(img, x4, self.ipt_blk5, o)), 4)
        p = _resize(p, x3.shape[2:]) + self.lateral_block4(x3)
        p = self._gated(self.decoder_block3(self._with_patches(img, p, self.ipt_blk4, o)), 3)
        p = _resize(p, x2.shape[2:]) + self.lateral_block3(x2)
        p = self._gated(self.decoder_block2(self._with_patches(img, p, self.ipt_blk3, o)), 2)
        p = _resize(p, x1.shape[2:]) + self.lateral_block2(x1)
        p = self.decoder_block1(self._with_patches(img, p, self.ipt_blk2, o))
        p = _resize(p, img.shape[2:])
        return self.conv_out1(self._with_patches(img, p, self.ipt_blk1, o))


class BiRefNet(nn.Module):
    def __init__(self, backbone: SwinConfig = SWIN_L, patch_order: str = "channel-major") -> None:
        super().__init__()
        if patch_order not in PATCH_ORDERS:
            raise ValueError(f"patch_order must be one of {PATCH_ORDERS}, got {patch_order!r}")
        self.bb = SwinTransformer(backbone)
        ch = tuple(2 * c for c in reversed(backbone.widths))  # x4 .. x1 after the multi-scale concat
        self.squeeze_module = nn.Sequential(DecBlock(ch[0] + ch[1] + ch[2] + ch[3], ch[0]))
        self.decoder = Decoder(ch, patch_order)

    def encode(self, x: torch.Tensor):
        full = self.bb(x)
        half = self.bb(_resize(x, (x.shape[2] // 2, x.shape[3] // 2)))
        x1, x2, x3, x4 = (torch.cat([f, _resize(g, f.shape[2:])], 1) for f, g in zip(full, half))
        ctx = [_resize(f, x4.shape[2:]) for f in (x1, x2, x3)]
        return x1, x2, x3, self.squeeze_module(torch.cat(ctx + [x4], 1))

    def logits(self, x: torch.Tensor, patch_order: str | None = None) -> torch.Tensor:
        return self.decoder(x, *self.encode(x), patch_order=patch_order)

    def forward(self, x: torch.Tensor, patch_order: str | None = None) -> torch.Tensor:
        """``x`` ``[N,3,H,W]`` normalised (:func:`normalise`), H and W multiples of 32 -> alpha
        ``[N,1,H,W]``. ``patch_order`` overrides the model's (see ``PATCH_ORDERS``)."""
        h, w = x.shape[2:]
        if h % 32 or w % 32:
            raise ValueError(f"BiRefNet input sides must be multiples of 32, got {h}x{w}")
        if patch_order is not None and patch_order not in PATCH_ORDERS:
            raise ValueError(f"patch_order must be one of {PATCH_ORDERS}, got {patch_order!r}")
        return torch.sigmoid(self.logits(x, patch_order))


def clean_state_dict(sd: dict) -> dict:
    sd = registry.unwrap_state_dict(sd)
    out = {}
    for k, v in sd.items():
        for p in PREFIXES:
            while k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def build_from_state_dict(sd: dict, patch_order: str = "channel-major") -> BiRefNet:
    sd = clean_state_dict(sd)
    try:
        cfg = config_from_state_dict(sd, "bb.")
    except (KeyError, IndexError, AttributeError) as exc:
        raise registry.ModelError(
            f"not a BiRefNet checkpoint: no Swin backbone weights ({exc}). Use model.safetensors from "
            "ZhengPeng7/BiRefNet, BiRefNet-portrait, BiRefNet-matting or BiRefNet_lite."
        ) from None
    model = BiRefNet(cfg, patch_order)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        raise registry.ModelError(
            f"not a BiRefNet checkpoint (Swin embed {cfg.embed_dim}, depths {list(cfg.depths)}): "
            f"missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong[:3]}. "
            "Use model.safetensors from ZhengPeng7/BiRefNet (general, portrait, matting) or BiRefNet_lite; "
            "variants with other backbones (PVT, DINOv3) are not supported."
        )
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load(path: Path | str, patch_order: str = "channel-major") -> BiRefNet:
    return build_from_state_dict(registry.load_state_dict(path), patch_order)


__all__ = ["BiRefNet", "SWIN_L", "SWIN_T", "load", "normalise", "image_patches", "PATCH_ORDERS"]
