"""Person mattes on the frame stream: RobustVideoMatting (recurrent), MODNet and BiRefNet (per frame).

All write a soft alpha (0..1, 1 = person) into the stream's ``mask`` and leave the frames as
they are. RVM carries its four ConvGRU states from chunk to chunk, so the matte is temporally
stable; the states are dropped at scene cuts (a new shot starts from a clean memory). MODNet
sees each frame on its own at a reference size whose sides are multiples of 32, whatever the
aspect ratio. BiRefNet sees each frame squeezed to a square (1024 px by default, as it was
trained) and its matte is steadied over time by a motion-gated running average
(:class:`AlphaStabiliser`), reset at scene cuts.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from .. import host
from ..models import registry
from ..stream import FRAMEWISE, Chunk, FrameStream, Temporal
from ..analysis import scenes
from ..models.cache import MODELS, file_key
from ..models.precision import pick_dtype

# frames of warm-up a range render gives RVM's recurrent memory (see docs/onepass.md for the error)
RVM_WARMUP = 48

log = logging.getLogger("remaster.matting")

def compute_dtype(device: torch.device) -> torch.dtype:
    return pick_dtype(device)


def _cached_model(kind: str, path: Path, device: torch.device, dtype: torch.dtype):
    key = (kind, file_key(path), str(device), dtype)
    return MODELS.get("matting", key, lambda: _load(kind, path, device, dtype))  # one resident at a time


def _load(kind: str, path: Path, device: torch.device, dtype: torch.dtype):
    from ..models import birefnet, modnet, rvm

    model = {"rvm": rvm, "modnet": modnet, "birefnet": birefnet}[kind].load(path).to(device=device, dtype=dtype)
    if device.type == "cpu" and dtype == torch.bfloat16:
        model = model.to(memory_format=torch.channels_last)
    return model


def _segments(chunk: Chunk, cuts: list[int]) -> list[tuple[int, int, bool]]:
    """Split a chunk at scene cuts: (a, b, starts_new_shot) in chunk-local indices."""
    inner = sorted(c - chunk.start for c in cuts if chunk.start <= c < chunk.stop)
    bounds = [0] + [c for c in inner if c > 0] + [len(chunk)]
    out = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        if b > a:
            out.append((a, b, (a + chunk.start) in cuts))
    return out


# ---------------------------------------------------------------------------------------------
# RobustVideoMatting
# ---------------------------------------------------------------------------------------------
def rvm_matte(
    stream: FrameStream,
    model: str = "rvm_mobilenetv3.pth",
    downsample_ratio: float = 0.0,
    recurrent: bool = True,
    reset_at_cuts: bool = True,
    batch_frames: int = 8,
) -> FrameStream:
    """Matte every frame with RobustVideoMatting; the alpha becomes the stream's mask.

    ``downsample_ratio`` 0 picks it from the resolution (:func:`rvm.auto_downsample_ratio`).
    ``recurrent`` False resets the memory on every frame (per-frame processing, for comparison).
    """
    if downsample_ratio < 0 or downsample_ratio > 1:
        raise ValueError(f"downsample_ratio must be in (0, 1], or 0 for automatic; got {downsample_ratio}")
    from ..models import rvm

    path = registry.resolve(model, "matting")
    info = stream.info
    ratio = float(downsample_ratio) or rvm.auto_downsample_ratio(info.height, info.width)
    params = {"model": path.name, "ratio": ratio, "recurrent": bool(recurrent), "reset_at_cuts": bool(reset_at_cuts)}

    def producer(up: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        device = host.torch_device()
        dtype = compute_dtype(device)
        net = _cached_model("rvm", path, device, dtype)
        cuts = scenes.LazyCuts(up) if reset_at_cuts else []
        progress = host.Progress(up.info.frame_count, "Video matting (RVM)")
        rec = None
        try:
            for chunk in up.chunks(chunk_size):
                alphas = []
                for a, b, new_shot in _segments(chunk, cuts):
                    if new_shot:
                        rec = None
                    for s in range(a, b, batch_frames if recurrent else 1):
                        e = min(b, s + (batch_frames if recurrent else 1))
                        x = chunk.frames[s:e].permute(0, 3, 1, 2).to(device=device, dtype=dtype)
                        if device.type == "cpu" and dtype == torch.bfloat16:
                            x = x.contiguous(memory_format=torch.channels_last)
                        with torch.inference_mode():
                            _fgr, pha, rec = net(x, rec if recurrent else None, ratio)
                        alphas.append(pha[:, 0].float().cpu())
                        progress.update(e - s)
                yield chunk.with_(mask=torch.cat(alphas).clamp_(0, 1))
        finally:
            progress.close()

    # recurrent: a range render warms the memory up on the frames before it (from the shot's start
    # when that is nearer); the state forgets its start within about a second
    warm = Temporal(behind=RVM_WARMUP, recurrent=recurrent, cut_aware=reset_at_cuts) if recurrent else FRAMEWISE
    return stream.derive("rvm_matte", params, producer, info.with_(has_mask=True), frames_unchanged=True,
                         temporal=warm)


# ---------------------------------------------------------------------------------------------
# MODNet
# ---------------------------------------------------------------------------------------------
def modnet_size(height: int, width: int, ref_size: int = 512) -> tuple[int, int]:
    """MODNet's working size: the shorter side brought to ``ref_size`` when the frame is smaller
    than it or larger on both sides, each side rounded to a multiple of 32 (at least 32)."""
    if ref_size <= 0:
        raise ValueError(f"ref_size must be positive, got {ref_size}")
    if max(height, width) < ref_size or min(height, width) > ref_size:
        if width >= height:
            rh, rw = ref_size, width * ref_size / height
        else:
            rh, rw = height * ref_size / width, ref_size
    else:
        rh, rw = height, width
    rh = max(32, int(round(rh / 32)) * 32)
    rw = max(32, int(round(rw / 32)) * 32)
    return rh, rw


def modnet_matte(stream: FrameStream, model: str = "modnet_photographic_portrait_matting.ckpt",
                 ref_size: int = 512, batch_frames: int = 4) -> FrameStream:
    """Matte every frame with MODNet on its own; the alpha becomes the stream's mask."""
    path = registry.resolve(model, "matting")
    info = stream.info
    rh, rw = modnet_size(info.height, info.width, ref_size)
    params = {"model": path.name, "ref_size": int(ref_size)}

    def producer(up: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        device = host.torch_device()
        dtype = compute_dtype(device)
        net = _cached_model("modnet", path, device, dtype)
        progress = host.Progress(up.info.frame_count, "Portrait matting (MODNet)")
        try:
            for chunk in up.chunks(chunk_size):
                alphas = []
                for s in range(0, len(chunk), batch_frames):
                    x = chunk.frames[s : s + batch_frames].permute(0, 3, 1, 2).to(device=device, dtype=torch.float32)
                    h, w = x.shape[2:]
                    x = F.interpolate(x, size=(rh, rw), mode="area") if (rh, rw) != (h, w) else x
                    x = ((x - 0.5) / 0.5).to(dtype)
                    with torch.inference_mode():
                        matte = net(x).float()
                    matte = F.interpolate(matte, size=(h, w), mode="bilinear", align_corners=False)
                    alphas.append(matte[:, 0].cpu())
                    progress.update(x.shape[0])
                yield chunk.with_(mask=torch.cat(alphas).clamp_(0, 1))
        finally:
            progress.close()

    return stream.derive("modnet_matte", params, producer, info.with_(has_mask=True), frames_unchanged=True,
                         temporal=FRAMEWISE)


# ---------------------------------------------------------------------------------------------
# BiRefNet
# ---------------------------------------------------------------------------------------------
class AlphaStabiliser:
    """Motion-gated running average of a per-frame matte.

    Where the picture stays still, the new alpha is blended into the previous output with weight
    ``1 - strength`` (flicker of a per-frame network is averaged away); where the picture changes
    by ``image_tolerance`` or more (luma, after a small blur against grain) within ``reach``
    pixels, the new alpha is taken at once, so moving edges do not trail. A still picture with a
    still matte passes unchanged; :meth:`reset` starts a new shot.
    """

    def __init__(self, strength: float = 0.7, image_tolerance: float = 0.05, reach: int = 2) -> None:
        if not 0 <= strength < 1:
            raise ValueError(f"stabilise must be in [0, 1), got {strength}")
        if image_tolerance <= 0:
            raise ValueError(f"image_tolerance must be positive, got {image_tolerance}")
        self.strength, self.tol, self.reach = float(strength), float(image_tolerance), max(0, int(reach))
        self.prev_alpha = self.prev_luma = None

    def reset(self) -> None:
        self.prev_alpha = self.prev_luma = None

    def _luma(self, frame: torch.Tensor) -> torch.Tensor:
        y = (frame.float() @ torch.tensor([0.2126, 0.7152, 0.0722]))[None, None]
        return F.avg_pool2d(y, 3, 1, 1, count_include_pad=False)[0, 0]

    def step(self, frame: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """``frame`` ``[H,W,3]``, ``alpha`` ``[H,W]`` -> the steadied alpha."""
        luma = self._luma(frame)
        if self.prev_alpha is None or self.strength == 0:
            out = alpha.float()
        else:
            motion = (luma - self.prev_luma).abs()[None, None]
            if self.reach:
                motion = F.max_pool2d(motion, 2 * self.reach + 1, 1, self.reach)
            weight = (motion[0, 0] / self.tol).clamp_(min=1.0 - self.strength, max=1.0)
            out = self.prev_alpha + weight * (alpha.float() - self.prev_alpha)
        self.prev_alpha, self.prev_luma = out, luma
        return out


def stabiliser_warmup(strength: float, tolerance: float = 1e-3) -> int:
    """Frames after which the start of a pass weighs less than ``tolerance`` in the output."""
    if strength <= 0:
        return 0
    return int(math.ceil(math.log(tolerance) / math.log(strength)))


def birefnet_matte(stream: FrameStream, model: str = "birefnet-general/model.safetensors", resolution: int = 1024,
                   stabilise: float = 0.7, reset_at_cuts: bool = True, patch_order: str = "channel-major",
                   batch_frames: int = 1) -> FrameStream:
    """Matte every frame with BiRefNet (per frame, square input of ``resolution`` px, ImageNet
    normalisation, matte scaled back to the frame); ``stabilise`` > 0 steadies it over time."""
    from ..models import birefnet

    if resolution < 128 or resolution % 32:
        raise ValueError(f"resolution must be a multiple of 32, at least 128 (1024 is what BiRefNet was trained at); got {resolution}")
    if patch_order not in birefnet.PATCH_ORDERS:
        raise ValueError(f"patch_order must be one of {birefnet.PATCH_ORDERS}, got {patch_order!r}")
    AlphaStabiliser(stabilise)  # validate now, not at pull time
    path = registry.resolve(model, "matting")
    info = stream.info
    params = {"model": path.name, "resolution": int(resolution), "stabilise": float(stabilise),
              "reset_at_cuts": bool(reset_at_cuts), "patch_order": patch_order}

    def producer(up: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        device = host.torch_device()
        dtype = compute_dtype(device)
        net = _cached_model("birefnet", path, device, dtype)
        cuts = scenes.LazyCuts(up) if reset_at_cuts and stabilise > 0 else []
        progress = host.Progress(up.info.frame_count, "Quality matting (BiRefNet)")
        smooth = AlphaStabiliser(stabilise)
        try:
            for chunk in up.chunks(chunk_size):
                alphas = []
                for s in range(0, len(chunk), batch_frames):
                    x = chunk.frames[s : s + batch_frames].permute(0, 3, 1, 2).to(device=device, dtype=torch.float32)
                    h, w = x.shape[2:]
                    x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
                    x = birefnet.normalise(x).to(dtype)
                    if device.type == "cpu" and dtype == torch.bfloat16:
                        x = x.contiguous(memory_format=torch.channels_last)
                    with torch.inference_mode():
                        matte = net(x, patch_order).float()
                    matte = F.interpolate(matte, size=(h, w), mode="bilinear", align_corners=False)
                    alphas.append(matte[:, 0].cpu().clamp_(0, 1))
                    progress.update(x.shape[0])
                alpha = torch.cat(alphas)
                if stabilise > 0:
                    for i in range(len(chunk)):
                        if chunk.start + i in cuts:
                            smooth.reset()
                        alpha[i] = smooth.step(chunk.frames[i], alpha[i])
                yield chunk.with_(mask=alpha.clamp_(0, 1))
        finally:
            progress.close()

    # the running average forgets where a pass started: a range render warms up over the frames
    # before it (or from its shot's first frame) until the start weighs < 1e-3
    warm = (Temporal(behind=stabiliser_warmup(stabilise), recurrent=True, cut_aware=reset_at_cuts)
            if stabilise > 0 else FRAMEWISE)
    return stream.derive("birefnet_matte", params, producer, info.with_(has_mask=True), frames_unchanged=True,
                         temporal=warm)
