"""Render a stream once to a lossless file in the temp folder, keyed by its fingerprint.

ComfyUI caches node *outputs*, but a lazy stream's output is only a recipe: changing a later
node would recompute every earlier stage. The cache materialises the recipe: FFV1 in MKV at
14 bits per channel (error < 1e-4), the mask in a second file, the metadata in a JSON sidecar.
A cached stream has the same fingerprint as its upstream, so it is interchangeable with it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional

import av
import numpy as np
import torch

from .. import host
from ..stream import AudioRef, Chunk, FrameStream, StreamInfo

_BITS = 14
_MAX = (1 << _BITS) - 1


def cache_dir() -> Path:
    d = host.temp_dir() / "remaster_cache"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _paths(fp: str) -> tuple[Path, Path, Path]:
    d = cache_dir()
    return d / f"{fp}.mkv", d / f"{fp}.mask.mkv", d / f"{fp}.json"


def _info_to_json(info: StreamInfo) -> dict:
    d = dataclasses.asdict(info)
    d["fps"] = str(info.fps)
    d["audio"] = dataclasses.asdict(info.audio) if info.audio else None
    d["scene_cuts"] = list(info.scene_cuts) if info.scene_cuts is not None else None
    d["extra"] = [list(kv) for kv in info.extra if _jsonable(kv[1])]
    return d


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except TypeError:
        return False


def _info_from_json(d: dict) -> StreamInfo:
    d = dict(d)
    d["fps"] = Fraction(d["fps"])
    d["audio"] = AudioRef(**d["audio"]) if d.get("audio") else None
    d["scene_cuts"] = tuple(d["scene_cuts"]) if d.get("scene_cuts") is not None else None
    d["extra"] = tuple(tuple(kv) for kv in d.get("extra", []))
    return StreamInfo(**d)


def _open_writer(path: Path, info: StreamInfo, pix_fmt: str):
    out = av.open(str(path), "w", format="matroska")
    s = out.add_stream("ffv1", rate=info.fps)
    s.width, s.height, s.pix_fmt = info.width, info.height, pix_fmt
    s.options = {"level": "3", "g": "1"}
    return out, s


def is_cached(stream: FrameStream) -> bool:
    return _paths(stream.fingerprint)[2].exists()


def cached(stream: FrameStream, label: str = "Cache") -> FrameStream:
    """The stream read back from its cache file, rendering it first if needed."""
    video, mask_path, meta = _paths(stream.fingerprint)
    if not meta.exists():
        _render(stream, video, mask_path, meta, label)
    info = _info_from_json(json.loads(meta.read_text()))

    def producer(_self: FrameStream, size: int) -> Iterator[Chunk]:
        yield from _read(video, mask_path if info.has_mask else None, info, size)

    return FrameStream(info, producer, stream.fingerprint, label="cache")


def _render(stream: FrameStream, video: Path, mask_path: Path, meta: Path, label: str) -> None:
    info = stream.info
    tag = uuid.uuid4().hex[:8]
    tmp_v = video.with_name(f".tmp-{tag}-{video.name}")
    tmp_m = mask_path.with_name(f".tmp-{tag}-{mask_path.name}")
    progress = host.Progress(info.frame_count, label)
    out_v = out_m = None
    try:
        out_v, sv = _open_writer(tmp_v, info, "gbrp14le")
        if info.has_mask:
            out_m, sm = _open_writer(tmp_m, info, "gray16le")
        n = 0
        for chunk in stream.chunks():
            rgb = chunk.frames.clamp(0, 1).mul(_MAX).round_().to(torch.int32).numpy().astype(np.uint16)
            rgb = rgb << (16 - _BITS)  # rgb48 holds the 14-bit value in the top bits
            for i in range(rgb.shape[0]):
                f = av.VideoFrame.from_ndarray(rgb[i], format="rgb48le").reformat(format="gbrp14le")
                f.pts = n + i
                for p in sv.encode(f):
                    out_v.mux(p)
            if out_m is not None:
                m = chunk.mask if chunk.mask is not None else torch.ones(chunk.frames.shape[:3])
                m16 = m.clamp(0, 1).mul(65535).round_().to(torch.int32).numpy().astype(np.uint16)
                for i in range(m16.shape[0]):
                    f = av.VideoFrame.from_ndarray(m16[i], format="gray16le")
                    f.pts = n + i
                    for p in sm.encode(f):
                        out_m.mux(p)
            n += len(chunk)
            progress.update(len(chunk))
        for p in sv.encode(None):
            out_v.mux(p)
        out_v.close()
        out_v = None
        if out_m is not None:
            for p in sm.encode(None):
                out_m.mux(p)
            out_m.close()
            out_m = None
            os.replace(tmp_m, mask_path)
        os.replace(tmp_v, video)
        tmp_meta = meta.with_name(f".tmp-{tag}-{meta.name}")
        tmp_meta.write_text(json.dumps(_info_to_json(info)))
        os.replace(tmp_meta, meta)  # the sidecar appears last: it marks the entry complete
    except BaseException:
        for o in (out_v, out_m):
            if o is not None:
                try:
                    o.close()
                except Exception:
                    pass
        for p in (tmp_v, tmp_m):
            p.unlink(missing_ok=True)
        raise
    finally:
        progress.close()


def _read(video: Path, mask_path, info: StreamInfo, size: int) -> Iterator[Chunk]:
    cv = av.open(str(video))
    cm = av.open(str(mask_path)) if mask_path else None
    try:
        dv = cv.decode(video=0)
        dm = cm.decode(video=0) if cm else None
        start = 0
        while start < info.frame_count:
            n = min(size, info.frame_count - start)
            frames, masks = [], []
            for _ in range(n):
                f = next(dv)
                arr = f.reformat(format="rgb48le").to_ndarray() >> (16 - _BITS)
                frames.append(torch.from_numpy(arr.astype(np.float32) / _MAX))
                if dm is not None:
                    m = next(dm).to_ndarray()
                    masks.append(torch.from_numpy(m.astype(np.float32) / 65535.0))
            yield Chunk(start, torch.stack(frames), torch.stack(masks) if masks else None)
            start += n
    finally:
        cv.close()
        if cm:
            cm.close()


def clear() -> int:
    """Delete every cache entry; returns bytes freed."""
    d = cache_dir()
    freed = sum(p.stat().st_size for p in d.iterdir() if p.is_file())
    shutil.rmtree(d, ignore_errors=True)
    return freed


def keep_shared(stream: FrameStream, prompt: Optional[dict]) -> None:
    """Before an output node pulls ``stream``: every costly stream in its chain that the API
    ``prompt`` feeds to more than one node is kept (:meth:`FrameStream.keep`), so a graph that
    fans out (a result saved and also compared) runs each stage once."""
    if not prompt:
        return
    consumers: dict = {}
    for node in prompt.values():
        for v in (node.get("inputs") or {}).values():
            if isinstance(v, list) and len(v) == 2 and isinstance(v[0], str):
                consumers[str(v[0])] = consumers.get(str(v[0]), 0) + 1
    seen: set = set()
    s: Optional[FrameStream] = stream
    while s is not None:
        nid = s.node_id
        if nid is not None and nid not in seen:
            seen.add(nid)  # the first stream met of a node is that node's output
            if consumers.get(nid, 0) > 1 and not s.replayable:
                s.keep()
        s = s.upstream
