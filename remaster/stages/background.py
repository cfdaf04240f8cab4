"""Background replacement: composite the stream's foreground (mask = alpha) over a new background.

Backgrounds: a solid colour, a blurred and/or darkened copy of the frame itself, a still image, or
another frame stream (looped or held on its last frame when shorter, trimmed when longer), fitted
to the frame by ``cover`` (fill, crop the overflow) or ``contain`` (fit inside, pad with black) or
``stretch``.

Edge treatment, all off where alpha is exactly 1 so an opaque foreground passes through untouched:

* ``decontaminate``: re-estimates the foreground colour in semi-transparent pixels by removing the
  old background's contribution (old background estimated from nearby mostly-background pixels);
* ``light_wrap``: lets the blurred new background bleed a little over the foreground's edge;
* ``match_color``: shifts the foreground's colour balance toward the new background's (smoothed
  over time, so it does not flicker).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..stream import FRAMEWISE, Chunk, FrameStream, rebatch
from .mask_tools import require_mask, gaussian_blur

FITS = ("cover", "contain", "stretch")
SOURCES = ("color", "blur", "image", "stream")


def parse_color(text: str) -> tuple[float, float, float]:
    """``#RRGGBB``, ``RRGGBB`` or ``r,g,b`` (0..255) -> floats 0..1."""
    s = str(text).strip()
    try:
        if "," in s:
            parts = [float(p) for p in s.split(",")]
            if len(parts) != 3:
                raise ValueError
            return tuple(min(255.0, max(0.0, p)) / 255.0 for p in parts)  # type: ignore[return-value]
        s = s.lstrip("#")
        if len(s) == 3:
            s = "".join(c * 2 for c in s)
        if len(s) != 6:
            raise ValueError
        return tuple(int(s[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
    except ValueError:
        raise ValueError(f"colour '{text}' is not understood: use #RRGGBB (e.g. #1E90FF) or r,g,b (0..255)") from None


def fit(img: torch.Tensor, height: int, width: int, mode: str = "cover") -> torch.Tensor:
    """Resize ``[n,h,w,3]`` to ``height x width`` by cover / contain / stretch."""
    if mode not in FITS:
        raise ValueError(f"unknown fit '{mode}'; choose one of {', '.join(FITS)}")
    n, h, w, _ = img.shape
    x = img.permute(0, 3, 1, 2)
    if mode == "stretch" or (h, w) == (height, width):
        if (h, w) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
        return x.permute(0, 2, 3, 1).clamp(0, 1)
    scale = max(height / h, width / w) if mode == "cover" else min(height / h, width / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    if mode == "cover":
        top, left = (nh - height) // 2, (nw - width) // 2
        x = x[:, :, top : top + height, left : left + width]
    else:
        out = torch.zeros(n, 3, height, width, dtype=x.dtype)
        top, left = (height - nh) // 2, (width - nw) // 2
        out[:, :, top : top + nh, left : left + nw] = x
        x = out
    return x.permute(0, 2, 3, 1).clamp(0, 1)


def load_image(path: str | Path) -> torch.Tensor:
    """An image file as ``[1,h,w,3]`` float RGB."""
    import cv2

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"background image '{path}' not found; put it in ComfyUI's input folder or give a full path")
    arr = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ValueError(f"background image '{path}' could not be read (not an image OpenCV knows)")
    if arr.ndim == 2:
        arr = cv2.cvtColor(arr, cv2.COLOR_GRAY2BGR)
    if arr.shape[2] == 4:
        arr = arr[:, :, :3]
    scale = 65535.0 if arr.dtype == np.uint16 else 255.0
    rgb = np.ascontiguousarray(arr[:, :, ::-1]).astype(np.float32) / scale
    return torch.from_numpy(rgb).unsqueeze(0)


# ---------------------------------------------------------------------------------------------
# compositing
# ---------------------------------------------------------------------------------------------
def decontaminate(frames: torch.Tensor, alpha: torch.Tensor, radius: float = 8.0) -> torch.Tensor:
    """Estimate the pure foreground colour where 0 < alpha < 1.

    ``I = a F + (1-a) B``: the old background ``B`` is estimated from nearby pixels that are
    almost pure background (weight ``(1-a)^4``), then ``F = (I - (1-a) B) / a``. Where no such
    pixel is near, or alpha is 1, the pixel is left as it is.
    """
    x = frames.permute(0, 3, 1, 2)
    a = alpha.unsqueeze(1)
    inv = 1.0 - a
    wgt = inv**4
    sigma = max(1.0, radius / 2)
    wsum = gaussian_blur(wgt, sigma)
    b_est = gaussian_blur(x * wgt, sigma) / wsum.clamp_min(1e-6)
    f = ((x - inv * b_est) / a.clamp_min(0.05)).clamp(0, 1)
    keep = (a >= 1.0) | (wsum < 1e-3)
    f = torch.where(keep, x, f)
    return f.permute(0, 2, 3, 1)


def light_wrap(comp: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor, strength: float, radius: float) -> torch.Tensor:
    """Blend the blurred new background over the foreground just inside its edge."""
    if strength <= 0:
        return comp
    a = alpha.unsqueeze(1)
    blur_a = gaussian_blur(a, max(1.0, radius / 2))
    w = (strength * a * (1.0 - blur_a)).clamp(0, 1)
    w = torch.where(w < 1e-4, torch.zeros_like(w), w)
    bg_blur = gaussian_blur(bg.permute(0, 3, 1, 2), max(1.0, radius / 2))
    c = comp.permute(0, 3, 1, 2)
    return (c + w * (bg_blur - c)).permute(0, 2, 3, 1)


def composite(fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    a = alpha.unsqueeze(-1)
    return fg * a + bg * (1.0 - a)


class ColorMatcher:
    """Per-channel gains that move the foreground's colour balance toward the background's,
    keeping its brightness; gains are smoothed over time."""

    def __init__(self, strength: float, smoothing: float = 0.9) -> None:
        self.strength = float(strength)
        self.smoothing = smoothing
        self.gains: Optional[torch.Tensor] = None

    def __call__(self, fg: torch.Tensor, bg: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        if self.strength <= 0:
            return fg
        out = torch.empty_like(fg)
        lum_w = torch.tensor([0.2126, 0.7152, 0.0722])
        for i in range(fg.shape[0]):
            a = alpha[i].unsqueeze(-1)
            wsum = a.sum().clamp_min(1.0)
            fg_mean = (fg[i] * a).sum((0, 1)) / wsum
            bg_mean = (bg[i] * (1 - a)).sum((0, 1)) / (1 - a).sum().clamp_min(1.0)
            if float((1 - a).sum()) < 1.0:
                bg_mean = bg[i].mean((0, 1))
            fg_bal = fg_mean / (fg_mean @ lum_w).clamp_min(1e-4)
            bg_bal = bg_mean / (bg_mean @ lum_w).clamp_min(1e-4)
            g = (bg_bal / fg_bal.clamp_min(1e-4)).clamp(0.5, 2.0) ** self.strength
            self.gains = g if self.gains is None else self.smoothing * self.gains + (1 - self.smoothing) * g
            out[i] = (fg[i] * self.gains).clamp(0, 1)
        return out


# ---------------------------------------------------------------------------------------------
# backgrounds as chunk sources
# ---------------------------------------------------------------------------------------------
def _bg_stream_chunks(bg: FrameStream, total: int, chunk_size: int, loop: bool, h: int, w: int,
                      fit_mode: str) -> Iterator[torch.Tensor]:
    """Background frames fitted to h x w, in chunks of exactly ``chunk_size`` (last shorter),
    ``total`` frames in all: looped (or holding the last frame) when ``bg`` is shorter."""
    if bg.info.frame_count <= 0:
        raise ValueError("the background stream has no frames")

    def frames() -> Iterator[torch.Tensor]:
        produced = 0
        last = None
        while produced < total:
            for ch in bg.chunks(chunk_size):
                f = fit(ch.frames, h, w, fit_mode)
                last = f[-1:]
                take = min(len(f), total - produced)
                yield f[:take]
                produced += take
                if produced >= total:
                    return
            if not loop:
                while produced < total:
                    n = min(chunk_size, total - produced)
                    yield last.expand(n, -1, -1, -1)
                    produced += n
                return

    buf, count = [], 0
    for f in frames():
        buf.append(f)
        count += len(f)
        while count >= chunk_size:
            cat = torch.cat(buf)
            yield cat[:chunk_size]
            rest = cat[chunk_size:]
            buf, count = ([rest] if len(rest) else []), len(rest)
    if count:
        yield torch.cat(buf)


def replace_background(
    stream: FrameStream,
    source: str = "color",
    color: str = "#00b140",
    blur: float = 24.0,
    darken: float = 0.0,
    image: Optional[str] = None,
    background: Optional[FrameStream] = None,
    fit_mode: str = "cover",
    loop: bool = True,
    decontaminate_edges: bool = True,
    wrap: float = 0.0,
    wrap_radius: float = 12.0,
    match_color: float = 0.0,
    keep_mask: bool = True,
) -> FrameStream:
    """Composite the stream over a new background using its mask as alpha."""
    require_mask(stream, "Replace background")
    if source not in SOURCES:
        raise ValueError(f"unknown background source '{source}'; choose one of {', '.join(SOURCES)}")
    if fit_mode not in FITS:
        raise ValueError(f"unknown fit '{fit_mode}'; choose one of {', '.join(FITS)}")
    if not 0 <= darken <= 1:
        raise ValueError(f"darken must be in 0..1, got {darken}")
    info = stream.info
    h, w = info.height, info.width
    rgb = parse_color(color) if source == "color" else None
    still = None
    if source == "image":
        if not image:
            raise ValueError("background source is 'image' but no image was given: choose an image file")
        still = fit(load_image(image), h, w, fit_mode)[0]
    if source == "stream" and background is None:
        raise ValueError("background source is 'stream' but no background frames are connected")
    params = {
        "source": source, "color": rgb, "blur": blur, "darken": darken,
        "image": str(image) if source == "image" else None,
        "background": background.fingerprint if source == "stream" and background is not None else None,
        "fit": fit_mode, "loop": loop, "decontaminate": decontaminate_edges, "wrap": wrap,
        "wrap_radius": wrap_radius, "match_color": match_color, "keep_mask": keep_mask,
    }

    def producer(up: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        matcher = ColorMatcher(match_color)
        bg_iter = None
        if source == "stream":
            bg_iter = _bg_stream_chunks(background, up.info.frame_count, chunk_size, loop, h, w, fit_mode)
        for chunk in rebatch(up.chunks(chunk_size), chunk_size):
            frames, alpha = chunk.frames, chunk.mask.float().clamp(0, 1)
            n = len(chunk)
            if source == "color":
                bg = torch.tensor(rgb, dtype=frames.dtype).view(1, 1, 1, 3).expand(n, h, w, 3)
            elif source == "blur":
                bg = gaussian_blur(frames.permute(0, 3, 1, 2), blur).permute(0, 2, 3, 1) if blur > 0 else frames
                bg = bg * (1.0 - darken)
            elif source == "image":
                bg = still.unsqueeze(0).expand(n, -1, -1, -1)
            else:
                bg = next(bg_iter)
                if len(bg) != n:  # defensive: both are cut to chunk_size
                    raise RuntimeError("background stream chunks out of step with the foreground")
            fg = decontaminate(frames, alpha) if decontaminate_edges else frames
            fg = matcher(fg, bg, alpha)
            out = composite(fg, bg, alpha)
            out = light_wrap(out, bg, alpha, wrap, wrap_radius)
            yield Chunk(chunk.start, out.clamp(0, 1).contiguous(), chunk.mask if keep_mask else None)

    # frame-wise unless a background stream (played from its start) or colour matching (smoothed
    # over time) is used: those render ranges from frame 0, exactly
    framewise = source != "stream" and not match_color
    return stream.derive("background", params, producer, info.with_(has_mask=keep_mask),
                         temporal=FRAMEWISE if framewise else None)
