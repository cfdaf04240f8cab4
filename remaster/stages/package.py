"""Packaging results: a before/after comparison stream and a JSON run report.

:func:`comparison` zips two streams of the same length into side-by-side, stacked or wipe frames
(the wipe's divider sweeps left to right over the clip). With ``report_path`` set, the pass also
re-measures the edit against the source (:class:`~remaster.analysis.jumps.JumpMeter`) and writes the JSON report
(keyframes, picks, scores, timings, settings, jumps) when the last frame has been produced.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator, Optional

import torch

from ..analysis.jumps import JumpMeter
from ..stream import Chunk, FrameStream, rebatch

__all__ = ["comparison", "LAYOUTS", "run_report", "write_report", "next_report_path"]

LAYOUTS = ("side_by_side", "stacked", "wipe")


def _zip(a: FrameStream, b: FrameStream, size: int) -> Iterator[tuple]:
    it_b = rebatch(b.chunks(size), size)
    for ca in rebatch(a.chunks(size), size):
        cb = next(it_b, None)
        if cb is None or len(cb) != len(ca):
            raise RuntimeError("comparison: the two streams ended at different frames")
        yield ca, cb


def _combine(a: torch.Tensor, b: torch.Tensor, layout: str, index: int, total: int) -> torch.Tensor:
    if layout == "side_by_side":
        return torch.cat([a, b], dim=2)
    if layout == "stacked":
        return torch.cat([a, b], dim=1)
    # wipe: before on the left of a moving divider, after on the right
    n, H, W, _ = a.shape
    out = b.clone()
    line = max(1, W // 320)
    for i in range(n):
        x = int(round((index + i + 0.5) / max(1, total) * W))
        out[i, :, :x] = a[i, :, :x]
        out[i, :, max(0, x - line): x + line] = 1.0
    return out


def run_report(selection, jump_scores: Optional[list] = None, extra: Optional[dict] = None) -> dict:
    """The JSON-able run report of an inpainting run."""
    cands = selection.candidates
    plan = cands.plan
    rep = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "frames": plan.frame_count,
        "keyframes": plan.keyframes,
        "groups": plan.groups,
        "scene_cuts": plan.cuts,
        "keyframe_settings": plan.settings,
        "keyframe_seconds": plan.seconds,
        "inpaint_settings": cands.settings,
        "inpaint_seconds": round(sum(e.seconds for e in cands.edits), 3),
        "picks": selection.to_json(),
    }
    if jump_scores is not None:
        rep["jump_scores"] = [round(float(s), 5) for s in jump_scores]
    if extra:
        rep.update(extra)
    return rep


def next_report_path(prefix: str) -> Path:
    """A new ``<output>/<prefix>_00001.json`` path (the first number not taken)."""
    from .. import host

    base = host.output_dir() / prefix
    if ".." in Path(prefix).parts:
        raise ValueError(f"report prefix '{prefix}' must stay inside the output folder")
    base.parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        p = base.parent / f"{base.name}_{n:05d}.json"
        if not p.exists():
            return p
        n += 1


def write_report(path: Path | str, report: dict) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".part")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(p)
    return p


def comparison(
    before: FrameStream,
    after: FrameStream,
    layout: str = "side_by_side",
    selection=None,
    report_path: Optional[str | Path] = None,
) -> FrameStream:
    """A stream showing ``before`` and ``after`` together (see the module docstring)."""
    if layout not in LAYOUTS:
        raise ValueError(f"comparison: 'layout' must be one of {', '.join(LAYOUTS)}, got '{layout}'")
    ia, ib = before.info, after.info
    if ia.frame_count != ib.frame_count or (ia.width, ia.height) != (ib.width, ib.height):
        raise ValueError(
            f"comparison: before is {ia.width}x{ia.height}×{ia.frame_count} frames, after is "
            f"{ib.width}x{ib.height}×{ib.frame_count}; connect the source and the edit of the same clip"
        )
    if report_path is not None and selection is None:
        raise ValueError("comparison: a report needs the selection (connect the Select node's output)")
    W, H = ia.width, ia.height
    if layout == "side_by_side":
        W *= 2
    elif layout == "stacked":
        H *= 2
    info = ib.with_(width=W, height=H, has_mask=False)
    total = ia.frame_count

    def producer(_up: FrameStream, size: int) -> Iterator[Chunk]:
        meter = None
        if report_path is not None:
            meter = JumpMeter(selection.plan)
        t0 = time.perf_counter()
        for ca, cb in _zip(before, after, size):
            if meter is not None:
                for i in range(len(ca)):
                    meter.add(ca.start + i, ca.frames[i], cb.frames[i], None if ca.mask is None else ca.mask[i])
            yield Chunk(ca.start, _combine(ca.frames, cb.frames, layout, ca.start, total))
        if meter is not None:
            extra = {"comparison_layout": layout, "render_seconds": round(time.perf_counter() - t0, 3),
                     "dropped_groups": list(ib.get_extra("inpaint_dropped", ()))}
            write_report(report_path, run_report(selection, meter.group_scores(), extra))

    params = {"before": before.fingerprint, "layout": layout,
              "report": str(report_path) if report_path else None}
    return after.derive("comparison", params, producer, info)
