"""Segments of a long render: a lossless copy of exactly the frames the final encoder would be
handed, and a stream that hands them back unchanged.

A segment is FFV1 in the final format's own pixel format (its YUV for H.264/H.265/ProRes/VP9,
RGB for the lossless RGB formats, 16-bit RGB for PNG sequences), holding what
:func:`~remaster.media.encode.encoder_frames` gives: the decoder's YUV planes untouched when no
stage changed the pixels, else the stages' RGB converted once with the output's matrix. Reading
segments back gives those planes as native frames, so the encoder of the joined file gets the
same YUV as in one run (written at codec speed, never converted again) and a segmented render
equals a single one frame for frame.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from ..stream import Chunk, FrameStream, StreamInfo
from . import encode
from .frames import NativeFrames, _Converter
from .probe import probe

TAG = "remaster_segment"


def spec_for(fmt: str) -> dict:
    """The encoder spec whose input a segment keeps, and the FFV1 pixel format keeping it."""
    spec = encode.resolve_preset(fmt)
    if spec["kind"] == "images":  # PNG sequences quantize to 16-bit RGB
        return {"pix_fmt": "gbrp16le", "rgb": True, "bits": 16, "kind": "video"}
    return spec


def write(stream: FrameStream, fmt: str, path: str | os.PathLike, odd_size: str = "pad", meta: dict | None = None) -> Path:
    """Encode ``stream`` as a segment for final format ``fmt`` at ``path`` (temp name, then
    rename). ``meta`` is stored in the file (tag ``remaster_segment``) with the frame count and
    rate."""
    spec = spec_for(fmt)
    info = stream.info
    fps = Fraction(info.fps).limit_denominator(1_000_000)
    tags = encode.output_tags(info)
    w, h = encode.aligned_size(info.width, info.height, spec, odd_size)
    final = Path(path)
    tmp = final.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{final.name}")
    rgb = bool(spec.get("rgb"))
    out = av.open(str(tmp), mode="w", format="matroska")
    try:
        record = dict(meta or {}, frames=info.frame_count, fps=str(fps), width=info.width, height=info.height)
        out.metadata[TAG] = json.dumps(record, separators=(",", ":"))
        vs = out.add_stream("ffv1", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, spec["pix_fmt"]
        vs.time_base = Fraction(1) / fps
        vs.options = {"level": "3", "g": "1", "slicecrc": "1", "slices": "4"}
        if not rgb:
            tags.apply(vs.codec_context)
        index = 0
        for chunk in stream.chunks():
            for vf in encode.encoder_frames(chunk, spec, (w, h), tags):
                if rgb and vf.format.name != spec["pix_fmt"]:
                    vf = vf.reformat(format=spec["pix_fmt"])
                if not rgb:
                    tags.apply(vf)
                vf.pts, vf.time_base = index, Fraction(1) / fps
                index += 1
                for packet in vs.encode(vf):
                    out.mux(packet)
        for packet in vs.encode(None):
            out.mux(packet)
        if index != info.frame_count:
            raise encode.EncodeError(f"the stream promised {info.frame_count} frames but gave {index}")
    except BaseException:
        out.close()
        tmp.unlink(missing_ok=True)
        raise
    out.close()
    os.replace(tmp, final)
    return final


def meta_of(path: str | os.PathLike) -> dict:
    """The record a segment carries (empty when the file is not a segment)."""
    with av.open(str(path)) as c:
        for k, v in c.metadata.items():
            if k.lower() == TAG:
                return json.loads(v)
    return {}


def count_frames(path: str | os.PathLike) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def read(paths: list, chunk_size: int, **info_changes) -> FrameStream:
    """The frames of ``paths`` in order as one stream of native frames (the planes as written),
    in chunks of ``chunk_size``; rate, size and colour from the segments themselves."""
    paths = [str(p) for p in paths]
    first = probe(paths[0])
    meta = meta_of(paths[0])
    total = sum(int(meta_of(p)["frames"]) for p in paths)
    info = StreamInfo(fps=Fraction(meta["fps"]), frame_count=total, width=first.width, height=first.height,
                      source=paths[0], color_range="tv", color_matrix=first.color_matrix, bit_depth=first.bit_depth,
                      transfer=first.transfer, chunk_size=int(chunk_size))
    info = info.set_extra("color_primaries", first.color_primaries).with_(**info_changes)

    def frames() -> Iterator:
        for p in paths:
            with av.open(p) as c:
                vs = c.streams.video[0]
                vs.thread_type = "AUTO"
                yield from c.decode(vs)

    def producer(_self, size: int) -> Iterator[Chunk]:
        conv = _Converter(first, (first.width, first.height), 0, False)
        batch, start = [], 0
        for fr in frames():
            batch.append(fr)
            if len(batch) == chunk_size:
                yield Chunk(start, None, None, native=NativeFrames(batch, conv))
                start, batch = start + len(batch), []
        if batch:
            yield Chunk(start, None, None, native=NativeFrames(batch, conv))

    from ..stream import fingerprint_of

    stats = [(p, os.stat(p).st_size) for p in paths]
    return FrameStream(info, producer, fingerprint_of("segments", stats), label="segments")
