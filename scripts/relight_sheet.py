"""Contact sheet of Relight: each preset on two real clips, and a dim room made bright.

    python scripts/relight_sheet.py [--out docs/img/relight_sheet.jpg]

Per clip (RVM matte from ../shared/models): the original, each preset on the person, then the
clip made dim and warm (display gamma 1.4, a warm cast) and that copy after Relight "natural"
and Auto Colour (the enhance settings).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import colour as C  # noqa: E402
from remaster.stages import matting  # noqa: E402
from remaster.stages import relight as R  # noqa: E402
from remaster.stages.lut import linear_to_srgb, srgb_to_linear  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402
from sheet import label, to_u8, write  # noqa: E402

SHARED = ROOT.parent / "shared"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "relight_sheet.jpg"))
    ap.add_argument("--side", type=int, default=300)
    args = ap.parse_args()
    rows = []
    for name, at in (("talking_head_512_30_audio.mp4", 1.0), ("fullbody_720x1080_25_audio.mp4", 2.0)):
        x = open_video(SHARED / "clips" / name, start_time=at, end_time=at + 0.4, max_side=args.side).read().frames.clone()
        m = matting.rvm_matte(from_tensor(x, 25), str(SHARED / "models/matting/rvm_mobilenetv3.pth"),
                              reset_at_cuts=False).read().mask
        tiles = [("original", x)]
        for p in ("soft studio", "window key", "rim + fill"):
            tiles.append((p, R.relight(from_tensor(x, 25, mask=m), R.preset(p)).read().frames))
        dim = linear_to_srgb(srgb_to_linear(x.clamp(0, 1) ** 1.4) * torch.tensor([1.15, 1.0, 0.8])).clamp(0, 1)
        tiles.append(("dim + warm", dim))
        lit = R.relight(from_tensor(dim, 25, mask=m), R.preset("natural", target="both"))
        tiles.append(("dim -> natural + auto colour", C.auto_colour(lit, white_balance="white_patch", wb_strength=0.6,
                                                                    vibrance=0.1).read().frames))
        row = [label(to_u8(t[-1])[..., ::-1], k, 0.45) for k, t in tiles]
        rows.append(np.concatenate(row, 1))
    w = max(r.shape[1] for r in rows)
    rows = [cv2.resize(r, (w, round(r.shape[0] * w / r.shape[1])), interpolation=cv2.INTER_AREA) for r in rows]
    sheet = np.concatenate(rows, 0)
    scale = min(1.0, 1400 / sheet.shape[1])
    sheet = cv2.resize(sheet, (round(sheet.shape[1] * scale), round(sheet.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    write(args.out, sheet, (cv2.IMWRITE_JPEG_QUALITY, 82))


if __name__ == "__main__":
    main()
