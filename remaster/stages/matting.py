"""Person mattes on the frame stream: RobustVideoMatting (recurrent) and MODNet (per frame).

Both write a soft alpha (0..1, 1 = person) into the stream's ``mask`` and leave the frames as
they are. RVM carries its four ConvGRU states from chunk to chunk, so the matte is temporally
stable; the states are dropped at scene cuts (a new shot starts from a clean memory). MODNet
sees each frame on its own at a reference size whose sides are multiples of 32, whatever the
aspect ratio.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from .. import host
from ..models import registry
from ..stream import FRAMEWISE, Chunk, FrameStream, Temporal
from . import scenes

# frames of warm-up a range render gives RVM's recurrent memory (see docs/onepass.md for the error)
RVM_WARMUP = 48

log = logging.getLogger("remaster.matting")

_loaded: dict = {}


def compute_dtype(device: torch.device) -> torch.dtype:
    """fp16 on CUDA, bf16 on CPUs with fast bf16, fp32 elsewhere."""
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and host.cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def _cached_model(kind: str, path: Path, device: torch.device, dtype: torch.dtype):
    st = path.stat()
    key = (kind, str(path), st.st_size, st.st_mtime_ns, str(device), dtype)
    if key not in _loaded:
        _loaded.clear()  # keep one matting model resident at a time
        if kind == "rvm":
            from ..models import rvm

            model = rvm.load(path)
        else:
            from ..models import modnet

            model = modnet.load(path)
        model = model.to(device=device, dtype=dtype)
        if device.type == "cpu" and dtype == torch.bfloat16:
            model = model.to(memory_format=torch.channels_last)
        _loaded[key] = model
    return _loaded[key]


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
        cuts = scenes.scene_cuts(up) if reset_at_cuts else []
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
