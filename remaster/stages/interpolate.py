"""Frame interpolation (RIFE) on the frame stream: more frames per second, same duration.

Timing convention (what keeps audio in sync):

* Input frame ``i`` is shown at ``i / fps_in`` for ``1 / fps_in`` seconds, so an ``N``-frame input
  lasts ``N / fps_in``. The output has ``M = round(N * fps_out / fps_in)`` frames (half rounds up),
  so it lasts the same (exactly for ×2/×3/×4, within half an output frame otherwise). Audio is
  untouched.
* Output frame ``j`` shows source position ``p = j * fps_in / fps_out`` (in input-frame units).
  An integer ``p`` is the source frame itself, bit for bit; otherwise the frame is interpolated
  at ``t = p - floor(p)`` between the two source frames around it.
* The last frame: positions after the last input frame (the second half of its display time at
  ×2, for instance) hold the last input frame; nothing is extrapolated.
* Scene cuts (``remaster.stages.scenes``): between the last frame of a shot and the first frame
  of the next, nothing is interpolated. ``cut_mode="repeat"`` holds the last frame of the old shot
  until the cut time (the cut lands exactly where it was); ``"blend"`` cross-fades instead.
* Duplicate removal (optional): a frame that (almost) repeats the previous kept frame is
  dropped, and its time slot is filled by interpolating between the kept frames around it, at
  their original times. At most ``dedup_max_run`` frames in a row are dropped, so a real still
  shot stays still.

State across chunks: the previous kept frame (padded, on the device) and its encoder features
are carried from one upstream chunk to the next, so a chunk border is invisible. The stage holds
two source frames plus one output chunk.
"""
from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from .. import host
from ..stream import Chunk, FrameStream
from . import scenes

log = logging.getLogger("remaster.interpolate")

__all__ = ["interpolate", "output_fps", "output_count", "source_positions", "parse_fps"]

CUT_MODES = ("repeat", "blend")
DEFAULT_MODEL = "rife425.pth"


def parse_fps(value) -> Fraction:
    """An exact frame rate from a number or string; 23.976/29.97/59.94/119.88 become n*1000/1001."""
    if isinstance(value, Fraction):
        out = value
    elif isinstance(value, str) and "/" in value:
        out = Fraction(value.strip())
    else:
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"target_fps must be a positive number, got {value!r}")
        ntsc = round(f * 1.001)
        if abs(f - round(f)) > 0.005 and abs(f - ntsc / 1.001) < 0.005:
            out = Fraction(ntsc * 1000, 1001)
        else:
            out = Fraction(f).limit_denominator(1001)
    if out <= 0:
        raise ValueError(f"target_fps must be a positive number, got {value!r}")
    return out


def output_fps(fps_in: Fraction, mode: str, multiplier: int = 2, target_fps=60) -> Fraction:
    if mode == "multiply":
        if int(multiplier) < 1:
            raise ValueError(f"multiplier must be 1 or more, got {multiplier}")
        return Fraction(fps_in) * int(multiplier)
    if mode in ("fps", "target_fps", "target fps"):
        out = parse_fps(target_fps)
        if out < Fraction(fps_in):
            raise ValueError(
                f"target_fps {float(out):g} is below the source's {float(fps_in):g} fps; interpolation only "
                "adds frames. Lower the rate with Load Video's force_fps instead."
            )
        return out
    raise ValueError(f"mode must be 'multiply' or 'fps', got '{mode}'")


def output_count(n_in: int, fps_in: Fraction, fps_out: Fraction) -> int:
    """Frames out for ``n_in`` frames in: ``round(n_in * fps_out / fps_in)``, half up."""
    x = Fraction(n_in) * Fraction(fps_out) / Fraction(fps_in)
    return int(math.floor(x + Fraction(1, 2)))


def source_positions(m_out: int, fps_in: Fraction, fps_out: Fraction) -> Iterator[Fraction]:
    r = Fraction(fps_in) / Fraction(fps_out)
    for j in range(m_out):
        yield j * r


