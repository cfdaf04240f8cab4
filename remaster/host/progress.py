"""Progress and interrupt: each lazy stage advances its own node's bar; listeners (the CLI's
progress line, the web UI's progress text) see every update; ComfyUI's cancel raises Interrupted."""
from __future__ import annotations

import sys
import time
from typing import Callable, Optional

from .comfy import _comfy_utils, _mm, executing_node_id


class Interrupted(Exception):
    """Raised when the user stops a run (ComfyUI's cancel button, or Ctrl+C in the CLI)."""


_interrupt_flag = {"set": False}
_progress_listeners: list[Callable[[dict], None]] = []


def request_interrupt() -> None:
    _interrupt_flag["set"] = True


def clear_interrupt() -> None:
    _interrupt_flag["set"] = False


def check_interrupt() -> None:
    """Raise :class:`Interrupted` (or ComfyUI's own exception) if the user asked to stop."""
    if _mm is not None:
        _mm.throw_exception_if_processing_interrupted()
    if _interrupt_flag["set"]:
        _interrupt_flag["set"] = False
        raise Interrupted("run interrupted")


def _is_interrupt(exc: BaseException) -> bool:
    kind = getattr(_mm, "InterruptProcessingException", None) if _mm is not None else None
    return isinstance(exc, Interrupted) or (kind is not None and isinstance(exc, kind))


def add_progress_listener(fn: Callable[[dict], None]) -> None:
    _progress_listeners.append(fn)


def remove_progress_listener(fn: Callable[[dict], None]) -> None:
    if fn in _progress_listeners:
        _progress_listeners.remove(fn)


_stage = {"node": None}


def enter_stage(node_id: Optional[str]) -> Optional[str]:
    """Mark the lazy stage built by ``node_id`` as the one computing now (the frame stream calls
    this around each step of a stage); returns the previous mark for :func:`leave_stage`."""
    prev = _stage["node"]
    if node_id is not None:
        _stage["node"] = node_id
    return prev


def leave_stage(prev: Optional[str]) -> None:
    _stage["node"] = prev


def current_node_id() -> Optional[str]:
    """The node whose work is running now: the lazy stage being pulled, else the executing node."""
    return _stage["node"] or executing_node_id()


def _comfy_bar(total: int, node_id: Optional[str]):
    if _comfy_utils is None:
        return None
    try:
        try:
            return _comfy_utils.ProgressBar(total, node_id=node_id)
        except TypeError:  # ComfyUI before per-node bars
            return _comfy_utils.ProgressBar(total)
    except Exception:
        return None


class StageBar:
    """A lazy stage's own ComfyUI progress bar (frames it has produced in this pass); no-op
    outside ComfyUI. Updates are throttled to a few per second."""

    def __init__(self, node_id: Optional[str], total: int) -> None:
        self.total, self.done, self._last = max(1, int(total)), 0, 0.0
        self._bar = _comfy_bar(self.total, node_id) if node_id is not None else None

    def update(self, n: int) -> None:
        self.done += n
        if self._bar is None:
            return
        now = time.perf_counter()
        if now - self._last >= 0.1 or self.done >= self.total:
            self._last = now
            try:
                self._bar.update_absolute(min(self.done, self.total), self.total)
            except Exception as exc:
                if _is_interrupt(exc):  # ComfyUI's bar hook raises the stop (and clears the flag)
                    raise
                self._bar = None


class Progress:
    """Frames done / total, with frames/s and time left; ComfyUI's bar or a terminal line. The
    bar is the node's whose stage is running (``node_id``, else the lazy stage being pulled)."""

    def __init__(self, total: int, label: str = "", node_id: Optional[str] = None) -> None:
        self.total = max(0, int(total))
        self.done = 0
        self.label = label
        self.node_id = node_id if node_id is not None else current_node_id()
        self.t0 = time.perf_counter()
        self._last_print = 0.0
        self._bar = _comfy_bar(self.total or 1, self.node_id)
        for fn in list(_progress_listeners):  # totals are known before the first frame
            fn({"label": self.label, "node": self.node_id, "done": 0, "total": self.total, "fps": 0.0, "eta": 0.0,
                "opened": True})

    def update(self, n: int = 1) -> None:
        self.done += n
        elapsed = max(1e-9, time.perf_counter() - self.t0)
        fps = self.done / elapsed
        left = (self.total - self.done) / fps if fps > 0 and self.total else 0.0
        info = {
            "label": self.label,
            "node": self.node_id,
            "done": self.done,
            "total": self.total,
            "fps": fps,
            "eta": left,
        }
        if self._bar is not None:
            self._bar.update_absolute(min(self.done, self.total or self.done), self.total or None)
        for fn in list(_progress_listeners):
            fn(info)
        check_interrupt()

    def close(self) -> None:
        for fn in list(_progress_listeners):
            fn({"label": self.label, "node": self.node_id, "done": self.done, "total": self.total,
                "fps": 0.0, "eta": 0.0, "closed": True})


def terminal_progress_listener(stream=sys.stderr) -> Callable[[dict], None]:
    """A listener that draws a one-line progress bar (used by ``python -m remaster run``)."""
    state = {"last": 0.0}

    def listener(info: dict) -> None:
        now = time.perf_counter()
        if not info.get("closed") and now - state["last"] < 0.2 and info["done"] != info["total"]:
            return
        state["last"] = now
        total = info["total"] or 0
        frac = min(1.0, info["done"] / total) if total else 0.0
        bar = "#" * int(frac * 30)
        line = (
            f"\r{info['label'][:28]:<28} [{bar:<30}] {info['done']}/{total} "
            f"{info['fps']:.1f} fr/s eta {info['eta']:.0f}s"
        )
        stream.write(line + ("\n" if info.get("closed") else ""))
        stream.flush()

    return listener
