"""Contact sheet for docs/inpaint.md: a real clip before/after a deliberately simple edit (the
shirt recoloured red by a stand-in edit function through the whole keyframe pipeline:
Keyframes → Inpaint Keyframes (CallableInpaint) → Select → Propagate).

    python scripts/inpaint_contact_sheet.py [--out docs/img/inpaint_juggle_shirt.png]

The shirt mask is a stand-in too (a colour key for the grey-blue shirt, largest blob, per frame),
so the sheet runs without segmentation weights. Also prints the keyframes and the run time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import inpaint as inp  # noqa: E402
from remaster.stages.inpaint.keyframes import analyse_keyframes  # noqa: E402
from remaster.stream import Chunk  # noqa: E402


def shirt_mask(frame: np.ndarray) -> np.ndarray:
    """Grey-blue, low-saturation pixels in the upper body band; the largest blob, closed."""
    H, W = frame.shape[:2]
    hsv = cv2.cvtColor((frame * 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
    h, s, v = hsv[..., 0].astype(int), hsv[..., 1].astype(int), hsv[..., 2].astype(int)
    m = (s > 15) & (s < 140) & (v > 50) & (v < 200) & (h > 95) & (h < 125)
    band = np.zeros_like(m)
    band[int(0.12 * H): int(0.55 * H)] = True
    m = (m & band).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(m)
    if n <= 1:
        return np.zeros((H, W), np.float32)
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    m = (lab == big).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    return m.astype(np.float32)


def red_shirt(image, mask, seed):
    """Stand-in edit: keep the shading, make the fabric red."""
    img = image[0]
    lum = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    red = torch.stack([lum * 1.9, lum * 0.35, lum * 0.3], -1).clamp(0, 1)
    m = mask[0, ..., None]
    return img * (1 - m) + red * m


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs/img/inpaint_juggle_shirt.png"))
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    shared = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))
    src = open_video(shared / "clips/juggle_720p24.mp4", max_side=640, end_time=args.seconds)

    def producer(up, size):
        for ch in up.chunks(size):
            ms = torch.from_numpy(np.stack([shirt_mask(f) for f in ch.frames.numpy()]))
            yield Chunk(ch.start, ch.frames, ms)

    masked = src.derive("shirt_mask", {}, producer, src.info.with_(has_mask=True))
    t0 = time.perf_counter()
    plan = analyse_keyframes(masked)
    cands = inp.inpaint_keyframes(masked, plan, inp.CallableInpaint(red_shirt, "red_shirt"), count=1, resolution=512)
    sel = inp.select_candidates(cands)
    out = inp.propagate(masked, sel)
    got = out.read()
    print(f"{plan.frame_count} frames, keyframes {plan.keyframes}, {time.perf_counter() - t0:.1f} s")
    ref = src.read()
    n = plan.frame_count
    picks = [int(round(x)) for x in np.linspace(0, n - 1, 4)]
    rows = []
    for i in picks:
        a = (ref.frames[i].numpy() * 255).astype(np.uint8)
        b = (got.frames[i].numpy() * 255).astype(np.uint8)
        row = np.concatenate([a, np.full((a.shape[0], 6, 3), 255, np.uint8), b], 1)
        cv2.putText(row, f"frame {i} before", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        cv2.putText(row, "after", (a.shape[1] + 14, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
        rows.append(row)
        rows.append(np.full((6, row.shape[1], 3), 255, np.uint8))
    sheet = np.concatenate(rows[:-1], 0)
    sheet = cv2.resize(sheet, None, fx=0.6, fy=0.6, interpolation=cv2.INTER_AREA)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, sheet[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(args.out, os.path.getsize(args.out) // 1024, "KiB")


if __name__ == "__main__":
    main()
