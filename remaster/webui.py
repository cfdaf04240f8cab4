"""``ui`` payloads for the web editors (web/js), built from engine results.

* :func:`candidates_ui` — the keyframe picker's gallery. The Select Candidates node returns
  ``{"ui": {"remaster_candidates": candidates_ui(selection)}, "result": ...}``; the picker writes
  the user's choices into the node's ``picks`` widget in the node's own format (comma-separated in
  keyframe order: a candidate number, ``drop`` or ``auto``).
"""
from __future__ import annotations

import uuid

import numpy as np

from . import host

THUMB_SIDE = 256


def _save_thumb(img, side: int) -> dict:
    """uint8/float [h,w,3] RGB → PNG in the temp folder (longer side ≤ side); a /view entry."""
    import cv2

    a = img.numpy() if hasattr(img, "numpy") else np.asarray(img)
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    h, w = a.shape[:2]
    s = min(1.0, side / max(h, w, 1))
    if s < 1.0:
        a = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    name = f"remaster_cand_{uuid.uuid4().hex[:12]}.png"
    cv2.imwrite(str(host.temp_dir() / name), np.ascontiguousarray(a[..., ::-1]))
    return {"filename": name, "subfolder": "", "type": "temp"}


def candidates_ui(selection, side: int = THUMB_SIDE) -> list[dict]:
    """One entry per keyframe, in keyframe order::

        {"keyframe": frame index, "frames": [first, last] of its group, "pick": chosen number or
         "drop", "manual": bool, "auto": the automatic choice, "scores": [...] (lower is better),
         "source": /view entry of the original crop or None,
         "candidates": [/view entries of the candidate crops]}

    ``selection`` is an inpainting selection (``.candidates.edits`` with ``index``, ``source`` and
    ``candidates`` [count,h,w,3]; ``.candidates.plan.groups``; ``.picks``, ``.scores``, ``.manual``).
    """
    edits = selection.candidates.edits
    groups = list(getattr(selection.candidates.plan, "groups", []) or [])
    out = []
    for g, e in enumerate(edits):
        scores = [round(float(s), 5) for s in (selection.scores[g] if g < len(selection.scores) else [])]
        pick = selection.picks[g] if g < len(selection.picks) else None
        manual = bool(selection.manual[g]) if g < len(selection.manual) else False
        auto = pick if (not manual and pick is not None) else (int(np.argmin(scores)) if scores else None)
        start, stop = groups[g] if g < len(groups) else (e.index, e.index + 1)
        cands = [] if e.candidates is None else [_save_thumb(c, side) for c in e.candidates]
        out.append({
            "keyframe": int(e.index), "frames": [int(start), int(stop) - 1],
            "pick": "drop" if pick is None else int(pick), "manual": manual, "auto": auto, "scores": scores,
            "source": None if getattr(e, "source", None) is None else _save_thumb(e.source, side),
            "candidates": cands,
        })
    return out
