"""Previews for the UI: a few frames as images, and the ``ui`` entries that show saved videos."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import torch

from .. import host
from ..stream import FrameStream


def pick_frames(stream: FrameStream, first: int, count: int, step: int) -> torch.Tensor:
    """Frames first, first+step, … (count of them), pulling only the chunks needed."""
    n = stream.info.frame_count
    if first >= n:
        raise ValueError(f"first_frame {first} is past the end of the stream ({n} frames)")
    wanted = [i for i in range(first, n, max(1, step))][:count]
    last = wanted[-1]
    got = []
    want = set(wanted)
    for chunk in stream.chunks():
        for i in range(len(chunk)):
            if chunk.start + i in want:
                got.append(chunk.frames[i])
        if chunk.stop > last:
            break
    return torch.stack(got)


def save_temp_images(images: torch.Tensor) -> list[dict]:
    """Write images as PNG into the temp folder; return ComfyUI ``ui.images`` entries."""
    import cv2

    folder = host.temp_dir()
    out = []
    for img in images:
        name = f"remaster_preview_{uuid.uuid4().hex[:12]}.png"
        arr = (img.clamp(0, 1).mul(255).round().to(torch.uint8).numpy())[..., ::-1]
        cv2.imwrite(str(folder / name), np.ascontiguousarray(arr))
        out.append({"filename": name, "subfolder": "", "type": "temp"})
    return out


def ui_entry(path: Path, fmt: str) -> dict:
    """A ``ui.videos`` entry for a saved file (subfolder relative to the output folder)."""
    path = Path(path)
    base = host.output_dir().resolve()
    try:
        rel = path.resolve().relative_to(base)
        subfolder = rel.parent.as_posix() if rel.parent.as_posix() != "." else ""
        kind = "output"
    except ValueError:
        subfolder, kind = str(path.parent), "path"
    return {"filename": path.name, "subfolder": subfolder, "type": kind, "format": fmt}


def video_input_path(video) -> str:
    """A file path for a core VIDEO value (writing in-memory sources to the temp folder)."""
    src = None
    for attr in ("get_stream_source", "_VideoFromFile__file"):
        if hasattr(video, attr):
            src = getattr(video, attr)
            src = src() if callable(src) else src
            break
    if isinstance(src, (str, os.PathLike)):
        return str(src)
    if src is not None and hasattr(src, "read"):
        path = host.temp_dir() / f"remaster_video_{uuid.uuid4().hex[:10]}.mp4"
        src.seek(0)
        with open(path, "wb") as f:
            f.write(src.read())
        return str(path)
    if hasattr(video, "save_to"):
        path = host.temp_dir() / f"remaster_video_{uuid.uuid4().hex[:10]}.mp4"
        video.save_to(str(path))
        return str(path)
    raise ValueError("this VIDEO value has no file behind it; save it with core Save Video first")