def _thumb(frame: torch.Tensor) -> torch.Tensor:
    """A grey thumbnail (about 256 px on the long side) of a ``[H,W,3]`` frame."""
    g = frame.float().mean(-1)[None, None]
    f = max(1, max(g.shape[-2:]) // 256)
    return F.avg_pool2d(g, f, f, ceil_mode=True)[0, 0] if f > 1 else g[0, 0]


def frame_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    """How different two thumbnails are: the 99th percentile of the absolute difference. Codec
    noise on a repeated frame stays below ~0.01; a small moving object already lifts it above
    0.03 (a mean would drown it in the static background)."""
    d = (a - b).abs().flatten()
    return float(torch.quantile(d, 0.99)) if d.numel() > 1 else float(d.sum())


def _resolve_scale(scale, width: int, height: int) -> float:
    if scale in (None, "auto"):
        side = max(width, height)
        return 0.25 if side > 5000 else 0.5 if side > 2600 else 1.0
    s = float(scale)
    if s not in (0.25, 0.5, 1.0, 2.0):
        raise ValueError(f"scale must be auto, 0.25, 0.5, 1.0 or 2.0, got {scale!r}")
    return s


class _Key:
    """A kept source frame: its index, the CPU frame and mask, the padded device tensor, features."""

    __slots__ = ("index", "frame", "mask", "x", "feat")

    def __init__(self, index, frame, mask, x, feat):
        self.index, self.frame, self.mask, self.x, self.feat = index, frame, mask, x, feat


def interpolate(
    stream: FrameStream,
    model: str = DEFAULT_MODEL,
    mode: str = "multiply",
    multiplier: int = 2,
    target_fps=60,
    cut_mode: str = "repeat",
    detect_cuts: bool = True,
    remove_duplicates: bool = False,
    dedup_threshold: float = 0.015,
    dedup_max_run: int = 3,
    scale="auto",
    precision: str = "auto",
    max_batch: int = 4,
    download_missing: bool = False,
) -> FrameStream:
    """A stream with more frames per second (RIFE), same duration and audio.

    ``mode``: "multiply" (``multiplier`` ×2, ×3, ×4...) or "fps" (reach ``target_fps``, e.g.
    24 → 60). ``cut_mode``: "repeat" or "blend" at scene cuts (cuts attached to the stream, else
    detected when ``detect_cuts``). ``remove_duplicates``: drop repeated frames first
    (:func:`frame_difference` of grey thumbnails at most ``dedup_threshold``, 0..1) and interpolate
    their slots. ``scale``: "auto" (0.5 above 2.6K, 0.25 above 5K) or 0.25/0.5/1.0/2.0; lower is faster
    and copes with larger motion, higher catches finer motion. ``precision``: auto/fp32/fp16/bf16.
    ``download_missing``: fetch a missing registry model (models.json URLs) when the pass starts.
    """
    info = stream.info
    if cut_mode not in CUT_MODES:
        raise ValueError(f"cut_mode must be one of {CUT_MODES}, got '{cut_mode}'")
    if not info.fps:
        raise ValueError("the input stream has no frame rate; load it with Load Video (force_fps if needed)")
    fps_in = Fraction(info.fps)
    fps_out = output_fps(fps_in, mode, multiplier, target_fps)
    n_in = int(info.frame_count)
    m_out = output_count(n_in, fps_in, fps_out)
    scale_f = _resolve_scale(scale, info.width, info.height)
    if dedup_threshold < 0:
        raise ValueError("dedup_threshold must be 0 or more")
    dedup_max_run = max(1, int(dedup_max_run))
    ratio = fps_out / fps_in
    if ratio == 1 and not remove_duplicates:
        return stream  # nothing to add: the same frames at the same rate

    def cuts_for(upstream: FrameStream) -> list:
        if upstream.info.scene_cuts is not None:
            return sorted(int(c) for c in upstream.info.scene_cuts)
        return scenes.scene_cuts(upstream) if detect_cuts else []

    out_cuts = None
    if info.scene_cuts is not None:
        out_cuts = tuple(sorted({int(math.ceil(c * ratio)) for c in info.scene_cuts if 0 < c < n_in}))

    params = {
        "model": str(model),
        "fps_out": str(fps_out),
        "cut_mode": cut_mode,
        "detect_cuts": bool(detect_cuts),
        "remove_duplicates": bool(remove_duplicates),
        "dedup_threshold": float(dedup_threshold),
        "dedup_max_run": dedup_max_run,
        "scale": scale_f,
        "precision": precision,
    }
    new_info = info.with_(fps=fps_out, frame_count=m_out, scene_cuts=out_cuts)

    def producer(upstream: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        if m_out == 0:
            return
        from ..models.rife import load_rife

        net = load_rife(model, precision=precision, download_missing=download_missing)
        dev = net.device
        cuts = set(cuts_for(upstream))  # also at x1: dropped repeats before a cut must not bridge it
        progress = host.Progress(m_out, "Interpolate (RIFE)")
        h, w = info.height, info.width

        def make_key(index, frame, mask) -> _Key:
            x = frame.permute(2, 0, 1)[None].to(dev, torch.float32).contiguous()
            x = net.pad(x, scale_f)
            return _Key(index, frame, mask, x, net.features(x))

        out_frames: list = []
        out_masks: list = []
        state = {"j": 0, "start": 0}
        positions = source_positions(m_out, fps_in, fps_out)
        pending = [next(positions)]  # the next output position not yet emitted

        def emit(frame: torch.Tensor, mask) -> Iterator[Chunk]:
            out_frames.append(frame)
            out_masks.append(mask)
            state["j"] += 1
            progress.update(1)
            pending[0] = next(positions, None)
            if len(out_frames) >= chunk_size:
                yield flush()

        def flush() -> Chunk:
            frames = torch.stack(out_frames)
            masks = torch.stack(out_masks) if out_masks and out_masks[0] is not None else None
            ch = Chunk(state["start"], frames, masks)
            state["start"] += len(out_frames)
            out_frames.clear()
            out_masks.clear()
            return ch

        def span(a: _Key, b: Optional[_Key]) -> Iterator[Chunk]:
            """Emit every output frame whose position lies in [a.index, b.index) (b None: to the end)."""
            stop = Fraction(n_in) if b is None else Fraction(b.index)
            across_cut = b is not None and any(a.index < c <= b.index for c in cuts)
            ts: list = []
            while pending[0] is not None and pending[0] < stop:
                p = pending[0]
                t = Fraction(0) if b is None else (p - a.index) / (stop - a.index)
                if t == 0 or across_cut:
                    yield from run_batch(a, b, ts)
                    ts = []
                    if t == 0 or cut_mode == "repeat":
                        yield from emit(a.frame, a.mask)
                    else:
                        tf = float(t)
                        yield from emit(a.frame * (1 - tf) + b.frame * tf, _pick_mask(a, b, tf))
                    continue
                ts.append(float(t))
                pending[0] = next(positions, None)  # consumed by the batch
                if len(ts) >= max_batch:
                    yield from run_batch(a, b, ts)
                    ts = []
            yield from run_batch(a, b, ts)

        def run_batch(a: _Key, b: Optional[_Key], ts: list) -> Iterator[Chunk]:
            """Interpolate the frames at timesteps ``ts`` between ``a`` and ``b`` and emit them."""
            if not ts:
                return
            host.check_interrupt()
            try:
                y = net.interpolate(a.x, b.x, ts, scale_f, a.feat, b.feat)
            except Exception as exc:  # pragma: no cover - depends on the device
                if host.is_oom(exc):
                    host.empty_cache()
                    raise RuntimeError(
                        f"out of memory interpolating {w}x{h} frames on {dev}; set scale to 0.5 (or 0.25) "
                        "or lower the resolution before this node"
                    ) from exc
                raise
            y = y[:, :, :h, :w].permute(0, 2, 3, 1).float().cpu()
            for k, tf in enumerate(ts):
                out_frames.append(y[k].contiguous())
                out_masks.append(_pick_mask(a, b, tf))
                state["j"] += 1
                progress.update(1)
                if len(out_frames) >= chunk_size:
                    yield flush()

        prev: Optional[_Key] = None
        prev_thumb = None
        run = 0
        try:
            for chunk in upstream.chunks(chunk_size):
                for k in range(len(chunk)):
                    idx = chunk.start + k
                    frame = chunk.frames[k]
                    mask = None if chunk.mask is None else chunk.mask[k]
                    th = _thumb(frame) if remove_duplicates else None
                    if prev is not None and th is not None and idx not in cuts and run < dedup_max_run:
                        if frame_difference(th, prev_thumb) <= dedup_threshold:
                            run += 1
                            continue
                    key = make_key(idx, frame, mask)
                    if prev is not None:
                        yield from span(prev, key)
                    prev = key
                    prev_thumb = th
                    run = 0
            if prev is not None:
                yield from span(prev, None)
            if out_frames:
                yield flush()
        finally:
            progress.close()
            prev = None
            if dev.type == "cuda":  # the device copy of the model goes with this pass
                del net
                host.empty_cache()
        if state["j"] != m_out:
            raise RuntimeError(
                f"interpolation produced {state['j']} frames, expected {m_out}: the upstream stream "
                f"delivered a different frame count than its metadata ({n_in})"
            )

    out = stream.derive("interpolate", params, producer, new_info)
    if out_cuts is None:
        # the cuts of the output follow from the input's (found once, on the cheapest point)
        out.cut_provider = lambda: sorted({int(math.ceil(c * ratio)) for c in cuts_for(stream) if 0 < c < n_in})
    return out


def _pick_mask(a: _Key, b: Optional[_Key], t: float):
    """Mask of an in-between frame: the nearer source frame's mask (None when no masks)."""
    if a.mask is None:
        return None
    return a.mask if (b is None or t < 0.5 or b.mask is None) else b.mask
