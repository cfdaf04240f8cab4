"""The worker side of a segmented render: what Save Video writes when the API workflow asks it
for a part of the job (``_meta.remaster_segment`` on the Save node; ComfyUI passes ``_meta``
through untouched, so the same request works in-process, on Ray and on ComfyUI servers).

* ``{"kind": "video", "range": [a, b], "of": n}``: frames ``a..b`` of the Load Video node's
  ``n`` frames, as the range of the Save node's stream that covers them
  (:meth:`~remaster.stream.FrameStream.range`: each stage reads the warm-up its
  :class:`~remaster.stream.Temporal` declares, computed and dropped), written as a lossless
  segment of the encoder's input (:mod:`remaster.media.segment`).
* ``{"kind": "audio"}``: the whole stream's audio as the Save node would mux it (audio stages
  rendered once, for the whole range): a small JSON naming the source's own audio, or the
  processed file copied packet for packet into a Matroska file (``remaster_audio`` tag: the
  reference's start, duration and offset).
"""
from __future__ import annotations

import json
import os
import uuid
from dataclasses import asdict
from pathlib import Path

KEY = "remaster_segment"
AUDIO_TAG = "remaster_audio"


def request(prompt: dict | None, unique_id) -> dict | None:
    """The segment request on node ``unique_id`` of ``prompt`` (None for an ordinary run)."""
    if not prompt or unique_id is None:
        return None
    node = prompt.get(str(unique_id)) or {}
    return (node.get("_meta") or {}).get(KEY)


def output_range(a: int, b: int, n_src: int, n_out: int) -> tuple[int, int]:
    """Output frames for source frames ``a..b``: the same indices when the chain keeps the frame
    count, else the proportional share (every worker computes the same tiling of 0..n_out)."""
    if n_out == n_src:
        return a, b
    return a * n_out // n_src, b * n_out // n_src


def source_span(stream, a: int, b: int) -> tuple[list, list]:
    """The source frames a range pass of ``a..b`` reads (its declared warm-up included), and the
    stages that declare no temporal context (a range through them renders from frame 0)."""
    s, undeclared = stream, []
    while s.upstream is not None:
        if s.temporal is None:
            undeclared.append(s.label)
        a, b = s.input_span(a, b)
        s = s.upstream
    return [int(a), int(b)], undeclared


def _target(output_path: str, filename_prefix: str, ext: str) -> Path:
    from ..media import encode

    if output_path:  # the driver's own name (its content tells what it is)
        return Path(output_path)
    folder, stem = encode.output_target(filename_prefix, ext)
    return encode.next_free_path(folder, stem, ext)


def render(frames, req: dict, fmt: str, odd_size: str, audio_ref, output_path: str, filename_prefix: str) -> Path:
    from ..media import segment

    if req.get("kind") == "audio":
        return render_audio(frames, audio_ref, output_path, filename_prefix)
    a, b = (int(x) for x in req["range"])
    n = frames.info.frame_count
    lo, hi = output_range(a, b, int(req["of"]), n)
    if hi <= lo:
        raise ValueError(f"segment {a}..{b} of {req['of']} source frames holds no output frame")
    read, undeclared = source_span(frames, lo, hi)
    return segment.write(frames.range(lo, hi), fmt, _target(output_path, filename_prefix, ".mkv"), odd_size,
                         meta={"range": [lo, hi], "of": n, "read": read, "chunk": frames.chunk_size,
                               "undeclared": undeclared})


def render_audio(frames, ref, output_path: str, filename_prefix: str) -> Path:
    """The audio task (see the module docstring)."""
    import av

    from ..audio import io as audio_io

    root = frames
    while root.upstream is not None:
        root = root.upstream
    if ref is None or (not isinstance(ref, audio_io.PendingAudioRef) and audio_io.raw_path(ref) == root.info.source):
        path = _target(output_path, filename_prefix, ".json")
        tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
        tmp.write_text(json.dumps({"audio": None if ref is None else asdict(ref)}))
        os.replace(tmp, path)
        return path
    src_path = ref.path  # a processed reference renders here, once, for the whole range
    path = _target(output_path, filename_prefix, ".mka")
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    fields = {k: v for k, v in asdict(ref).items() if k != "path"} | {"stream_index": 0}
    try:
        with av.open(src_path) as src, av.open(str(tmp), "w", format="matroska") as dst:
            ins = src.streams[ref.stream_index]
            ost = dst.add_stream_from_template(ins)
            dst.metadata[AUDIO_TAG] = json.dumps(fields)
            for pkt in src.demux(ins):
                if pkt.dts is None:
                    continue
                pkt.stream = ost
                dst.mux(pkt)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return path


def audio_of(path: str | os.PathLike):
    """The driver's side: the AudioRef an audio task's file stands for (None: silent)."""
    import av

    from ..stream import AudioRef

    p = Path(path)
    with open(p, "rb") as f:
        is_json = f.read(1) == b"{"
    if is_json:
        rec = json.loads(p.read_text())["audio"]
        return None if rec is None else AudioRef(**rec)
    with av.open(str(p)) as c:
        tag = next((v for k, v in c.metadata.items() if k.lower() == AUDIO_TAG), None)
    if tag is None:
        raise ValueError(f"{p.name} is not an audio part of a segmented render")
    return AudioRef(path=str(p), **json.loads(tag))
