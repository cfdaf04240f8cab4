"""Super-resolution on the frame stream (Real-ESRGAN and every other spandrel SR model).

* Models come from ComfyUI's ``upscale_models`` folder through the registry (safe loading) and
  are built by spandrel, the library ComfyUI core uses, so any model a user already has works.
* Frames are cut into tiles that overlap; each tile's outer margin (where the model saw zero
  padding instead of image) gets no weight and the rest of the overlap is cross-faded linearly,
  so the tiled result has no seams. The tile size comes from free memory, several frames share
  one forward pass, and an out-of-memory error halves the batch, then the tile, and retries.
* Precision: fp16 on CUDA; on a CPU "auto" measures, once per model and process, bf16 +
  channels_last (only where the CPU has native bf16), fp32 channels_last and fp32 NCHW, and
  the tile size, and keeps the fastest (:func:`autotune_cpu`).
* Any output size: the model's native scale is resized to the requested scale or height with an
  antialiased bicubic filter (a proper low-pass when shrinking, e.g. x4 model -> x2 output).
* Two-model blend with an opacity, and Real-ESRGAN's denoise-strength control for
  realesr-general-x4v3: its weights are interpolated with the companion realesr-general-wdn-x4v3
  (deep network interpolation, as the official inference script does).

The stage and model loading are here; the tiled runner is :mod:`.tiles`, precision and the CPU
measurement :mod:`.precision`, and a temporal restorer trained by the pack (a file in the same
folder) runs through :mod:`.temporal`.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from ... import host
from ...models import registry
from ...stream import Chunk, FrameStream
from ...models.cache import MODELS, file_key
from ...models.precision import PRECISIONS  # noqa: F401  (the node's choices)
from . import temporal
from .precision import UpscaleError, autotune_cpu, pick_precision  # noqa: F401
from .tiles import Plan, Upscaler, resize, tile_starts, upscale_tiled  # noqa: F401

FOLDER = "upscale_models"
GENERAL_V3 = "realesr-general-x4v3"
GENERAL_WDN = "realesr-general-wdn-x4v3"


# ---------------------------------------------------------------------------------------------
# model loading
# ---------------------------------------------------------------------------------------------


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
    key = (file_key(path), file_key(wdn_path) if wdn_path else None, round(strength, 4))
    return MODELS.get("upscale", key, lambda: _load_blend(path, wdn_path, strength), keep=3)


def _load_blend(path: Path, wdn_path: Optional[Path], strength: float):
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
    return _spandrel_load(sd, f"model '{Path(path).name}'")


def output_size(height: int, width: int, scale: float = 0.0, target_height: int = 0,
                native: int = 4) -> tuple[int, int]:
    """(H, W) of the output: ``target_height`` exactly (width keeps the aspect ratio) when set,
    else ``scale`` x the input (``scale`` 0 = the model's native scale)."""
    if target_height and target_height > 0:
        return int(target_height), max(1, round(width * target_height / height))
    s = float(scale) if scale and scale > 0 else float(native)
    return max(1, round(height * s)), max(1, round(width * s))


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
    if temporal.is_temporal_model(model):  # a temporal restorer trained by the pack: its own loader
        native = temporal.load(model).scale
        size = output_size(stream.info.height, stream.info.width, scale, target_height, native)
        return temporal.restore(stream, model, size, precision)
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
