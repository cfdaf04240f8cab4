"""Carry each keyframe's chosen edit through its group along the optical flow, composite it only
inside the feathered mask, fade between groups, and measure jumps against the source."""
from __future__ import annotations

from typing import Iterator, Optional

import numpy as np
import torch

from ... import host
from ...stream import Chunk, FrameStream
from ...analysis import flow as flowlib
from ...analysis.jumps import JumpMeter
from .geometry import feather, to_float
from .select import InpaintSelection


def _region_box(alpha: torch.Tensor) -> Optional[tuple]:
    ys, xs = torch.nonzero(alpha > 0, as_tuple=True)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class _Compositor:
    """Carries keyframe edits to frames (one instance per pass)."""

    def __init__(self, sel: InpaintSelection, mode: str, blend: int, flow_method: str,
                 dropped: set) -> None:
        c = sel.candidates
        self.sel, self.mode, self.blend, self.flow_method = sel, mode, blend, flow_method
        self.plan = c.plan
        self.grow, self.radius = c.settings["grow"], c.settings["feather"]
        self.flow_side = c.settings["flow_side"]
        self.edits = c.edits
        self.dropped = set(dropped)
        self.layers: dict = {}  # g -> (edited crop, source crop) as [1,3,h,w] float
        self.cuts = sorted(self.plan.cuts)

    def _layer(self, g: int):
        """Keyframe ``g``'s change inside its own feathered mask, ``alpha_k · (edit − source)``, as
        ``[1,3,h,w]`` (``replace`` mode: the source crop plus that change). None when dropped."""
        if g in self.dropped:
            return None
        if g not in self.layers:
            e = self.edits[g]
            ed = self.sel.edited(g)
            if ed is None:
                self.layers[g] = None
            else:
                src = to_float(e.source)
                alpha_k = feather(e.mask, self.grow, self.radius)[..., None]
                img = alpha_k * (ed - src)
                if self.mode == "replace":
                    img = src + img
                self.layers[g] = img.permute(2, 0, 1)[None].contiguous()
            for old in [k for k in self.layers if k < g - 1]:
                del self.layers[old]
        return self.layers[g]

    def _same_shot(self, a: int, b: int) -> bool:
        import bisect

        return bisect.bisect_right(self.cuts, a) == bisect.bisect_right(self.cuts, b)

    def _warped(self, g: int, gray: np.ndarray, box: tuple, size: tuple):
        """Keyframe ``g``'s layer warped onto the region ``box`` of the current frame:
        ``(values [3,h,w], valid [h,w])`` or None."""
        layer = self._layer(g)
        if layer is None:
            return None
        e = self.edits[g]
        H, W = size
        fl = flowlib.estimate_flow(gray, e.thumb, self.flow_method, out_size=(H, W))
        rx0, ry0, rx1, ry1 = box
        fr = np.ascontiguousarray(fl[ry0:ry1, rx0:rx1])
        off = (e.box[0] - rx0, e.box[1] - ry0)
        both = torch.cat([layer, torch.ones_like(layer[:, :1])], 1)
        w = flowlib.backward_warp(both, fr, offset=off, padding="zeros")[0]
        return w[:3], w[3]

    def frame(self, index: int, src: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if mask is None:
            return src
        g = self.plan.group_of(index)
        a, b = self.plan.groups[g]
        contributions = [(g, 1.0)]
        if self.blend > 0 and g + 1 < len(self.plan.groups) and index >= b - self.blend \
                and self._same_shot(index, b):
            w = (index - (b - self.blend) + 1) / (self.blend + 1)
            contributions = [(g, 1.0 - w), (g + 1, w)]
        live = [(k, w) for k, w in contributions if self._layer(k) is not None and w > 0]
        if not live:
            return src
        alpha = feather(mask, self.grow, self.radius)
        box = _region_box(alpha)
        if box is None:
            return src
        x0, y0, x1, y1 = box
        H, W = src.shape[:2]
        gray = flowlib.to_gray_u8(src, self.flow_side)
        s = src[y0:y1, x0:x1].permute(2, 0, 1)
        acc = torch.zeros_like(s)
        for k, w in contributions:
            got = self._warped(k, gray, box, (H, W)) if w > 0 else None
            if got is None:
                continue  # dropped or empty: this share stays original (delta 0)
            val, valid = got
            if self.mode == "delta":
                acc += w * val
            else:
                acc += w * (val + (1.0 - valid) * s - s)
        al = alpha[y0:y1, x0:x1]
        region = s + al * acc
        out = src.clone()
        inside = (al > 0)[..., None]
        out[y0:y1, x0:x1] = torch.where(inside, region.permute(1, 2, 0).clamp(0, 1), src[y0:y1, x0:x1])
        return out


def propagate(
    stream: FrameStream,
    selection: InpaintSelection,
    mode: str = "delta",
    blend: int = 4,
    flow_method: str = "farneback",
    on_jump: str = "report",
    jump_threshold: float = 0.03,
) -> FrameStream:
    """The edited video (see the module docstring). ``mode``: ``delta`` adds the keyframe's change
    (edit − source) to each frame, keeping the frame's own detail; ``replace`` pastes the warped
    keyframe edit itself. ``on_jump``: ``report`` or ``drop`` (an extra pass first, then groups
    scoring above ``jump_threshold`` stay original)."""
    if mode not in ("delta", "replace"):
        raise ValueError(f"propagate: 'mode' must be 'delta' or 'replace', got '{mode}'")
    if on_jump not in ("report", "drop"):
        raise ValueError(f"propagate: 'on_jump' must be 'report' or 'drop', got '{on_jump}'")
    if flow_method not in flowlib.METHODS:
        raise ValueError(f"propagate: unknown flow_method '{flow_method}'; use one of {flowlib.METHODS}")
    plan = selection.plan
    if stream.info.frame_count != plan.frame_count:
        raise ValueError(f"propagate: the edit was made for {plan.frame_count} frames, the stream has "
                         f"{stream.info.frame_count}; connect the same frames used for Keyframes")
    if (stream.info.height, stream.info.width) != tuple(selection.candidates.frame_size):
        raise ValueError("propagate: the frames' size differs from the size the keyframes were inpainted at")
    params = {"selection": selection.fingerprint, "mode": mode, "blend": int(blend), "flow": flow_method,
              "on_jump": on_jump, "jump_threshold": float(jump_threshold)}

    def run(dropped: set, meter: Optional[JumpMeter]) -> Iterator[Chunk]:
        comp = _Compositor(selection, mode, int(blend), flow_method, dropped)
        for chunk in stream.chunks():
            outs = []
            for i in range(len(chunk)):
                idx = chunk.start + i
                m = None if chunk.mask is None else chunk.mask[i]
                o = comp.frame(idx, chunk.frames[i], m)
                if meter is not None:
                    meter.add(idx, chunk.frames[i], o, m)
                outs.append(o)
            host.check_interrupt()
            yield chunk.with_(frames=torch.stack(outs))

    dropped: set = set()
    scores: list = []
    if on_jump == "drop":
        meter = JumpMeter(plan)
        for _ in run(set(), meter):
            pass
        scores = meter.group_scores()
        dropped = {g for g, s in enumerate(scores) if s > jump_threshold}
    info = stream.info.set_extra("inpaint_jump_scores", tuple(round(s, 5) for s in scores))
    info = info.set_extra("inpaint_dropped", tuple(sorted(dropped)))
    params["dropped"] = sorted(dropped)

    def producer(up: FrameStream, size: int) -> Iterator[Chunk]:
        from ...stream import rebatch

        yield from rebatch(run(dropped, None), size)

    return stream.derive("inpaint_propagate", params, producer, info)
