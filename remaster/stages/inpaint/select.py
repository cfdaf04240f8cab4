"""One candidate per keyframe: the best agreement with the unmasked surroundings (a ring just
outside the mask) plus agreement with the previous keyframe's pick; manual picks override it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
import torch

from ...stream import fingerprint_of
from ..keyframes import KeyframePlan
from .candidates import InpaintCandidates
from .geometry import to_float


@dataclass
class InpaintSelection:
    candidates: InpaintCandidates
    picks: list  # per keyframe: candidate number, or None = dropped (group stays original)
    scores: list = field(default_factory=list)  # per keyframe: list of scores (lower is better)
    manual: list = field(default_factory=list)  # per keyframe: True where the user chose

    @property
    def plan(self) -> KeyframePlan:
        return self.candidates.plan

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("select", self.candidates.fingerprint, self.picks)

    def edited(self, g: int) -> Optional[torch.Tensor]:
        """The chosen candidate of keyframe ``g`` as float ``[h,w,3]`` (None if dropped/empty)."""
        e = self.candidates.edits[g]
        p = self.picks[g]
        if p is None or e.candidates is None:
            return None
        return to_float(e.candidates[p])

    def to_json(self) -> list:
        return [
            {"keyframe": e.index, "pick": "drop" if p is None else p, "manual": m,
             "scores": [round(float(s), 5) for s in sc], "box": list(e.box) if e.box else None,
             "seconds": e.seconds}
            for e, p, sc, m in zip(self.candidates.edits, self.picks, self.scores, self.manual)
        ]

    def __repr__(self) -> str:
        return f"<InpaintSelection picks={self.picks}>"


def parse_picks(text: str, n_keyframes: int) -> list:
    """``"auto, 2, drop"`` → ``["auto", 2, None]`` padded with "auto" to ``n_keyframes``.

    Entries are in keyframe order: a candidate number (0-based), ``drop`` (keep that group
    original) or ``auto``/empty.
    """
    out: list = []
    for raw in (text or "").replace(";", ",").split(","):
        tok = raw.strip().lower()
        if tok in ("", "auto", "a", "-"):
            out.append("auto")
        elif tok in ("drop", "d", "x", "none", "original"):
            out.append(None)
        elif tok.isdigit():
            out.append(int(tok))
        else:
            raise ValueError(f"select: cannot read pick '{raw.strip()}'; use a candidate number, 'drop' or 'auto', "
                             "separated by commas in keyframe order (e.g. 'auto, 2, drop')")
    text_empty = not (text or "").strip()
    if text_empty:
        out = []
    if len(out) > n_keyframes:
        raise ValueError(f"select: {len(out)} picks given but there are only {n_keyframes} keyframes")
    return out + ["auto"] * (n_keyframes - len(out))


def _ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = (mask.numpy() > 0.5).astype(np.uint8)
    return torch.from_numpy((cv2.dilate(m, k) > 0) & (m == 0))


def _stats(img: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    sel = img[m]
    if sel.numel() == 0:
        return torch.zeros(6)
    return torch.cat([sel.mean(0), sel.std(0, unbiased=False)])


def select_candidates(cands: InpaintCandidates, picks: str = "", neighbour_weight: float = 0.5) -> InpaintSelection:
    """Choose a candidate per keyframe (see the module docstring); ``picks`` overrides."""
    edits = cands.edits
    manual_in = parse_picks(picks, len(edits))
    chosen: list = []
    all_scores: list = []
    manual: list = []
    prev_stats = None
    for g, e in enumerate(edits):
        if e.candidates is None:
            chosen.append(None if manual_in[g] is None else 0)
            all_scores.append([])
            manual.append(manual_in[g] != "auto")
            continue
        src, m = to_float(e.source), e.mask > 0.5
        ring = _ring(e.mask, max(2, min(src.shape[:2]) // 32))
        scores = []
        for c in range(e.candidates.shape[0]):
            img = to_float(e.candidates[c])
            s = float((img[ring] - src[ring]).abs().mean()) if ring.any() else 0.0
            st = _stats(img, m)
            if prev_stats is not None:
                s += neighbour_weight * float((st - prev_stats).abs().mean())
            scores.append(s)
        want = manual_in[g]
        if want == "auto":
            pick = int(np.argmin(scores))
        elif want is None:
            pick = None
        else:
            if not 0 <= want < len(scores):
                raise ValueError(f"select: keyframe {g} (frame {e.index}) has candidates 0..{len(scores) - 1}, "
                                 f"pick {want} does not exist")
            pick = want
        chosen.append(pick)
        all_scores.append(scores)
        manual.append(want != "auto")
        if pick is not None:
            prev_stats = _stats(to_float(e.candidates[pick]), m)
    return InpaintSelection(cands, chosen, all_scores, manual)
