"""A compact Real-ESRGAN (SRVGGNetCompact) with a recurrent temporal module, and its file format.

Architecture: the SRVGGNetCompact body (spandrel's module, unchanged weights and key names) with
one extra block after activation ``fuse_at``: the hidden features of the *previous* frame (the
input of the last convolution), warped to the current frame by optical flow and multiplied by a
flow-confidence map, are concatenated with the current features and added back through two
3×3 convolutions (``temporal.0`` / ``temporal.2``). The last of them starts at zero, so an
untrained temporal model is exactly the frame-wise model.

File: ``.safetensors`` with the Compact keys (``body.*``) plus ``temporal.*``; metadata
``remaster_arch = temporal_compact`` and ``fuse_at``. Dropping the ``temporal.*`` keys gives a
plain Compact file any spandrel loader reads.

Scales: x1 and x2 models are derived *exactly* from a x4 Compact by averaging the last
convolution's filters over each 4×4 (or 2×2) block of sub-pixels: the result equals the x4 output
box-averaged to that scale (the nearest-upsampled residual averages back to the input).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

ARCH = "temporal_compact"


def _compact_class():
    from spandrel.architectures.Compact import Compact

    return Compact


def compact_from_state_dict(sd: dict) -> nn.Module:
    """A spandrel SRVGGNetCompact built from (and loaded with) a plain Compact state dict."""
    from spandrel import ModelLoader

    desc = ModelLoader().load_from_state_dict({k: v for k, v in sd.items() if not k.startswith("temporal.")})
    if type(desc.model).__name__ != "SRVGGNetCompact":
        raise ValueError(f"expected a compact Real-ESRGAN (SRVGGNetCompact) model, got {type(desc.model).__name__}; "
                         "pick realesr-general-x4v3 or realesr-animevideov3")
    return desc.model.float()


def derive_scale(sd: dict, scale: int) -> dict:
    """A Compact state dict at ``scale`` (1, 2 or 4) from a x4 one (exact box average of its output)."""
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("body."))
    w, b = sd[f"body.{last}.weight"].float(), sd[f"body.{last}.bias"].float()
    n_out = w.shape[0]
    src = int(round((n_out / 3) ** 0.5))
    if scale == src:
        return dict(sd)
    if src % scale:
        raise ValueError(f"cannot derive a x{scale} model from a x{src} one (choose 1, 2 or {src})")
    r = src // scale
    # channel c*src² + i*src + j -> output sub-pixel (i, j) of colour c
    w6 = w.reshape(3, scale, r, scale, r, *w.shape[1:]).mean((2, 4)).reshape(3 * scale * scale, *w.shape[1:])
    b6 = b.reshape(3, scale, r, scale, r).mean((2, 4)).reshape(-1)
    out = dict(sd)
    out[f"body.{last}.weight"], out[f"body.{last}.bias"] = w6.contiguous(), b6.contiguous()
    return out


class _CompactSplit(nn.Module):
    """A Compact's body split at an activation ``fuse_at``: ``head`` up to it, ``_finish`` after."""

    def __init__(self, compact: nn.Module, fuse_at: Optional[int] = None) -> None:
        super().__init__()
        self.body = compact.body
        self.upsampler = compact.upsampler
        self.scale = int(compact.upscale)
        self.num_feat = int(compact.num_feat)
        self.fuse_at = int(fuse_at) if fuse_at is not None else len(self.body) - 10  # 4 conv+act pairs after it

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Features up to and including the fusion point (the part a short fine-tune may freeze)."""
        for layer in self.body[: self.fuse_at + 1]:
            x = layer(x)
        return x

    def _finish(self, h: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The body after the fusion point, the upsampler and the nearest-upscaled input added back."""
        for layer in self.body[self.fuse_at + 1 : -1]:
            h = layer(h)
        out = self.upsampler(self.body[-1](h))
        base = x if self.scale == 1 else F.interpolate(x, scale_factor=self.scale, mode="nearest")
        return out + base, h


class TemporalCompact(_CompactSplit):
    """SRVGGNetCompact + a recurrent, flow-warped feature fusion (see the module docstring)."""

    def __init__(self, compact: nn.Module, fuse_at: Optional[int] = None) -> None:
        super().__init__(compact, fuse_at)
        nf, n = self.num_feat, len(self.body)
        if not (0 < self.fuse_at < n - 1) or not isinstance(self.body[self.fuse_at], (nn.PReLU, nn.ReLU, nn.LeakyReLU)):
            raise ValueError(f"fuse_at must index an activation of the body (odd, < {n - 1}), got {self.fuse_at}")
        self.temporal = nn.Sequential(nn.Conv2d(2 * nf + 1, nf, 3, 1, 1), nn.LeakyReLU(0.1), nn.Conv2d(nf, nf, 3, 1, 1))
        nn.init.zeros_(self.temporal[2].weight)
        nn.init.zeros_(self.temporal[2].bias)

    def tail(self, h: torch.Tensor, x: torch.Tensor, prev_warped: Optional[torch.Tensor],
             conf: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Fuse the warped previous features, finish the body. Returns (image, hidden features)."""
        if prev_warped is None:
            prev_warped = torch.zeros_like(h)
            conf = torch.zeros_like(h[:, :1])
        h = h + self.temporal(torch.cat([h, prev_warped * conf, conf], 1))
        return self._finish(h, x)

    def forward(self, x, prev_warped=None, conf=None):
        return self.tail(self.head(x), x, prev_warped, conf)

    def plain_state_dict(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("temporal.")}


class FrameWise(_CompactSplit):
    """The plain Compact behind the same ``head``/``tail`` interface (no temporal module)."""

    def tail(self, h, x, prev_warped=None, conf=None):
        return self._finish(h, x)

    def forward(self, x, prev_warped=None, conf=None):
        return self.tail(self.head(x), x)

    def plain_state_dict(self) -> dict:
        return self.state_dict()


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def is_temporal_file(path: str | Path) -> bool:
    """True for a .safetensors file written by :func:`save` for a temporal model."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            return meta.get("remaster_arch") == ARCH or any(k.startswith("temporal.") for k in f.keys())
    except Exception:
        return False


def save(model: nn.Module, path: str | Path, extra: Optional[dict] = None) -> Path:
    """Write ``model`` as .safetensors (temp name, then rename). A :class:`FrameWise` model is
    written as a plain Compact file."""
    from safetensors.torch import save_file

    path = Path(path)
    sd = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {k: str(v) for k, v in (extra or {}).items()}
    if isinstance(model, TemporalCompact):
        meta.update(remaster_arch=ARCH, fuse_at=str(model.fuse_at))
    tmp = path.with_name(path.name + ".part")
    save_file(sd, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load(path: str | Path) -> nn.Module:
    """A :class:`TemporalCompact` from a file written by :func:`save`."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    sd = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    fuse_at = int(meta["fuse_at"]) if "fuse_at" in meta else None
    model = TemporalCompact(compact_from_state_dict(sd), fuse_at)
    model.load_state_dict(sd)
    return model.eval()
