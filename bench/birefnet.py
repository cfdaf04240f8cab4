"""BiRefNet network cost on this machine: CPU time per frame of the Swin-T (BiRefNet_lite) and
Swin-L (general / portrait / matting) layouts at 512 and 1024 px square inputs.

    python bench/birefnet.py [--sizes 512 1024] [--backbones T L] [--frames 2] [--dtypes fp32 bf16]

Random weights in the real architecture (the cost does not depend on the weights). One warm-up
frame (oneDNN builds its kernels), then ``--frames`` frames one at a time; the figure is process
time (all threads' CPU seconds) and wall time per frame. On a shared machine process time is the
steadier number; divide by the core count for an idle-machine wall estimate.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster.models import birefnet  # noqa: E402
from remaster.models.swin import SWIN_L, SWIN_T  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def measure(cfg, size: int, frames: int, dtype: torch.dtype) -> tuple[float, float]:
    torch.manual_seed(0)
    net = birefnet.BiRefNet(cfg).eval().to(dtype)
    if dtype == torch.bfloat16:
        net = net.to(memory_format=torch.channels_last)
    x = birefnet.normalise(torch.rand(1, 3, size, size)).to(dtype)
    with torch.inference_mode():
        net(x)  # warm-up
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(frames):
            net(x)
        return (time.process_time() - cpu) / frames * 1000, (time.perf_counter() - wall) / frames * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--backbones", nargs="+", default=["T", "L"], choices=["T", "L"])
    ap.add_argument("--frames", type=int, default=2)
    ap.add_argument("--dtypes", nargs="+", default=["fp32"], choices=list(DTYPES))
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| backbone | input | dtype | CPU ms/frame (process time) | wall ms/frame |")
    print("|---|---|---|---|---|")
    for b in args.backbones:
        cfg = SWIN_T if b == "T" else SWIN_L
        for size in args.sizes:
            for d in args.dtypes:
                cpu, wall = measure(cfg, size, args.frames, DTYPES[d])
                print(f"| Swin-{b} | {size}x{size} | {d} | {cpu:.0f} | {wall:.0f} |", flush=True)


if __name__ == "__main__":
    main()
