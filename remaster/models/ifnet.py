"""RIFE IFNet (Practical-RIFE 4.x family), our own implementation: the layout read from a state
dict and the network. Loading and the inference wrapper are :mod:`remaster.models.rife`.

One configurable network covers the 4.x checkpoints that ComfyUI users run: 4.5/4.6 (no feature
encoder, the mask accumulates over blocks), 4.7-4.9 (a two-layer encoder giving 4 feature
channels per frame) and 4.10+/4.2x (a four-layer ``Head`` encoder, blocks that hand 8 feature
channels to the next block; 4.25/4.26 have five blocks). The layout is read from the state dict:
number of blocks, channel widths, encoder type and widths, block output and input channels, so a
file's name never matters. Keys the inference network does not use (``teacher``, ``caltime``:
training leftovers in some releases) are ignored.

Numerics: convolutions run in the compute dtype (fp16 on CUDA, bf16 + channels_last on CPUs with
fast bf16, fp32 elsewhere); flows, masks, warping and blending stay in fp32, so large motions keep
sub-pixel precision whatever the compute dtype.

Speed-ups over a literal port, none of which changes the maths: the ``beta`` scale of each
residual conv is folded into its weights at load time; each frame's encoder features are computed
once and reused by both pairs it belongs to; the two images and their features are warped in one
``grid_sample`` call per block; no-op resamplings (scale 1) are skipped; the last block upsamples
only the flow and mask channels it needs; all timesteps of a pair run as one batch.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["RifeConfig", "IFNet", "detect_config", "strip_state_dict"]


# ---------------------------------------------------------------------------------------------
# layout detection
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RifeConfig:
    """The layout of an IFNet checkpoint, read from its state dict."""

    widths: tuple  # c of each IFBlock
    in_channels: tuple  # input channels of each IFBlock's first conv
    encoder: str  # "none", "conv" (4.7-4.9: conv + deconv) or "head" (4.10+: 3 convs + deconv)
    enc_hidden: int  # encoder hidden width (0 without encoder)
    enc_out: int  # feature channels per frame from the encoder (0 without encoder)
    block_out: int  # channels a block predicts after pixel shuffle (5, 6 or 13)
    feat_out: int  # feature channels a block hands to the next one (0 or 8)
    accumulate_mask: bool  # 4.5/4.6: mask logits add up over blocks; later: each block replaces them

    @property
    def blocks(self) -> int:
        return len(self.widths)

    @property
    def version(self) -> str:
        """A human label for the family (several releases share one layout)."""
        if self.encoder == "none":
            return "4.5" if self.block_out == 5 else "4.6"
        if self.encoder == "conv":
            return "4.7-4.9"
        if self.blocks == 5:
            return "4.25-4.26"
        if self.enc_out == 8 and self.widths[0] == 256:
            return "4.22"
        return "4.10-4.2x"

    def scale_list(self, scale: float = 1.0) -> list:
        """Downscale factor of each block; ``scale`` < 1 coarsens all of them (for 4K input)."""
        n = self.blocks
        return [2 ** (n - 1 - i) / scale for i in range(n)]


_BLOCK_RE = re.compile(r"^block(\d+)\.")


def strip_state_dict(sd: dict) -> dict:
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        for prefix in ("module.", "flownet."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        if _BLOCK_RE.match(k) or k.startswith("encode."):
            out[k] = v
    return out


def detect_config(sd: dict) -> RifeConfig:
    """Read the IFNet layout from a (stripped) Practical-RIFE 4.x state dict."""
    sd = strip_state_dict(sd)
    idx = sorted({int(_BLOCK_RE.match(k).group(1)) for k in sd if _BLOCK_RE.match(k)})
    if not idx or idx != list(range(len(idx))):
        raise ValueError(
            "this file is not a RIFE 4.x IFNet checkpoint (no block0.*, block1.* ... keys). "
            "Pick a Practical-RIFE 4.x flownet file (e.g. rife47.pth, rife49.pth, flownet.pkl of 4.25)."
        )
    widths, ins, outs = [], [], []
    for i in idx:
        try:
            w0 = sd[f"block{i}.conv0.0.0.weight"]
            w1 = sd[f"block{i}.conv0.1.0.weight"]
            wl = sd[f"block{i}.lastconv.0.weight"]
        except KeyError as exc:
            if f"block{i}.lastconv.weight" in sd:
                raise ValueError(
                    "this is a RIFE 4.0-4.4 checkpoint (plain conv blocks and a contextnet/unet refiner); "
                    "only 4.5 and later (ResConv blocks) are supported. Use rife46.pth or newer."
                ) from exc
            raise ValueError(f"RIFE checkpoint lacks key {exc}; the file is incomplete or not IFNet") from exc
        if f"block{i}.convblock.0.beta" not in sd:
            raise ValueError(
                "this RIFE checkpoint has no ResConv blocks (RIFE 4.0-4.4 layout); only 4.5 and later are supported"
            )
        widths.append(int(w1.shape[0]))
        ins.append(int(w0.shape[1]))
        outs.append(int(wl.shape[1]) // 4)
    if len(set(outs)) != 1:
        raise ValueError(f"RIFE blocks disagree on their output channels {outs}; unsupported checkpoint")
    block_out = outs[0]
    if "encode.cnn0.weight" in sd:
        encoder = "head"
        enc_hidden = int(sd["encode.cnn0.weight"].shape[0])
        enc_out = int(sd["encode.cnn3.weight"].shape[1])
    elif "encode.0.weight" in sd:
        encoder = "conv"
        enc_hidden = int(sd["encode.0.weight"].shape[0])
        enc_out = int(sd["encode.1.weight"].shape[1])
    else:
        encoder, enc_hidden, enc_out = "none", 0, 0
    feat_out = block_out - 5 if block_out > 6 else 0
    cfg = RifeConfig(widths=tuple(widths), in_channels=tuple(ins), encoder=encoder, enc_hidden=enc_hidden,
                     enc_out=enc_out, block_out=block_out, feat_out=feat_out, accumulate_mask=encoder == "none")
    first = 7 + 2 * enc_out
    later = 8 + 4 + 2 * enc_out + feat_out
    expected = (first,) + (later,) * (len(widths) - 1)
    if tuple(ins) != expected:
        raise ValueError(
            f"RIFE layout not understood: block input channels {tuple(ins)}, expected {expected} for "
            f"encoder '{encoder}' ({enc_out} features) and block output {block_out}. Unsupported 4.x variant."
        )
    return cfg


# ---------------------------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------------------------
class _ResConv(nn.Module):
    """conv(x) * beta + x, then LeakyReLU(0.2). ``beta`` is folded into the conv after loading."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, c, 1, 1))
        self.folded = False

    def fold(self) -> None:
        with torch.no_grad():
            b = self.beta.view(-1)
            self.conv.weight.mul_(b.view(-1, 1, 1, 1))
            self.conv.bias.mul_(b)
            self.beta.fill_(1.0)
        self.folded = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if not self.folded:
            y = y * self.beta
        return F.leaky_relu_(y.add_(x), 0.2)


