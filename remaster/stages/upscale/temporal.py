"""Running a temporal restorer (a compact Real-ESRGAN with a recurrent, flow-warped feature
fusion, see :mod:`remaster.models.temporal_compact`) on the frame stream.

Frames go through one at a time, in order: the previous frame's hidden features are warped to the
current frame by optical flow computed on the *input* frames (with the forward-backward and
photometric confidence of :func:`remaster.analysis.flow.motion_confidence`) and
fused in. State: one frame of features and one small grey frame. Scene cuts (attached or
detected in the same pass) reset it. Whole frames, no tiling (the features of the previous frame
must cover the frame); on a GPU the model runs in fp16/bf16 autocast.
"""
from __future__ import annotations

import os
from typing import Iterator, Optional

import torch
import torch.nn.functional as F

from ... import host
from ...models import registry
from ...models import temporal_compact as tcm
from ...models.cache import MODELS, file_key
from ...models.precision import pick_dtype
from ...stream import Chunk, FrameStream
from ...analysis import flow as flowlib
from ...analysis import scenes
from ...analysis.flow import motion_confidence, scale_flow


def autocast_dtype(device: torch.device, precision: str = "auto") -> Optional[torch.dtype]:
    """The autocast dtype for ``precision`` on ``device`` (None = plain fp32): the pack's precision
    policy with bf16 preferred on GPUs that have it."""
    if device.type not in ("cuda", "cpu"):
        return None
    dtype = pick_dtype(device, precision, cuda_prefers="bf16")
    return None if dtype == torch.float32 else dtype


def load(name: str) -> tcm.TemporalCompact:
    path = registry.resolve(name, "upscale_models")
    return MODELS.get("temporal_restore", file_key(path), lambda: tcm.load(path))


def is_temporal_model(name: str) -> bool:
    """True when ``name`` (a file in upscale_models) is a temporal restorer saved by the pack."""
    try:
        path = registry.resolve(name, "upscale_models", check_hash=False)
    except registry.ModelError:
        return False
    return tcm.is_temporal_file(path)


class TemporalRunner:
    """Feed frames ``[H,W,3]`` in order; returns the restored frame ``[H*s,W*s,3]`` on the device."""

    def __init__(self, model: torch.nn.Module, device: torch.device, precision: str = "auto",
                 flow_method: str = "dis_fast", flow_max_side: int = 640) -> None:
        self.model = model.to(device).eval()
        self.device = device
        self.amp = autocast_dtype(device, precision)
        self.flow_method, self.flow_max_side = flow_method, flow_max_side
        self.reset()

    def reset(self) -> None:
        self.prev_h: Optional[torch.Tensor] = None
        self.prev_grey = None

    @torch.inference_mode()
    def step(self, frame: torch.Tensor, is_cut: bool = False) -> torch.Tensor:
        x = frame.to(self.device, torch.float32).permute(2, 0, 1)[None]
        grey = flowlib.to_gray_u8(frame, self.flow_max_side)
        warped = conf = None
        if not is_cut and self.prev_h is not None and self.prev_grey.shape == grey.shape:
            fl, c = motion_confidence(grey, self.prev_grey, self.flow_method)
            h, w = x.shape[-2:]
            fl = scale_flow(fl, (h, w))
            warped = flowlib.backward_warp(self.prev_h, fl)
            conf = F.interpolate(torch.from_numpy(c)[None, None], size=(h, w), mode="bilinear").to(self.device)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            y, hid = self.model(x, None if warped is None else warped.to(x.dtype), conf)
        self.prev_h, self.prev_grey = hid.float(), grey
        return y.float().clamp_(0, 1)[0].permute(1, 2, 0)


def restore(stream: FrameStream, model: str, out_size: Optional[tuple[int, int]] = None,
            precision: str = "auto") -> FrameStream:
    """``stream`` through the temporal restorer ``model`` (file in upscale_models), resized to
    ``out_size`` (H, W) with an antialiased filter when that differs from the model's scale."""
    net = load(model)
    info = stream.info
    s = net.scale
    oh, ow = out_size or (info.height * s, info.width * s)
    cuts = set(info.scene_cuts or ())
    detect = info.scene_cuts is None

    def producer(upstream: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        runner = TemporalRunner(net, host.torch_device(), precision)
        detector = scenes.CutDetector() if detect else None
        progress = host.Progress(info.frame_count, "temporal restore")
        for ch in upstream.chunks(chunk_size):
            if detector is not None:
                cuts.update(detector.push(ch.frames))
            out = torch.empty(len(ch), oh, ow, 3)
            for i in range(len(ch)):
                host.check_interrupt()
                y = runner.step(ch.frames[i], ch.start + i in cuts).permute(2, 0, 1)[None]
                if y.shape[-2:] != (oh, ow):
                    y = F.interpolate(y, size=(oh, ow), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 1)
                out[i] = y[0].permute(1, 2, 0).cpu()
            mask = None
            if ch.mask is not None:
                mask = F.interpolate(ch.mask[:, None], size=(oh, ow), mode="bilinear", align_corners=False)[:, 0]
            progress.update(len(ch))
            yield Chunk(ch.start, out, mask)

    area = (oh * ow) / max(1, info.height * info.width)
    new_info = info.with_(width=ow, height=oh, chunk_size=max(1, int(info.chunk_size / area)) if info.chunk_size else 0)
    params = {"model": os.path.basename(str(model)), "size": [oh, ow], "precision": precision}
    return stream.derive("temporal_restore", params, producer, new_info)
