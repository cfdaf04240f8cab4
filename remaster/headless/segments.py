"""Split one long video into segments, render them anywhere, join them into one file.

A segment is a range of the Load Video node's output frames ``[a, b)``. It is rendered by the
same workflow with Load Video's ``start_time``/``end_time`` moved to ``a - warmup`` and ``b``
(exact: frame ``i`` is shown at ``i / fps``) and its Save Video switched to lossless FFV1 RGB
without audio. Joining decodes the segments, drops each one's warm-up frames and encodes once
with the workflow's own Save Video settings and the source's audio, so the pixels the encoder
sees are the ones a single run would give it: for frame-wise workflows the joined file equals
the single-process file frame for frame; temporal stages differ only inside the first frames
after a segment start, which the warm-up covers.
"""
from __future__ import annotations

import copy
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Optional

# node types that carry state from frame to frame (matting, colour smoothing, deflicker, ...):
# segments of workflows using them get warm-up frames by default
TEMPORAL_HINTS = ("Matting", "AutoColour", "Deflicker", "Temporal", "Interpolate", "FaceRestore", "Stabil", "Film")


def find(prompt: dict, class_type: str) -> str:
    ids = sorted((k for k, v in prompt.items() if v.get("class_type") == class_type), key=lambda k: (len(k), k))
    if not ids:
        from .runner import WorkflowError

        raise WorkflowError(f"segments need a workflow with a {class_type} node")
    return ids[0]


def is_temporal(prompt: dict) -> bool:
    return any(h in v.get("class_type", "") for v in prompt.values() for h in TEMPORAL_HINTS)


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


def scene_cuts_of(stream) -> list[int]:
    """Scene cuts of the source at thumbnail size (one cheap decode)."""
    from ..analysis import scenes
    from ..media import decode

    small = decode.open_video(stream.info.source, max_side=160)
    return scenes.detect_scene_cuts(small)


def segment_prompt(prompt: dict, a: int, b: int, warm: int, fps: Fraction, n_frames: int, output: str,
                   for_server: bool = False) -> dict:
    """The workflow rendering frames ``[a - warm, b)`` to a lossless, silent file."""
    p = copy.deepcopy(prompt)
    li = p[find(p, "RemasterLoadVideo")]["inputs"]
    t0 = float(li.get("start_time", 0.0))
    li["start_time"] = t0 + float(Fraction(a - warm) / fps)
    if b < n_frames or float(li.get("end_time", 0.0)) > 0:
        li["end_time"] = t0 + float(Fraction(b) / fps)
    si = p[find(p, "RemasterSaveVideo")]["inputs"]
    si.update(format="ffv1_mkv", audio="none")
    if for_server:
        si["output_path"] = ""
        si["filename_prefix"] = output
    else:
        si["output_path"] = output
    return p


def check_segment(path: str | Path, expected: int) -> None:
    """A segment is usable when it decodes and has exactly the frames asked for."""
    import av

    with av.open(str(path)) as c:
        n = sum(1 for _ in c.decode(video=0))
    if n != expected:
        raise ValueError(f"segment {Path(path).name} has {n} frames, expected {expected}")


def join(parts: list[tuple[str, int, int]], prompt: dict, final: Path, label: str = "Join") -> Path:
    """Encode ``parts`` = (file, warm-up frames to drop, frames kept) as one file with the
    workflow's Save Video settings and the source's audio, written under a temp name."""
    from ..media import decode, encode
    from ..stream import Chunk, FrameStream, rebatch

    first = decode.open_video(parts[0][0])  # size; fps and colour facts come from the source
    total = sum(k for _, _, k in parts)
    src = source_stream(prompt)
    si = prompt[find(prompt, "RemasterSaveVideo")]["inputs"]
    audio = src.info.audio if si.get("audio", "stream") == "stream" else None
    info = src.info.with_(frame_count=total, audio=audio, width=first.info.width, height=first.info.height,
                          fps=_segment_fps(prompt, src.info.fps), chunk_size=0, scene_cuts=None)

    def frames(chunk_size):
        # every frame of our own lossless segments, in order (no frame-rate resampling)
        import av
        import torch

        pos = 0
        for path, warm, keep in parts:
            with av.open(str(path)) as c:
                for i, f in enumerate(c.decode(video=0)):
                    if i >= warm + keep:
                        break
                    if i >= warm:
                        yield Chunk(pos, torch.from_numpy(f.to_ndarray(format="rgb24")[None]).float().div_(255.0), None)
                        pos += 1

    def producer(_self, chunk_size):
        # the chunk sizes of a single run (Load Video's): x264 through PyAV gave different bits
        # for the same frames fed in other chunk sizes, so the join feeds them the same way
        return rebatch(frames(src.chunk_size), src.chunk_size)

    stream = FrameStream(info, producer, f"join-{len(parts)}-{total}", label="join")
    return encode.save_video(stream, fmt=si.get("format", "h264_mp4"), crf=int(si.get("crf", 18)),
                             speed=si.get("speed", "medium"), audio=audio, output_path=str(final), label=label)


def _segment_fps(prompt: dict, fps):
    """The output rate: the source's, unless a stage changes it (interpolation sets a target)."""
    for node in prompt.values():
        for k in ("target_fps", "fps"):
            v = (node.get("inputs") or {}).get(k)
            if "Interpolate" in node.get("class_type", "") and isinstance(v, (int, float)) and v > 0:
                return Fraction(v).limit_denominator(100000)
    return fps


def state_key(prompt: dict, ranges, warm: int) -> str:
    import hashlib

    return hashlib.sha256(json.dumps([prompt, ranges, warm], sort_keys=True, default=str).encode()).hexdigest()[:16]
