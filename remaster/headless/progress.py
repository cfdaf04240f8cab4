"""One progress line for a whole run: the stage working now, frames done / total of the graph's
output, real frames per second and time left.

Every stage reports through :class:`remaster.host.Progress`; in a pulled stream the frames the
output node has written are the frames the whole graph has finished, so totals come from the
output node (labels starting with "Save") and the stage name from the latest other report.
Before the first frame is written the line says what is happening instead of a rate of 0.
"""
from __future__ import annotations

import sys
import time


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class RunProgress:
    """A progress listener (``host.add_progress_listener``) drawing one line on a terminal."""

    def __init__(self, stream=None, interval: float = 0.5, prefix: str = "") -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.prefix = prefix
        self.t0 = time.perf_counter()
        self.first = None  # (time, frames) at the first written frame
        self.done = 0
        self.total = 0
        self.stage = "starting"
        self._last = 0.0
        self._width = 0
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        if not self.tty:  # a log file: a line every 10 s, not a redraw
            self.interval = max(interval, 10.0)

    def __call__(self, info: dict) -> None:
        label = info.get("label") or ""
        now = time.perf_counter()
        if label.startswith("Save"):
            self.total = max(self.total, int(info.get("total") or 0))
            self.done = int(info.get("done") or 0)
            if self.first is None and self.done > 0:
                self.first = (now, self.done)
            if self.stage == "starting":
                self.stage = "encoding"
        elif not info.get("closed") and not info.get("opened"):
            self.stage = label
        if info.get("closed") and label.startswith("Save"):
            self.draw(now, final=True)
        elif now - self._last >= self.interval:
            self.draw(now)

    def line(self, now: float, final: bool = False) -> str:
        elapsed = now - self.t0
        if final:
            return (f"{self.prefix}done: {self.done} frames in {_clock(elapsed)} "
                    f"({self.done / max(1e-6, elapsed):.2f} fr/s overall)")
        if self.first is None or self.done <= self.first[1]:
            return f"{self.prefix}{self.stage[:28]:<28} {self.done}/{self.total or '?'} frames  " \
                   f"(warming up: loading models, first frames) {_clock(elapsed)}"
        rate = (self.done - self.first[1]) / max(1e-6, now - self.first[0])
        left = (self.total - self.done) / rate if rate > 0 and self.total else 0.0
        return (f"{self.prefix}{self.stage[:28]:<28} {self.done}/{self.total} frames  {rate:.2f} fr/s  "
                f"elapsed {_clock(elapsed)}  left {_clock(left)}")

    def draw(self, now: float, final: bool = False) -> None:
        self._last = now
        text = self.line(now, final)
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad + ("\n" if final else ""))
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._width:
            self.stream.write("\n")
            self.stream.flush()
