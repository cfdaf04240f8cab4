"""Super-resolution on the frame stream (Real-ESRGAN and every other spandrel SR model).

* Models come from ComfyUI's ``upscale_models`` folder through the registry (safe loading) and
  are built by spandrel, the library ComfyUI core uses, so any model a user already has works.
* Frames are cut into tiles that overlap; each tile's outer margin (where the model saw zero
  padding instead of image) gets no weight and the rest of the overlap is cross-faded linearly,
  so the tiled result has no seams. The tile size comes from free memory, several frames share
  one forward pass, and an out-of-memory error halves the batch, then the tile, and retries.
* Precision: fp16 on CUDA, bf16 + channels_last on CPUs with AMX / AVX-512-BF16, else fp32.
* Any output size: the model's native scale is resized to the requested scale or height with an
  antialiased bicubic filter (a proper low-pass when shrinking, e.g. x4 model -> x2 output).
* Two-model blend with an opacity, and Real-ESRGAN's denoise-strength control for
  realesr-general-x4v3: its weights are interpolated with the companion realesr-general-wdn-x4v3
  (deep network interpolation, as the official inference script does).
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from .. import host
from ..models import registry
from ..stream import Chunk, FrameStream

log = logging.getLogger("remaster.upscale")

FOLDER = "upscale_models"
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
GENERAL_V3 = "realesr-general-x4v3"
GENERAL_WDN = "realesr-general-wdn-x4v3"


class UpscaleError(ValueError):
    """Bad settings or an unusable model file (the message names the input and the fix)."""


# ---------------------------------------------------------------------------------------------
# model loading
# ---------------------------------------------------------------------------------------------
_model_cache: dict = {}


def _stat_key(path: Path) -> tuple:
    st = path.stat()
    return (str(path), st.st_size, st.st_mtime_ns)


def _spandrel_load(sd: dict, what: str):
    from spandrel import ImageModelDescriptor, ModelLoader

    try:
        desc = ModelLoader().load_from_state_dict(sd)
    except Exception as exc:
        raise UpscaleError(
            f"{what}: spandrel does not recognise this file as an image model ({exc}). "
            "Pick a super-resolution model such as RealESRGAN_x4plus.pth."
        ) from exc
    if not isinstance(desc, ImageModelDescriptor):
        raise UpscaleError(f"{what}: this is not a single-image model; pick a super-resolution model")
    return desc.eval()


def load_model(name: str, denoise_strength: float = 1.0):
    """A spandrel :class:`ImageModelDescriptor` for ``name`` (file in ``upscale_models`` or id).

    ``denoise_strength`` < 1 only applies to realesr-general-x4v3: its weights are blended with
    realesr-general-wdn-x4v3 (``strength * general + (1 - strength) * wdn``)."""
    path = registry.resolve(name, FOLDER)
    strength = float(denoise_strength)
    if not 0.0 <= strength <= 1.0:
        raise UpscaleError(f"denoise_strength must be between 0 and 1, got {strength}")
    is_general = Path(path).stem == GENERAL_V3
    if not is_general:
        strength = 1.0
    wdn_path = None
    if strength < 1.0:
        try:
            wdn_path = registry.resolve(GENERAL_WDN, FOLDER)
        except registry.ModelNotFound as exc:
            raise UpscaleError(
                f"denoise_strength below 1 needs the companion model {GENERAL_WDN}.pth next to "
                f"{GENERAL_V3}.pth ({exc}); or set denoise_strength to 1"
            ) from exc
    key = (_stat_key(path), _stat_key(wdn_path) if wdn_path else None, round(strength, 4))
    if key in _model_cache:
        return _model_cache[key]
    sd = registry.unwrap_state_dict(registry.load_state_dict(path))
    if wdn_path is not None:
        sd_w = registry.unwrap_state_dict(registry.load_state_dict(wdn_path))
        if sd.keys() != sd_w.keys() or any(sd[k].shape != sd_w[k].shape for k in sd):
            raise UpscaleError(f"{wdn_path.name} does not have the layout of {path.name}; cannot blend them")
        sd = {
            k: (strength * sd[k].float() + (1.0 - strength) * sd_w[k].float()) if sd[k].is_floating_point() else sd[k]
            for k in sd
        }
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    desc = _spandrel_load(sd, f"model '{Path(path).name}'")
    if len(_model_cache) >= 3:
        _model_cache.pop(next(iter(_model_cache)))
    _model_cache[key] = desc
    return desc


# ---------------------------------------------------------------------------------------------
# precision
# ---------------------------------------------------------------------------------------------
def pick_precision(device: torch.device, precision: str = "auto", desc=None) -> tuple[torch.dtype, bool]:
    """(dtype, channels_last) for ``precision`` on ``device``."""
    if precision not in PRECISIONS:
        raise UpscaleError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    half_ok = getattr(desc, "supports_half", True)
    bf16_ok = getattr(desc, "supports_bfloat16", True)
    if precision == "auto":
        if device.type == "cuda":
            precision = "fp16" if half_ok else ("bf16" if bf16_ok and torch.cuda.is_bf16_supported() else "fp32")
        elif device.type == "cpu":
            precision = "bf16" if bf16_ok and host.cpu_has_fast_bf16() else "fp32"
        else:
            precision = "fp32"
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    if dtype == torch.float16 and device.type == "cpu":
        raise UpscaleError("precision fp16 is for GPUs; on a CPU pick bf16 or fp32 (or auto)")
    channels_last = dtype != torch.float32 or device.type == "cuda"
    return dtype, channels_last


# ---------------------------------------------------------------------------------------------
# tiling
# ---------------------------------------------------------------------------------------------
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``min(tile, length)`` covering ``length`` with at least
    ``overlap`` shared pixels between neighbours, spread evenly."""
    if length <= tile:
        return [0]
    overlap = min(overlap, tile // 2)
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(n_out: int, before: int, after: int, margin_frac: float = 0.25) -> torch.Tensor:
    """1-D blend weights for one tile of ``n_out`` output pixels that shares ``before``/``after``
    output pixels with its neighbours. The outer quarter of an overlap gets weight 0 (the model
    saw padding there), the middle half cross-fades linearly; neighbours' weights sum to 1."""
    w = torch.ones(n_out)
    pos = torch.arange(n_out, dtype=torch.float32) + 0.5
    if before > 0:
        m = before * margin_frac
        w = torch.minimum(w, ((pos - m) / max(before - 2 * m, 1e-6)).clamp(0, 1))
    if after > 0:
        m = after * margin_frac
        rpos = n_out - pos
        w = torch.minimum(w, ((rpos - m) / max(after - 2 * m, 1e-6)).clamp(0, 1))
    return w


def upscale_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    overlap: int,
) -> torch.Tensor:
    """Run ``fn`` (``[n,3,h,w] -> [n,3,h*scale,w*scale]``) over ``x`` in overlapping tiles and
    blend them. ``x`` is on the compute device in the compute dtype; the result is float32 there."""
    n, c, H, W = x.shape
    ys, xs = tile_starts(H, tile, overlap), tile_starts(W, tile, overlap)
    th, tw = min(tile, H), min(tile, W)
    if len(ys) == 1 and len(xs) == 1:
        return fn(x).float()
    out = torch.zeros(n, c, H * scale, W * scale, device=x.device, dtype=torch.float32)

    def weights(starts: list[int], size: int, i: int) -> torch.Tensor:
        before = starts[i - 1] + size - starts[i] if i > 0 else 0
        after = starts[i] + size - starts[i + 1] if i + 1 < len(starts) else 0
        return _ramp(size * scale, before * scale, after * scale)

    for iy, y0 in enumerate(ys):
        wy = weights(ys, th, iy)
        for ix, x0 in enumerate(xs):
            wx = weights(xs, tw, ix)
            w2 = (wy[:, None] * wx[None, :]).to(x.device)
            y = fn(x[:, :, y0 : y0 + th, x0 : x0 + tw]).float()
            out[:, :, y0 * scale : (y0 + th) * scale, x0 * scale : (x0 + tw) * scale].add_(y * w2)
            host.check_interrupt()
    return out


