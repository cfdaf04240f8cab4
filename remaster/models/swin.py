"""Swin Transformer v1 as a dense backbone (Liu et al., ICCV 2021): four stages of shifted-window
attention, returning the layer-normed feature map of every stage at strides 4, 8, 16 and 32.

The module and parameter names follow the layout BiRefNet checkpoints store under ``bb.``
(``patch_embed``, ``layers.i.blocks.j``, ``layers.i.downsample``, ``norm0..3``; the relative
position index is a saved buffer). Inference only: no dropout, no stochastic depth, no absolute
position embedding. Any input size works; stages pad to whole windows internally.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class SwinConfig:
    embed_dim: int
    depths: tuple
    heads: tuple
    window: int

    @property
    def widths(self) -> tuple:
        return tuple(self.embed_dim * 2 ** i for i in range(len(self.depths)))


# the published variants (BiRefNet's swin_v1_t / _s / _b / _l)
SWIN_T = SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), 7)
SWIN_S = SwinConfig(96, (2, 2, 18, 2), (3, 6, 12, 24), 7)
SWIN_B = SwinConfig(128, (2, 2, 18, 2), (4, 8, 16, 32), 12)
SWIN_L = SwinConfig(192, (2, 2, 18, 2), (6, 12, 24, 48), 12)


def _relative_index(window: int) -> torch.Tensor:
    """``[w*w, w*w]`` index into the ``(2w-1)^2`` bias table for every query/key pair of a window."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    pos = torch.stack([ys.flatten(), xs.flatten()])  # [2, w*w]
    rel = pos[:, :, None] - pos[:, None, :] + (window - 1)  # [2, q, k], 0 .. 2w-2
    return rel[0] * (2 * window - 1) + rel[1]


def _to_windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """``[B,H,W,C]`` (H, W multiples of w) -> ``[B*nH*nW, w*w, C]``."""
    b, h, wd, c = x.shape
    x = x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, w * w, c)


def _from_windows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    c = x.shape[-1]
    x = x.view(-1, h // w, wd // w, w, w, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, wd, c)


def _shift_mask(hp: int, wp: int, window: int, shift: int, device) -> torch.Tensor:
    """Additive ``[nW, w*w, w*w]`` mask: 0 within a region of the rolled map, -inf across regions."""
    label = torch.zeros(hp, wp, device=device)
    n = 0
    for ys in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
        for xs in (slice(0, -window), slice(-window, -shift), slice(-shift, None)):
            label[ys, xs] = n
            n += 1
    lw = _to_windows(label[None, :, :, None], window)[..., 0]  # [nW, w*w]
    same = lw[:, :, None] == lw[:, None, :]
    return torch.zeros(same.shape, device=device).masked_fill_(~same, float("-inf"))


class WindowAttention(nn.Module):
    def __init__(self, dim: int, heads: int, window: int) -> None:
        super().__init__()
        self.heads = heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", _relative_index(window))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1).to(q.dtype)[None]  # [1, heads, n, n]
        if mask is not None:  # [nW, n, n], windows of one image are contiguous in the batch
            nw = mask.shape[0]
            bias = (bias + mask.to(q.dtype)[:, None]).repeat(bw // nw, 1, 1, 1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(bw, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class SwinBlock(nn.Module):
    def __init__(self, dim: int, heads: int, window: int, shift: int) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, heads, window)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, h: int, w: int, mask: torch.Tensor) -> torch.Tensor:
        b, _, c = x.shape
        ws = self.window
        y = self.norm1(x).view(b, h, w, c)
        pad_b, pad_r = (-h) % ws, (-w) % ws
        y = F.pad(y, (0, 0, 0, pad_r, 0, pad_b))
        hp, wp = h + pad_b, w + pad_r
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), (1, 2))
        y = self.attn(_to_windows(y, ws), mask if self.shift else None)
        y = _from_windows(y, ws, hp, wp)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), (1, 2))
        x = x + y[:, :h, :w].reshape(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2x2 neighbourhood -> one token of twice the width (odd sides padded by one)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, _, c = x.shape
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        # order: (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x.reshape(b, -1, 4 * c)))


class SwinStage(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, window: int, downsample: bool) -> None:
        super().__init__()
        self.window = window
        self.blocks = nn.ModuleList(
            SwinBlock(dim, heads, window, 0 if i % 2 == 0 else window // 2) for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor, h: int, w: int):
        ws = self.window
        mask = _shift_mask(h + (-h) % ws, w + (-w) % ws, ws, ws // 2, x.device)
        for blk in self.blocks:
            x = blk(x, h, w, mask)
        return x


class PatchEmbed(nn.Module):
    def __init__(self, dim: int, patch: int = 4) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(3, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch
        x = F.pad(x, (0, (-x.shape[3]) % p, 0, (-x.shape[2]) % p))
        return self.proj(x)  # [B, C, H/4, W/4]; the norm runs on the token sequence


class SwinTransformer(nn.Module):
    def __init__(self, cfg: SwinConfig) -> None:
        super().__init__()
        self.cfg = cfg
        widths = cfg.widths
        self.patch_embed = PatchEmbed(cfg.embed_dim)
        last = len(cfg.depths) - 1
        self.layers = nn.ModuleList(
            SwinStage(widths[i], cfg.depths[i], cfg.heads[i], cfg.window, i < last) for i in range(len(cfg.depths))
        )
        for i, wd in enumerate(widths):
            self.add_module(f"norm{i}", nn.LayerNorm(wd))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B,3,H,W]`` -> feature maps ``[B, C_i, ceil(H/4/2^i), ceil(W/4/2^i)]`` for i = 0..3."""
        x = self.patch_embed(x)
        b, _, h, w = x.shape
        x = self.patch_embed.norm(x.flatten(2).transpose(1, 2))
        outs = []
        for i, stage in enumerate(self.layers):
            x = stage(x, h, w)
            y = getattr(self, f"norm{i}")(x)
            outs.append(y.view(b, h, w, -1).permute(0, 3, 1, 2).contiguous())
            if stage.downsample is not None:
                x = stage.downsample(x, h, w)
                h, w = (h + 1) // 2, (w + 1) // 2
        return outs


def config_from_state_dict(sd: dict, prefix: str = "bb.") -> SwinConfig:
    """Read width, depths, heads and window size of a Swin backbone from its weights."""
    dim = sd[prefix + "patch_embed.proj.weight"].shape[0]
    depths, heads = [], []
    for i in range(4):
        n = 0
        while f"{prefix}layers.{i}.blocks.{n}.norm1.weight" in sd:
            n += 1
        if n == 0:
            raise KeyError(f"{prefix}layers.{i}.blocks.0")
        depths.append(n)
        heads.append(sd[f"{prefix}layers.{i}.blocks.0.attn.relative_position_bias_table"].shape[1])
    table = sd[prefix + "layers.0.blocks.0.attn.relative_position_bias_table"].shape[0]
    window = (int(round(table ** 0.5)) + 1) // 2
    return SwinConfig(int(dim), tuple(depths), tuple(heads), window)
