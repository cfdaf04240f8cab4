"""The data types the frame stream carries: chunks of frames, stream metadata, audio references,
and the helpers to size chunks and fingerprint chains. Re-exported by :mod:`remaster.stream`."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Optional

import torch

@dataclass(frozen=True)
class AudioRef:
    """A reference to audio in a file: ``duration`` seconds starting at ``start`` (source time).

    ``offset`` is where, in the output's timeline, that audio starts (seconds). Audio is never
    decoded until an encoder muxes it.
    """

    path: str
    stream_index: int = 0
    start: float = 0.0
    duration: Optional[float] = None
    offset: float = 0.0
    sample_rate: int = 0
    channels: int = 0
    codec: str = ""

    def trimmed(self, start: float, duration: Optional[float]) -> "AudioRef":
        """The part of this audio from ``start`` seconds (relative to this ref) for ``duration``."""
        new_start = self.start + max(0.0, start)
        if self.duration is not None:
            remaining = max(0.0, self.duration - max(0.0, start))
            duration = remaining if duration is None else min(duration, remaining)
        return replace(self, start=new_start, duration=duration)


@dataclass(frozen=True)
class StreamInfo:
    """Metadata carried with a stream. ``fps`` is exact; frame ``i`` is shown at ``i / fps``."""

    fps: Fraction
    frame_count: int
    width: int
    height: int
    source: str = ""
    color_range: str = "tv"  # "tv" (limited) or "pc" (full) of the *source*; frames are always full-range RGB
    color_matrix: str = "bt709"  # matrix the source was decoded with
    bit_depth: int = 8
    has_mask: bool = False
    audio: Optional[AudioRef] = None
    scene_cuts: Optional[tuple] = None  # frame indices where a new shot starts (None = not analysed)
    chunk_size: int = 0  # 0 = automatic
    extra: tuple = ()  # free-form (key, value) pairs for stages that need to pass facts along

    @property
    def duration(self) -> float:
        return float(self.frame_count / self.fps) if self.fps else 0.0

    def with_(self, **changes: Any) -> "StreamInfo":
        if "fps" in changes and changes["fps"] is not None:
            changes["fps"] = Fraction(changes["fps"])
        return replace(self, **changes)

    def get_extra(self, key: str, default: Any = None) -> Any:
        for k, v in self.extra:
            if k == key:
                return v
        return default

    def set_extra(self, key: str, value: Any) -> "StreamInfo":
        items = tuple((k, v) for k, v in self.extra if k != key) + ((key, value),)
        return replace(self, extra=items)

    def describe(self) -> dict:
        return {
            "fps": str(self.fps),
            "frame_count": self.frame_count,
            "width": self.width,
            "height": self.height,
            "duration": round(self.duration, 6),
            "source": self.source,
            "audio": bool(self.audio),
            "mask": self.has_mask,
        }


@dataclass
class Chunk:
    """A run of consecutive frames. ``start`` is the index of the first frame in its stream."""

    start: int
    frames: torch.Tensor
    mask: Optional[torch.Tensor] = None

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(f"chunk frames must be [n,H,W,3], got {tuple(self.frames.shape)}")
        if self.mask is not None and tuple(self.mask.shape) != tuple(self.frames.shape[:3]):
            raise ValueError(
                f"chunk mask {tuple(self.mask.shape)} does not match frames {tuple(self.frames.shape)}"
            )

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def stop(self) -> int:
        return self.start + len(self)

    def with_(self, **changes: Any) -> "Chunk":
        return dataclasses.replace(self, **changes)


def default_chunk_size(width: int, height: int, budget_bytes: Optional[int] = None) -> int:
    """Frames per chunk so that one chunk of float32 RGB (+mask) stays within a memory budget.

    The budget is ``REMASTER_CHUNK_MB`` megabytes if set, else 1/16 of available memory capped at
    256 MB. Several chunks are alive at once across a chain of stages, so the budget is a fraction.
    """
    env = os.environ.get("REMASTER_CHUNK_FRAMES")
    if env:
        return max(1, int(env))
    if budget_bytes is None:
        mb = os.environ.get("REMASTER_CHUNK_MB")
        if mb:
            budget_bytes = int(float(mb) * 2**20)
        else:
            budget_bytes = min(256 * 2**20, _available_memory() // 16)
    per_frame = max(1, width * height * 4 * 4)
    return int(max(1, min(64, budget_bytes // per_frame)))


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency, this is belt and braces
        return 4 * 2**30


def fingerprint_of(*parts: Any) -> str:
    """A stable short hash of JSON-able parts (dict order does not matter)."""
    blob = json.dumps(parts, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _json_default(o: Any) -> Any:
    if isinstance(o, Fraction):
        return str(o)
    if isinstance(o, torch.Tensor):
        t = o.detach().cpu().contiguous()
        return {"tensor": hashlib.sha256(t.numpy().tobytes()).hexdigest(), "shape": list(t.shape)}
    if isinstance(o, (set, frozenset)):
        return sorted(o)
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if hasattr(o, "fingerprint") and isinstance(getattr(o, "fingerprint"), str):
        return o.fingerprint
    return repr(o)
