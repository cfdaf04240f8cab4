"""Film look and finishing: a motion-guarded temporal median for residual flicker and noise,
an overlay of the original footage at low opacity, and luminance-dependent film grain.

Order inside the stage: temporal median → overlay of the original → grain (grain last, so it is
never smoothed away).

* Grain is Gaussian noise generated at ``1/size`` of the frame resolution and upscaled, so
  ``size`` sets the grain's size in pixels; its strength follows the pixel's luma (strongest in
  the mid-tones, weaker in deep shadows and clipped highlights, as on film). The noise of frame
  ``i`` comes from a generator seeded with ``(seed, i)``: the same frame always gets the same
  grain, whatever the chunking or device.
* The temporal median takes, per pixel, the median of the frames ``i-r..i+r`` of the same shot,
  but only where it differs from the current frame by less than ``motion_threshold`` (larger
  differences are motion and stay untouched). The window is ``2r+1`` frames.
* The overlay mixes the original (a second stream, resized to this one if needed) over the
  result at ``opacity``: a touch of the real texture back over a heavily restored picture.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from .. import host
from ..stream import Chunk, FrameStream, Temporal, rebatch, source_span
from ..temporal import iter_windows
from ..analysis import scenes
from ..analysis.filmstock import grain
from ..analysis.checks import within



class FilmError(ValueError):
    pass


def _median(window: list, centre: torch.Tensor, threshold: float) -> torch.Tensor:
    if len(window) < 3:
        return centre
    med = torch.stack(window).median(0).values
    if threshold >= 1.0:
        return med
    # per pixel: take the median only where it is close to the current frame (no motion)
    close = ((med - centre).abs().amax(-1, keepdim=True) < threshold).to(centre.dtype)
    return centre + (med - centre) * close


def film_look(stream: FrameStream, grain_amount: float = 0.03, grain_size: float = 1.5, grain_colour: float = 0.0,
              seed: int = 0, median_radius: int = 0, motion_threshold: float = 0.04, original: Optional[FrameStream] = None,
              original_opacity: float = 0.0) -> FrameStream:
    """A new stream with the film look applied (see the module docstring)."""
    within(FilmError, "grain_amount", grain_amount, 0, 0.5)
    within(FilmError, "grain_size", grain_size, 0.5, 8, " pixels")
    within(FilmError, "grain_colour", grain_colour, 0, 1)
    within(FilmError, "median_radius", median_radius, 0, 3, " frames")
    within(FilmError, "original_opacity", original_opacity, 0, 1)
    if original_opacity > 0 and original is None:
        raise FilmError("original_opacity is above 0 but no original stream is connected: connect the "
                        "original footage to the 'original' input or set the opacity to 0")
    use_original = original is not None and original_opacity > 0
    if use_original and original.info.frame_count != stream.info.frame_count:
        raise FilmError(
            f"the original has {original.info.frame_count} frames but the graded stream has "
            f"{stream.info.frame_count}: connect the same clip (same trim and every_nth) as the original"
        )
    r = int(median_radius)

    def frames_of(upstream: FrameStream, chunk_size: int) -> Iterator[tuple]:
        for ch in upstream.chunks(chunk_size):
            for i in range(len(ch)):
                yield ch.start + i, ch.frames[i], None if ch.mask is None else ch.mask[i]

    def medianed(upstream: FrameStream, chunk_size: int) -> Iterator[tuple]:
        """(index, frame, mask) after the temporal median (a window of 2r+1 frames, cut-aware)."""
        if r == 0:
            yield from frames_of(upstream, chunk_size)
            return
        for idx, window, masks, c in iter_windows(upstream, chunk_size, r, scenes.LazyCuts(upstream)):
            yield idx, _median(window, window[c], motion_threshold), None if masks is None else masks[c]

    def producer(upstream: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        device = host.torch_device()
        h, w = upstream.info.height, upstream.info.width
        orig_iter = rebatch(original.chunks(chunk_size, *source_span(upstream)), 1) if use_original else None

        def flush(items):
            start = items[0][0]
            x = torch.stack([it[1] for it in items]).to(device, torch.float32)
            masks = [it[2] for it in items]
            if use_original:
                o = torch.cat([next(orig_iter).frames for _ in items]).to(device, torch.float32)
                if o.shape[1:3] != (h, w):
                    o = F.interpolate(o.permute(0, 3, 1, 2), size=(h, w), mode="bicubic",
                                      align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)
                x = x + (o - x) * original_opacity
            x = grain(x, start, grain_amount, grain_size, grain_colour, seed)
            mask = torch.stack(masks) if masks[0] is not None else None
            return Chunk(start, x.cpu(), mask)

        items: list = []
        for item in medianed(upstream, chunk_size):
            items.append(item)
            if len(items) == chunk_size:
                host.check_interrupt()
                yield flush(items)
                items = []
        if items:
            yield flush(items)

    params = dict(grain_amount=float(grain_amount), grain_size=float(grain_size), grain_colour=float(grain_colour),
                  seed=int(seed), median_radius=r, motion_threshold=float(motion_threshold),
                  original=original.fingerprint if use_original else None,
                  original_opacity=float(original_opacity) if use_original else 0.0)
    # one pass: a window of 2r+1 frames (cut-aware) held while streaming; grain is seeded per frame
    return stream.derive("film_look", params, producer, temporal=Temporal(behind=r, ahead=r, cut_aware=r > 0))