def resize(frames: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``[n,c,h,w]`` float to ``height x width``: antialiased bicubic (a proper low-pass when
    shrinking), clamped to 0..1; untouched when the size already matches."""
    if frames.shape[-2:] == (height, width):
        return frames
    return F.interpolate(frames, size=(height, width), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)


def output_size(height: int, width: int, scale: float = 0.0, target_height: int = 0,
                native: int = 4) -> tuple[int, int]:
    """(H, W) of the output: ``target_height`` exactly (width keeps the aspect ratio) when set,
    else ``scale`` x the input (``scale`` 0 = the model's native scale)."""
    if target_height and target_height > 0:
        return int(target_height), max(1, round(width * target_height / height))
    s = float(scale) if scale and scale > 0 else float(native)
    return max(1, round(height * s)), max(1, round(width * s))


# ---------------------------------------------------------------------------------------------
# the runner: one model on one device, batch and tile size adapted to memory
# ---------------------------------------------------------------------------------------------
def _feat(desc) -> int:
    m = desc.model
    for attr in ("num_feat", "nf", "num_out_ch"):
        v = getattr(m, attr, None)
        if isinstance(v, int) and v > 3:
            return v
    return 64


@dataclass
class Plan:
    tile: int
    batch: int


class Upscaler:
    """One SR model ready on a device; ``__call__`` upscales ``[n,H,W,3]`` float32 CPU frames to
    the model's native scale (``[n,H*s,W*s,3]``, float32, CPU)."""

    MIN_TILE = 32

    def __init__(self, desc, device: Optional[torch.device] = None, precision: str = "auto",
                 tile: int = 0, overlap: int = 24, max_batch: int = 8) -> None:
        self.device = device or host.torch_device()
        self.dtype, self.channels_last = pick_precision(self.device, precision, desc)
        self.desc = desc
        self.scale = int(desc.scale)
        self.tile_request = int(tile)
        self.overlap = int(overlap)
        self.max_batch = max(1, int(max_batch))
        self._plan: Optional[Plan] = None
        self._ready = False

    def _prepare(self) -> None:
        if self._ready:
            return
        desc = self.desc
        host.make_room(self.device, sum(p.numel() * 2 for p in desc.model.parameters()))
        desc.to(self.device)
        desc.model.to(dtype=self.dtype)
        if self.channels_last:
            desc.model.to(memory_format=torch.channels_last)
        desc.model.eval()
        self._ready = True

    def bytes_per_pixel(self) -> int:
        """Rough peak bytes per input pixel of one frame in a forward pass (activations of the
        widest layers at input and output resolution, plus the float32 accumulator)."""
        elem = torch.finfo(self.dtype).bits // 8
        f = _feat(self.desc)
        act = f * max(8, 3 * self.scale * self.scale) * elem
        return act + 2 * 3 * self.scale * self.scale * 4

    def plan(self, n: int, H: int, W: int) -> Plan:
        if self._plan is not None:
            return Plan(min(self._plan.tile, max(H, W)), min(self._plan.batch, n))
        if self.device.type == "cuda":
            budget = int(host.free_memory(self.device) * 0.6)
        else:  # CPU: memory is rarely short, but a huge working set thrashes the caches
            budget = min(int(host.free_memory(self.device) * 0.25), 2 * 2**30)
        bpp = self.bytes_per_pixel()
        if self.tile_request > 0:
            tile = self.tile_request
        else:
            side = int(math.sqrt(max(1, budget // bpp)))
            # CPU: tiles whose activations stay cache-sized win despite more overlap (measured on
            # an AVX-512-BF16 EPYC: 192 px tiles took 25% less CPU time than 512 px on 640x360)
            cap = 2048 if self.device.type == "cuda" else 192
            tile = max(self.MIN_TILE, min(side, cap))
        tile = min(tile, max(H, W))
        th, tw = min(tile, H), min(tile, W)
        # CPU: at most two frames a forward, so progress and interrupt come every few seconds
        max_batch = self.max_batch if self.device.type == "cuda" else min(self.max_batch, 2)
        batch = max(1, min(n, max_batch, budget // max(1, bpp * th * tw)))
        return Plan(tile, batch)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.desc(x)

    def __call__(self, frames: torch.Tensor, size: Optional[tuple[int, int]] = None,
                 on_batch: Optional[Callable[[int], None]] = None) -> torch.Tensor:
        """``frames`` ``[n,H,W,3]``; ``size`` (H, W) resizes the model output (on the device).
        ``on_batch(k)`` is called after each forward batch of ``k`` frames (progress, interrupt)."""
        n, H, W, _ = frames.shape
        oh, ow = size if size is not None else (H * self.scale, W * self.scale)
        # allocated outside inference mode so that later stages may modify the frames in place
        result = torch.empty(n, oh, ow, 3, dtype=torch.float32)
        with torch.inference_mode():
            self._run(frames, size, result, on_batch)
        return result

    def _run(self, frames: torch.Tensor, size: Optional[tuple[int, int]], result: torch.Tensor,
             on_batch: Optional[Callable[[int], None]] = None) -> None:
        self._prepare()
        n, H, W, _ = frames.shape
        i = 0
        plan = self.plan(n, H, W)
        while i < n:
            b = min(plan.batch, n - i)
            x = frames[i : i + b].to(self.device, non_blocking=True).permute(0, 3, 1, 2).to(self.dtype)
            try:
                y = upscale_tiled(self._forward, x, self.scale, plan.tile, self.overlap)
            except Exception as exc:
                if not host.is_oom(exc):
                    raise
                del x
                host.empty_cache()
                if plan.batch > 1:
                    plan = Plan(plan.tile, plan.batch // 2)
                elif plan.tile // 2 >= self.MIN_TILE:
                    plan = Plan(plan.tile // 2, 1)
                else:
                    raise
                log.warning("upscale: out of memory, retrying with tile %d, batch %d", plan.tile, plan.batch)
                self._plan = plan
                continue
            if size is not None:
                y = resize(y, *size)
            result[i : i + b].copy_(y.clamp_(0, 1).permute(0, 2, 3, 1))
            i += b
            if on_batch is not None:
                on_batch(b)


# ---------------------------------------------------------------------------------------------
# the stream stage
# ---------------------------------------------------------------------------------------------
def upscale_frames(frames: torch.Tensor, upscalers: list, weights: list, size: tuple[int, int],
                   on_batch: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Upscale with one or more models and blend their outputs (``weights`` sum to 1).
    ``on_batch(k)`` reports frames done by the last model (progress within a chunk)."""
    out = None
    active = [i for i, w in enumerate(weights) if w > 0]
    for i, (up, w) in enumerate(zip(upscalers, weights)):
        if w <= 0:
            continue
        y = up(frames, size, on_batch if i == active[-1] else None)
        if out is None:
            out = y if w == 1.0 else y.mul_(w)
        else:
            out.add_(y, alpha=w)
    return out


def upscale(
    stream: FrameStream,
    model: str,
    scale: float = 2.0,
    target_height: int = 0,
    precision: str = "auto",
    tile: int = 0,
    overlap: int = 24,
    denoise_strength: float = 1.0,
    model_b: str = "",
    blend: float = 0.0,
    max_batch: int = 8,
) -> FrameStream:
    """A new stream upscaled by ``model`` to ``scale`` x (0 = native) or to ``target_height``.

    ``model_b`` with ``blend`` in 0..1 mixes a second model's output in (0 = only ``model``).
    A mask travelling with the stream is resized with the frames."""
    if scale is None or scale < 0 or scale > 16:
        raise UpscaleError(f"scale must be between 0 (model's own) and 16, got {scale}")
    if target_height < 0 or target_height > 16384:
        raise UpscaleError(f"target_height must be 0 (use scale) or a height up to 16384, got {target_height}")
    if not 0.0 <= blend <= 1.0:
        raise UpscaleError(f"blend must be between 0 and 1, got {blend}")
    if overlap < 0:
        raise UpscaleError(f"overlap must be >= 0, got {overlap}")
    use_b = bool(model_b) and blend > 0
    if blend >= 1.0 and not model_b:
        raise UpscaleError("blend is 1 but no second model (model_b) was chosen")
    # load now so that a wrong file fails when the graph is built, not mid-video
    desc_a = load_model(model, denoise_strength)
    desc_b = load_model(model_b) if use_b else None
    info = stream.info
    out_h, out_w = output_size(info.height, info.width, scale, target_height, int(desc_a.scale))
    area = (out_h * out_w) / max(1, info.height * info.width)
    chunk = max(1, int(info.chunk_size / area)) if info.chunk_size else 0
    new_info = info.with_(width=out_w, height=out_h, chunk_size=chunk)
    params = {
        "model": os.path.basename(str(model)),
        "model_b": os.path.basename(str(model_b)) if use_b else "",
        "blend": float(blend) if use_b else 0.0,
        "denoise_strength": float(denoise_strength),
        "size": [out_h, out_w],
        "precision": precision,
        "tile": int(tile),
        "overlap": int(overlap),
    }
    device = host.torch_device()

    def make():
        ups = [Upscaler(desc_a, device, precision, tile, overlap, max_batch)]
        weights = [1.0 - (blend if use_b else 0.0)]
        if use_b:
            ups.append(Upscaler(desc_b, device, precision, tile, overlap, max_batch))
            weights.append(float(blend))
        progress = host.Progress(info.frame_count, "upscale")

        def fn(ch: Chunk) -> Chunk:
            # progress (and ComfyUI's interrupt) after every forward batch, not once per chunk: a
            # short clip is often one chunk
            frames = upscale_frames(ch.frames, ups, weights, (out_h, out_w), progress.update)
            mask = None
            if ch.mask is not None:
                mask = F.interpolate(ch.mask[:, None], size=(out_h, out_w), mode="bilinear",
                                     align_corners=False, antialias=True)[:, 0].clamp_(0, 1)
            return Chunk(ch.start, frames, mask)

        return fn

    return stream.map("upscale", params, make, new_info)