def _conv_act(cin: int, cout: int) -> nn.Sequential:
    # keys <name>.0.weight / .0.bias as in the official layout (conv, then LeakyReLU)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.LeakyReLU(0.2, True))


class _Block(nn.Module):
    def __init__(self, cin: int, c: int, out: int) -> None:
        super().__init__()
        self.conv0 = nn.Sequential(_conv_act(cin, c // 2), _conv_act(c // 2, c))
        self.convblock = nn.Sequential(*[_ResConv(c) for _ in range(8)])
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(c, 4 * out, 4, 2, 1), nn.PixelShuffle(2))

    def forward(self, parts: list, t: torch.Tensor, flow: Optional[torch.Tensor], scale: float, keep: int,
                dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
        """One refinement step. ``parts``: full-resolution fp32 inputs in the official channel
        order up to the timestep; ``t``: ``[n,1,1,1]`` timesteps; then (for later blocks) the
        mask and features are in ``parts`` after ``t`` and ``flow`` comes last, as in the official
        network. Each part is resampled on its own, so the concatenation happens at the block's
        (low) resolution instead of at full resolution. Returns the first ``keep`` predicted
        channels at full resolution in fp32, flow in full-resolution pixels."""
        if scale != 1:
            parts = [F.interpolate(p, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
                     if p is not None else None for p in parts]
            if flow is not None:
                flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) * (1.0 / scale)
        lh, lw = parts[0].shape[-2:]
        seq = [t.expand(-1, 1, lh, lw) if p is None else p for p in parts]
        if flow is not None:
            seq.append(flow)
        # one fp32 concatenation, then a single copy into the compute dtype and memory layout
        x = torch.cat(seq, 1).to(dtype=dtype, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        feat = self.convblock(self.conv0(x))
        deconv = self.lastconv[0]
        if keep < deconv.out_channels // 4:  # only the channels that are used (last block: flow + mask)
            y = F.conv_transpose2d(feat, deconv.weight[:, :4 * keep], deconv.bias[:4 * keep], stride=2, padding=1)
        else:
            y = deconv(feat)
        # back to fp32 NCHW at the block's resolution, before upsampling (cheap here)
        y = F.pixel_shuffle(y, 2).float().contiguous()
        if scale != 1:
            y = F.interpolate(y, scale_factor=scale, mode="bilinear", align_corners=False)
            y[:, :4] *= scale
        return y


class _Head(nn.Module):
    """4.10+ encoder: three convs (LeakyReLU between) and a deconv back to full resolution."""

    def __init__(self, hidden: int, out: int) -> None:
        super().__init__()
        self.cnn0 = nn.Conv2d(3, hidden, 3, 2, 1)
        self.cnn1 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn2 = nn.Conv2d(hidden, hidden, 3, 1, 1)
        self.cnn3 = nn.ConvTranspose2d(hidden, out, 4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu_(self.cnn0(x), 0.2)
        x = F.leaky_relu_(self.cnn1(x), 0.2)
        x = F.leaky_relu_(self.cnn2(x), 0.2)
        return self.cnn3(x)


class IFNet(nn.Module):
    """IFNet of Practical-RIFE 4.5+ with the layout given by a :class:`RifeConfig`."""

    def __init__(self, cfg: RifeConfig) -> None:
        super().__init__()
        self.cfg = cfg
        for i, (cin, c) in enumerate(zip(cfg.in_channels, cfg.widths)):
            self.add_module(f"block{i}", _Block(cin, c, cfg.block_out))
        if cfg.encoder == "head":
            self.encode = _Head(cfg.enc_hidden, cfg.enc_out)
        elif cfg.encoder == "conv":
            self.encode = nn.Sequential(
                nn.Conv2d(3, cfg.enc_hidden, 3, 2, 1), nn.ConvTranspose2d(cfg.enc_hidden, cfg.enc_out, 4, 2, 1)
            )
        else:
            self.encode = None
        self.dtype = torch.float32
        self.channels_last = False
        self._grids: dict = {}

    # -- setup ------------------------------------------------------------------------------------
    def fold(self) -> "IFNet":
        for m in self.modules():
            if isinstance(m, _ResConv):
                m.fold()
        return self

    def set_compute(self, device: torch.device, dtype: torch.dtype, channels_last: bool) -> "IFNet":
        self.to(device=device, dtype=dtype)
        if channels_last:
            self.to(memory_format=torch.channels_last)
        self.dtype = dtype
        self.channels_last = channels_last
        self._grids.clear()
        return self

    @property
    def blocks(self) -> list:
        return [getattr(self, f"block{i}") for i in range(self.cfg.blocks)]

    # -- pieces -----------------------------------------------------------------------------------
    def features(self, img: torch.Tensor) -> Optional[torch.Tensor]:
        """Encoder features of frames ``[n,3,H,W]`` (fp32 out), or None for 4.5/4.6."""
        if self.encode is None:
            return None
        x = img.to(dtype=self.dtype, memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return self.encode(x).float().contiguous()

    def _grid(self, h: int, w: int, device: torch.device) -> tuple:
        key = (h, w, str(device))
        g = self._grids.get(key)
        if g is None:
            ys = torch.linspace(-1.0, 1.0, h, device=device)
            xs = torch.linspace(-1.0, 1.0, w, device=device)
            base = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).unsqueeze(0)  # [1,h,w,2] (x,y)
            norm = torch.tensor([2.0 / (w - 1.0), 2.0 / (h - 1.0)], device=device)
            g = (base, norm)
            if len(self._grids) > 8:
                self._grids.clear()
            self._grids[key] = g
        return g

    def _warp(self, src: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Backward-warp ``src`` = ``[2n,C,H,W]`` (side 0 frames, then side 1 frames) by
        ``flow[:, :2]`` (side 0) and ``flow[:, 2:4]`` (side 1) in one grid_sample call."""
        n2, _, h, w = src.shape
        base, norm = self._grid(h, w, src.device)
        fl = flow.view(n2 // 2, 2, 2, h, w).transpose(0, 1).reshape(n2, 2, h, w).permute(0, 2, 3, 1)
        grid = base + fl * norm
        return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=True)

    # -- forward ----------------------------------------------------------------------------------
    @torch.inference_mode()
    def forward(
        self,
        img0: torch.Tensor,
        img1: torch.Tensor,
        timestep: torch.Tensor | float = 0.5,
        scale: float = 1.0,
        f0: Optional[torch.Tensor] = None,
        f1: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Frame at ``timestep`` between ``img0`` and ``img1`` (``[n,3,H,W]`` fp32 0..1, H and W
        multiples of :meth:`RifeModel.pad_multiple`). ``timestep``: float or ``[n]`` tensor.
        ``f0``/``f1``: precomputed :meth:`features` (optional)."""
        cfg = self.cfg
        n, _, h, w = img0.shape
        if self.encode is not None:
            f0 = self.features(img0) if f0 is None else f0
            f1 = self.features(img1) if f1 is None else f1
        if not torch.is_tensor(timestep):
            timestep = torch.full((n,), float(timestep), device=img0.device)
        t = timestep.to(device=img0.device, dtype=torch.float32).view(-1, 1, 1, 1)
        scales = cfg.scale_list(scale)
        last = cfg.blocks - 1
        flow = mask = feat = None
        wi0, wi1 = img0, img1
        wf0, wf1 = f0, f1
        enc = f0 is not None
        # warp sources, built once: both sides stacked on the batch axis, features after the image
        src = torch.cat((torch.cat((img0, f0), 1), torch.cat((img1, f1), 1)) if enc else (img0, img1), 0)
        for i, blk in enumerate(self.blocks):
            keep = 5 if i == last else cfg.block_out
            # None marks where the timestep channel goes
            parts = [wi0, wi1] + ([wf0, wf1] if enc else []) + [None]
            if flow is not None:
                parts.append(mask)
                if cfg.feat_out:
                    parts.append(feat)
            out = blk(parts, t, flow, scales[i], keep, self.dtype, self.channels_last)
            if flow is None:
                flow, mask = out[:, :4], out[:, 4:5]
            else:
                flow = flow + out[:, :4]
                mask = mask + out[:, 4:5] if cfg.accumulate_mask else out[:, 4:5]
            feat = out[:, 5:] if cfg.feat_out and i != last else None
            warped = self._warp(src if i != last else src[:, :3], flow)
            wi0, wi1 = warped[:n, :3], warped[n:, :3]
            if enc:
                wf0, wf1 = warped[:n, 3:], warped[n:, 3:]
        m = torch.sigmoid(mask)
        return wi0 * m + wi1 * (1 - m)
