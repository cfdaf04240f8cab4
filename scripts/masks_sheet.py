"""Contact sheet for docs/masks.md: real clips, their RVM matte, and the new background.

    REMASTER_MODELS_DIR=... python scripts/masks_sheet.py [--shared ../shared] [--out docs/img/masks_background.png]

Rows: talking head over its own blurred, darkened background (the shipped workflow's settings);
full-body shot over a solid colour; the juggler over another clip (looped, cover fit).
Columns: original, matte, result, for a few frames of each clip.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import background, matting  # noqa: E402
from sheet import stack, to_u8, write  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=str(Path(__file__).resolve().parents[2] / "shared"))
    ap.add_argument("--out", default="docs/img/masks_background.png")
    ap.add_argument("--side", type=int, default=320)
    args = ap.parse_args()
    clips = Path(args.shared) / "clips"
    cases = [
        ("talking_head_512_30_audio.mp4", dict(source="blur", blur=24 * args.side / 1280 * 2, darken=0.45, wrap=0.2), 2.0),
        ("fullbody_720x1080_25_audio.mp4", dict(source="color", color="#2b4c6f", wrap=0.2), 2.0),
        ("juggle_720p24.mp4", dict(source="stream", fit_mode="cover", wrap=0.2), 2.0),
    ]
    rows = []
    for name, opts, seconds in cases:
        src = open_video(clips / name, end_time=seconds, max_side=args.side)
        matted = matting.rvm_matte(src, "rvm_mobilenetv3.pth")
        if opts.get("source") == "stream":
            opts = dict(opts, background=open_video(clips / "bedroom_540p30.mp4", end_time=seconds, max_side=args.side))
        out = background.replace_background(matted, **opts)
        n = src.info.frame_count
        picks = [n // 4, n // 2, n - 1]
        got = out.read(0, n)
        orig = src.read(0, n).frames
        for i in picks:
            a = got.mask[i][..., None].expand(-1, -1, 3)
            rows.append(to_u8(torch.cat([orig[i], a, got.frames[i]], 1))[:, :, ::-1])
    # two row-blocks side by side would be wider than useful; stack and shrink
    write(args.out, stack(rows, max_height=2400))

if __name__ == "__main__":
    main()
