"""The film and tape stages' view of a centred window, served by the stream's temporal API.

Each restoration stage repairs frame ``i`` from frames ``i-r .. i+r`` of the same shot: the
frames come from :func:`remaster.temporal.iter_windows` (one pass, at most ``2r+1`` frames held,
cut-aware) and the stage declares ``Temporal(behind=r, ahead=r, cut_aware=True)``, so a range of
frames renders on its own. What this module adds for those stages:

* ``prepare(item, first_of_shot)`` runs once per frame, in order, when the frame first enters a
  window (a grey thumbnail for optical flow, a motion estimate against the previous frame...);
  its result travels with the frame as ``item.aux`` for every window that holds it.
* companion streams (a protect mask, a damage mask, a reference clip) of the same size and
  length, checked when the graph is built (:func:`check_companion`) and read in step, one pass;
  their frame and mask for frame ``i`` are ``item.side[name]``.
* a ``protect`` companion: its mask (or, without one, its brightness) marks pixels the stage must
  leave as they came (``item.protect``); they are put back after the stage's work.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import host
from ..stream import Chunk, FrameStream, Temporal, source_span
from ..temporal import iter_windows
from .scenes import LazyCuts

__all__ = ["Item", "Window", "as_mask", "centred", "check_companion"]


@dataclass
class Item:
    index: int
    frame: torch.Tensor  # [H,W,3]
    mask: torch.Tensor | None
    aux: dict = field(default_factory=dict)
    side: dict = field(default_factory=dict)  # companion name -> (frame [H,W,3], mask [H,W] or None)
    protect: np.ndarray | None = None  # [H,W] bool: pixels never to change


@dataclass
class Window:
    """Frame ``index`` with its same-shot neighbours: ``items`` in time order, ``centre`` its position."""

    items: list
    centre: int

    @property
    def item(self) -> Item:
        return self.items[self.centre]

    @property
    def index(self) -> int:
        return self.item.index

    def neighbours(self, radius: int | None = None) -> list:
        """Other items within ``radius`` frames, nearest first (previous before next at equal distance)."""
        out = [(abs(k - self.centre), k < self.centre, it) for k, it in enumerate(self.items) if k != self.centre]
        if radius is not None:
            out = [o for o in out if o[0] <= radius]
        out.sort(key=lambda o: (o[0], not o[1]))
        return [o[2] for o in out]


def check_companion(stream: FrameStream, other: FrameStream | None, what: str) -> None:
    """A second stream read in step with ``stream`` (a mask, a reference clip) must have the same
    size and frame count; raise a one-line error naming the input before any work is done."""
    if other is None:
        return
    a, b = stream.info, other.info
    if (a.width, a.height) != (b.width, b.height):
        raise ValueError(f"{what} is {b.width}x{b.height} but the frames are {a.width}x{a.height}: "
                         f"load or resize it to the same size")
    if a.frame_count != b.frame_count:
        raise ValueError(f"{what} has {b.frame_count} frames but the frames have {a.frame_count}: "
                         f"use the same clip range (start, end, every_nth)")


def _in_step(other: FrameStream, chunk_size: int, span: tuple) -> Iterator[tuple]:
    for ch in other.chunks(chunk_size, span[0], span[1]):
        for k in range(len(ch)):
            yield ch.start + k, ch.frames[k], None if ch.mask is None else ch.mask[k]


LABELS = {"protect": "protect mask", "damage": "damage mask", "reference": "reference clip"}


def as_mask(frame: torch.Tensor, mask: torch.Tensor | None) -> np.ndarray:
    """A companion frame as a yes/no mask: its mask, or without one its brightness, above 0.5."""
    return (mask if mask is not None else frame.mean(-1)).numpy() > 0.5


def centred(stream: FrameStream, name: str, params: dict, radius: int,
            make: Callable[[], Any], info=None, companions: dict | None = None) -> FrameStream:
    """A stage over centred windows of ``2*radius+1`` frames. ``make()`` is called once per pass
    and returns the worker: ``worker.prepare(item, first_of_shot) -> dict`` (or None) and
    ``worker.process(window) -> (frame [H,W,3], mask [H,W] or None)`` for the window's centre.
    ``companions``: ``{name: stream or None}``, each named in the error when its size or length
    differs (see :data:`LABELS`); ``protect`` is applied here."""
    comps = {k: v for k, v in (companions or {}).items() if v is not None}
    for k, v in comps.items():
        check_companion(stream, v, f"the {LABELS.get(k, k)}")
    r = int(radius)

    def producer(up: Any, chunk_size: int) -> Iterator[Chunk]:
        worker = make()
        cuts = LazyCuts(up)
        span = source_span(up)
        readers = {k: _in_step(v, chunk_size, span) for k, v in comps.items()}
        cache: dict = {}
        pending: list = []
        for idx, frames, masks, centre in iter_windows(up, chunk_size, r, cuts):
            host.check_interrupt()
            first_index = idx - centre
            items = []
            for k, f in enumerate(frames):
                j = first_index + k
                if j not in cache:  # frames arrive in order: each is prepared once, when first seen
                    it = Item(j, f, None if masks is None else masks[k])
                    for cname, rd in readers.items():
                        ci, cf, cm = next(rd)
                        if ci != j:
                            raise RuntimeError(f"{cname} out of step: got frame {ci}, expected {j}")
                        it.side[cname] = (cf, cm)
                    if "protect" in it.side:
                        it.protect = as_mask(*it.side["protect"])
                    it.aux.update(worker.prepare(it, j == span[0] or j in cuts) or {})
                    cache[j] = it
                items.append(cache[j])
            for j in [j for j in cache if j < idx - r]:
                del cache[j]
            it = items[centre]
            f, m = worker.process(Window(items, centre))
            if it.protect is not None and f.shape == it.frame.shape:
                f = torch.where(torch.from_numpy(it.protect)[..., None], it.frame, f)
            pending.append((idx, f, m))
            if len(pending) >= chunk_size:
                yield _stack(pending)
                pending = []
        if pending:
            yield _stack(pending)

    params = dict(params, radius=r, **{k: v.fingerprint for k, v in comps.items()})
    return stream.derive(name, params, producer, info, temporal=Temporal(behind=r, ahead=r, cut_aware=True))


def _stack(items: list) -> Chunk:
    frames = torch.stack([it[1] for it in items])
    masks = [it[2] for it in items]
    mask = torch.stack(masks) if all(m is not None for m in masks) else None
    return Chunk(items[0][0], frames, mask)
