"""Inpaint each keyframe: crop around its mask with context, resize to the model's resolution,
ask a back-end for ``count`` candidates and resize them back to the crop."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ... import host
from ...stream import FrameStream, fingerprint_of
from .. import flow as flowlib
from ..keyframes import KeyframePlan
from .backends import InpaintBackend
from .geometry import crop_box, model_size, resize_hw, to_float, to_uint8


@dataclass
class KeyframeEdit:
    """Everything about one keyframe's inpainting, at crop level (uint8 to keep memory small)."""

    index: int  # frame index of the keyframe
    box: Optional[tuple]  # (x0, y0, x1, y1) or None when the mask is empty there
    source: Optional[torch.Tensor] = None  # [h,w,3] uint8 crop of the source
    candidates: Optional[torch.Tensor] = None  # [count,h,w,3] uint8
    mask: Optional[torch.Tensor] = None  # [h,w] float crop of the mask
    thumb: Optional[np.ndarray] = None  # grey uint8 of the whole keyframe at the flow size
    seconds: float = 0.0


@dataclass
class InpaintCandidates:
    plan: KeyframePlan
    edits: list  # KeyframeEdit per keyframe, in order
    settings: dict = field(default_factory=dict)
    frame_size: tuple = (0, 0)  # (H, W)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("inpaint", self.plan.fingerprint, self.settings)

    def __repr__(self) -> str:
        n = sum(1 for e in self.edits if e.candidates is not None)
        return f"<InpaintCandidates {n} keyframes × {self.settings.get('count')} candidates>"


def inpaint_keyframes(
    stream: FrameStream,
    plan: KeyframePlan,
    backend: InpaintBackend,
    prompt: str = "",
    negative: str = "",
    count: int = 4,
    strength: float = 0.3,
    seed: int = 0,
    steps: int = 20,
    guidance: float = 7.5,
    resolution: int = 512,
    context: float = 0.25,
    grow: int = 4,
    feather_px: int = 8,
    flow_side: int = 512,
) -> InpaintCandidates:
    """Inpaint every keyframe of ``plan`` (frames and masks from ``stream``); see the module docstring.

    Every keyframe uses the same ``seed`` (candidate ``j`` differs by its place in the batch), so
    neighbouring keyframes start from the same noise, which keeps edits alike across groups.
    """
    if stream.info.frame_count != plan.frame_count:
        raise ValueError(
            f"inpaint: the keyframe plan covers {plan.frame_count} frames but the stream has "
            f"{stream.info.frame_count}; connect the same frames to Keyframes and Inpaint"
        )
    if not stream.info.has_mask:
        raise ValueError("inpaint: the frames carry no mask; connect a mask node (e.g. Mask from "
                         "Rectangle or a segmentation node) before Keyframes and Inpaint")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"inpaint: 'strength' (denoise) must be in (0, 1], got {strength}")
    if count < 1:
        raise ValueError(f"inpaint: 'count' must be at least 1, got {count}")
    settings = {
        "prompt": prompt, "negative": negative, "count": int(count), "strength": float(strength),
        "seed": int(seed), "steps": int(steps), "guidance": float(guidance), "resolution": int(resolution),
        "context": float(context), "grow": int(grow), "feather": int(feather_px), "flow_side": int(flow_side),
        **backend.describe(),
    }
    wanted = set(plan.keyframes)
    edits: list = []
    progress = host.Progress(len(plan.keyframes), "Inpaint keyframes")
    margin = grow + 2 * feather_px + 8
    for chunk in stream.chunks():
        for i in range(len(chunk)):
            idx = chunk.start + i
            if idx not in wanted:
                continue
            t0 = time.perf_counter()
            frame, mask = chunk.frames[i], chunk.mask[i]
            thumb = flowlib.to_gray_u8(frame, flow_side)
            box = crop_box(mask, context, margin)
            if box is None:
                edits.append(KeyframeEdit(idx, None, thumb=thumb))
                progress.update(1)
                continue
            x0, y0, x1, y1 = box
            crop, mcrop = frame[y0:y1, x0:x1], mask[y0:y1, x0:x1]
            mw, mh = model_size(x1 - x0, y1 - y0, resolution, backend.multiple)
            img_in = resize_hw(crop[None], (mh, mw)).clamp(0, 1)
            m_in = (resize_hw(mcrop[None, ..., None], (mh, mw))[..., 0] > 0.5).float()
            out = backend.generate(img_in, m_in, prompt=prompt, negative=negative, strength=strength,
                                   seed=seed, steps=steps, guidance=guidance, count=count)
            if out.ndim != 4 or out.shape[0] != count or tuple(out.shape[1:3]) != (mh, mw):
                raise RuntimeError(f"inpaint back-end returned {tuple(out.shape)}, expected [{count},{mh},{mw},3]")
            back = resize_hw(out.float().cpu(), (y1 - y0, x1 - x0))
            edits.append(KeyframeEdit(idx, box, to_uint8(crop), to_uint8(back), mcrop.float().clone(), thumb,
                                      round(time.perf_counter() - t0, 3)))
            progress.update(1)
    progress.close()
    if len(edits) != len(plan.keyframes):
        raise RuntimeError(f"inpaint: found {len(edits)} of {len(plan.keyframes)} keyframes in the stream")
    H, W = stream.info.height, stream.info.width
    return InpaintCandidates(plan, edits, settings, (H, W))


def candidate_sheet(cands: "InpaintCandidates", side: int = 256) -> torch.Tensor:
    """All candidates as a ComfyUI IMAGE batch ``[keyframes × count, side, side, 3]`` (each crop
    letterboxed into a square), keyframe by keyframe, for choosing picks by eye."""
    tiles = []
    for e in cands.edits:
        if e.candidates is None:
            continue
        for c in range(e.candidates.shape[0]):
            img = to_float(e.candidates[c])
            h, w = img.shape[:2]
            s = side / max(h, w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            small = resize_hw(img[None], (nh, nw))[0]
            tile = torch.zeros(side, side, 3)
            oy, ox = (side - nh) // 2, (side - nw) // 2
            tile[oy:oy + nh, ox:ox + nw] = small.clamp(0, 1)
            tiles.append(tile)
    return torch.stack(tiles) if tiles else torch.zeros(1, side, side, 3)
