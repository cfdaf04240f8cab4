"""``python -m remaster train``: fine-tune a compact Real-ESRGAN on your material.

    python -m remaster train --name my16mm --clip clean1.mp4 [--clip ...] [--degradation film:16mm]
        [--pairs damaged.mp4:clean.mp4] [--scale 1] [--frame-wise] [--steps 200] [--eval-clip other.mp4]

The main CLI registers this with :func:`add_parser` and dispatches to :func:`run`.
"""
from __future__ import annotations

import argparse
import json
import sys


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser("train", help="fine-tune a compact Real-ESRGAN (optionally temporal) on your clips")
    p.add_argument("--name", required=True, help="checkpoint name: <upscale_models>/<name>.safetensors")
    p.add_argument("--clip", action="append", default=[], help="clean clip, damaged by --degradation (repeatable)")
    p.add_argument("--pairs", action="append", default=[], metavar="DAMAGED:CLEAN",
                   help="a damaged clip and its clean counterpart (same frame count; repeatable)")
    p.add_argument("--degradation", default="simple", help="'simple' or 'film:<preset>' (film damage simulator)")
    p.add_argument("--base", default="realesr-general-x4v3", help="starting weights (compact Real-ESRGAN)")
    p.add_argument("--scale", type=int, default=1, choices=(1, 2, 4))
    p.add_argument("--frame-wise", action="store_true", help="no temporal module (a plain Compact file)")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=3)
    p.add_argument("--patch", type=int, default=64, help="input crop size in pixels")
    p.add_argument("--samples", type=int, default=48, help="training sequences drawn from the data")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--temporal-weight", type=float, default=0.2)
    p.add_argument("--full", action="store_true", help="train the whole body (default on a GPU; a CPU trains the tail)")
    p.add_argument("--max-side", type=int, default=640, help="clean clips are read at this size (long side)")
    p.add_argument("--max-frames", type=int, default=90)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true", help="start over instead of resuming a run of the same name")
    p.add_argument("--eval-clip", help="held-out clean clip: PSNR of start vs trained weights on its damaged frames")
    p.add_argument("--eval-frames", type=int, default=12)
    return p


def run(args) -> int:
    from . import loop

    pairs = []
    for item in args.pairs:
        if ":" not in item:
            print(f"error: --pairs needs DAMAGED:CLEAN, got '{item}'", file=sys.stderr)
            return 2
        d, c = item.rsplit(":", 1)
        pairs.append((d, c))
    cfg = loop.TrainConfig(
        name=args.name, clips=list(args.clip), pairs=pairs, base=args.base, scale=args.scale,
        temporal=not args.frame_wise, degradation=args.degradation, steps=args.steps, batch=args.batch,
        seq_len=args.seq_len, patch=args.patch, samples=args.samples, lr=args.lr,
        temporal_weight=args.temporal_weight, freeze_head=False if args.full else None,
        max_side=args.max_side, max_frames=args.max_frames, seed=args.seed, resume=not args.fresh)
    try:
        out = loop.train(cfg, on_step=lambda r: print(
            f"\rstep {r['step']}/{cfg.steps} loss {r['loss']:.5f}", end="", file=sys.stderr))
        print(file=sys.stderr)
        if args.eval_clip:
            out["eval"] = loop.compare_on_clip(cfg, args.eval_clip, args.eval_frames)
    except (loop.TrainError, ValueError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, indent=1))
    return 0
