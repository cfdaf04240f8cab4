"""Split one long video into segments, render them anywhere, join them into one file.

A segment is a range ``[a, b)`` of the Load Video node's output frames. It is rendered by the
same workflow (only the Save node and what it depends on), whose Save node is asked, through
``_meta.remaster_segment``, to write the range of its stream that covers those frames
(:mod:`.segment_worker`): each temporal stage reads the warm-up its ``Temporal`` declares and
drops it, and the segment keeps, losslessly, exactly the frames the final encoder would be
handed (:mod:`remaster.media.segment`: the source's YUV untouched where no stage changed the
pixels). One more task renders the chain's audio once for the whole range. Joining hands the
segments' planes to one encoder with the workflow's own Save Video settings and that audio, so
for frame-wise and windowed chains the joined file equals the single-process file frame for
frame, and recurrent stages differ only within their declared warm-up.
"""
from __future__ import annotations

import copy
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Optional

def find(prompt: dict, class_type: str) -> str:
    ids = sorted((k for k, v in prompt.items() if v.get("class_type") == class_type), key=lambda k: (len(k), k))
    if not ids:
        from .runner import WorkflowError

        raise WorkflowError(f"segments need a workflow with a {class_type} node")
    return ids[0]


def source_stream(prompt: dict):
    """The Load Video node's output stream (lazy: opening it only probes the file)."""
    from ..media import decode
    from .. import host

    li = prompt[find(prompt, "RemasterLoadVideo")]["inputs"]
    if int(li.get("every_nth", 1)) != 1:
        from .runner import WorkflowError

        raise WorkflowError("segments need Load Video's every_nth = 1 (set it, or run without --workers/--ray/--servers)")
    w = h = 0
    if li.get("resize") == "exact":
        w, h = int(li.get("width", 0)), int(li.get("height", 0))
    return decode.open_video(host.annotated_input_path(li["video"]), start_time=float(li.get("start_time", 0)),
                             end_time=float(li.get("end_time", 0)),
                             max_side=int(li.get("max_side", 0)) if li.get("resize") == "max_side" else 0,
                             width=w, height=h, force_fps=float(li.get("force_fps", 0)))


def plan(n_frames: int, fps: Fraction, target_seconds: float, cuts: Optional[list[int]] = None) -> list[tuple[int, int]]:
    """Ranges ``[a, b)`` covering ``0..n_frames`` once, about ``target_seconds`` long; a boundary
    moves to a scene cut within a quarter of the target length when there is one."""
    target = max(1, int(round(target_seconds * float(fps))))
    count = max(1, int(math.ceil(n_frames / target - 1e-9)))
    size = n_frames / count
    bounds = [0]
    for k in range(1, count):
        ideal = int(round(k * size))
        near = [c for c in (cuts or []) if abs(c - ideal) <= target // 4 and bounds[-1] < c < n_frames]
        bounds.append(min(near, key=lambda c: abs(c - ideal)) if near else ideal)
    bounds.append(n_frames)
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def _needed(prompt: dict, node_id: str) -> set:
    """``node_id`` and every node it depends on."""
    seen, todo = set(), [node_id]
    while todo:
        nid = todo.pop()
        if nid in seen or nid not in prompt:
            continue
        seen.add(nid)
        todo += [v[0] for v in (prompt[nid].get("inputs") or {}).values()
                 if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str)]
    return seen


def part_prompt(prompt: dict, part: dict, output: str, for_server: bool = False) -> dict:
    """The workflow rendering one part (a segment ``{"kind": "video", "range", "of"}`` or the
    audio ``{"kind": "audio"}``): the Save node and its inputs only, the request on its
    ``_meta``, the output at ``output`` (a server writes ``output`` as filename prefix)."""
    save = find(prompt, "RemasterSaveVideo")
    p = {k: copy.deepcopy(v) for k, v in prompt.items() if k in _needed(prompt, save)}
    node = p[save]
    node.setdefault("_meta", {})["remaster_segment"] = dict(part)
    si = node["inputs"]
    if for_server:
        si["output_path"] = ""
        si["filename_prefix"] = output
    else:
        si["output_path"] = output
    return p


def wants_audio(prompt: dict) -> bool:
    si = prompt[find(prompt, "RemasterSaveVideo")]["inputs"]
    return si.get("audio", "stream") == "stream" or isinstance(si.get("audio_override"), list)


def check_segment(path: str | Path) -> dict:
    """A segment is usable when it decodes to the frame count it records; returns its record."""
    from ..media import segment

    meta = segment.meta_of(path)
    if not meta or "range" not in meta:
        raise ValueError(f"{Path(path).name} is not a segment of a segmented render")
    n = segment.count_frames(path)
    if n != meta["frames"] or meta["range"][1] - meta["range"][0] != n:
        raise ValueError(f"segment {Path(path).name} has {n} frames, expected {meta['frames']}")
    return meta


def join(parts: list[str], prompt: dict, final: Path, audio=None, label: str = "Join") -> Path:
    """Encode the segments ``parts`` (in order; they must tile the output frames exactly once)
    as one file with the workflow's Save Video settings and ``audio``, under a temp name."""
    from ..media import encode, segment

    metas = [segment.meta_of(p) for p in parts]
    pos = 0
    for p, m in zip(parts, metas):
        if m["range"][0] != pos:
            raise ValueError(f"{Path(p).name} starts at output frame {m['range'][0]}, expected {pos}")
        pos = m["range"][1]
    if pos != metas[0]["of"]:
        raise ValueError(f"the segments end at output frame {pos} of {metas[0]['of']}")
    si = prompt[find(prompt, "RemasterSaveVideo")]["inputs"]
    src = source_stream(prompt)
    # the chunk sizes of a single run: the encoder is fed as Save Video feeds it there
    stream = segment.read(parts, int(metas[0].get("chunk") or 8), audio=audio, source=src.info.source)
    return encode.save_video(stream, fmt=si.get("format", "h264_mp4"), crf=int(si.get("crf", 18)),
                             speed=si.get("speed", "medium"), audio=audio, output_path=str(final), label=label,
                             odd_size=si.get("odd_size", "pad"))


def state_key(prompt: dict, ranges) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([prompt, ranges, 2], sort_keys=True, default=str).encode()).hexdigest()[:16]
