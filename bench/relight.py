"""Relight speed at 720p (1280x720) on this machine's CPU, per preset, with a person matte.

    python bench/relight.py [--frames 24]

Frames come from a real clip (juggle, 720p) already in memory; the matte is a fixed ellipse (the
matting network's own cost is not Relight's). Wall time per frame, frames/s, and CPU time per frame (all threads: on a busy machine the
wall time mostly measures the other processes).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import relight as R  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    args = ap.parse_args()
    x = open_video(ROOT.parent / "shared" / "clips" / "juggle_720p24.mp4").read(0, args.frames).frames.clone()
    n, h, w, _ = x.shape
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    m = ((((xx - w / 2) / (w * 0.18)) ** 2 + ((yy - h * 0.55) / (h * 0.45)) ** 2) < 1).float().expand(n, h, w).contiguous()
    print(f"{w}x{h}, {n} frames, torch threads {torch.get_num_threads()}")
    print("| preset | frames/s (wall) | ms/frame (wall) | CPU ms/frame (all threads) |\n|---|---|---|---|")
    for name in R.PRESETS:
        s = from_tensor(x, 24, mask=m)
        R.relight(s, R.preset(name, target="both")).read(0, 2)  # warm-up
        t, c = time.perf_counter(), time.process_time()
        for _ in R.relight(s, R.preset(name, target="both")).chunks():
            pass
        dt, dc = time.perf_counter() - t, time.process_time() - c
        print(f"| {name} | {n / dt:.1f} | {1000 * dt / n:.0f} | {1000 * dc / n:.0f} |")


if __name__ == "__main__":
    main()
