"""The demonstration behind ``python -m remaster demo``: a clean clip made poor the way phone
recordings in a dim room are (half the size, under-exposed with a colour cast, sensor noise,
heavy compression), using the pack's own decoder and encoder, and a before/after sheet."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..media import decode, encode
from ..stream import Chunk


def degrade(chunk: Chunk, seed: int = 7) -> Chunk:
    """Dim (×0.45 with a gamma lift of the shadows lost), a warm cast, and per-frame noise."""
    x = chunk.frames
    g = torch.Generator().manual_seed(seed + chunk.start)
    cast = torch.tensor([1.0, 0.88, 0.7])
    dim = (x.clamp(0, 1) ** 1.25) * 0.45 * cast
    noise = torch.randn(x.shape, generator=g) * 0.035
    return chunk.with_(frames=(dim + noise).clamp(0, 1))


def make_poor_clip(src: Path, dst: Path, seconds: float = 3.0) -> Path:
    info = decode.open_video(src).info
    stream = decode.open_video(src, end_time=min(seconds, info.duration), max_side=max(info.width, info.height) // 2)
    poor = stream.map("demo_degrade", {"seed": 7}, lambda: degrade)
    tmp = dst.with_name(f".tmp-{dst.name}")
    tmp.unlink(missing_ok=True)
    encode.save_video(poor, fmt="h264_mp4", crf=32, speed="fast", audio="stream", output_path=str(tmp), label="Degrade")
    os.replace(tmp, dst)
    return dst


def before_after(poor: Path, enhanced: Path, dst: Path) -> Path:
    """The middle frame of both, the poor one scaled up (nearest) to the enhanced size, side by side."""
    import cv2

    def middle(path):
        s = decode.open_video(path)
        n = s.info.frame_count // 2
        return (s.read(n, n + 1).frames[0].numpy() * 255 + 0.5).astype(np.uint8)

    a, b = middle(poor), middle(enhanced)
    a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_NEAREST)
    sheet = np.concatenate([a, np.full((b.shape[0], 8, 3), 255, np.uint8), b], axis=1)
    cv2.imwrite(str(dst), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return dst
