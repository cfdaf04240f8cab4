"""Segmented rendering: overhead of split + join with one worker against a plain run, speed-up
with two workers, and per-segment costs for a model of 8 and 64 GPUs.

    python bench/scale.py [--clip PATH] [--workflow NAME] [--seconds 8] [--segment 2] [--set NODE.INPUT=V]...

Each configuration runs `python -m remaster run` as a user would (a fresh process, models loaded
in each worker). Figures depend on the machine's load; say so next to them."""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


MODELS = []


def run(args, out):
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "remaster", *MODELS, "run", *args, "--output", str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode:
        sys.exit(p.stderr[-2000:])
    return time.perf_counter() - t0, p.stderr


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=str(ROOT.parent / "shared" / "clips" / "juggle_720p24.mp4"))
    ap.add_argument("--workflow", default="upscale")
    ap.add_argument("--models", default=str(ROOT.parent / "shared" / "models"), help="folder to link models from")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--segment", type=float, default=2.0)
    ap.add_argument("--set", action="append", default=None, help="default: Load Video.max_side=240")
    a = ap.parse_args()
    common = [a.workflow, "--input", a.clip, "--set", f"Load Video.end_time={a.seconds}"]
    for s in a.set or ["Load Video.max_side=240"]:
        common += ["--set", s]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        MODELS[:] = ["--models-dir", str(d / "models")]
        subprocess.run([sys.executable, "-m", "remaster", *MODELS, "models", "link", a.models], cwd=ROOT,
                       check=True, capture_output=True)
        plain, _ = run(common, d / "plain.mp4")
        one, log1 = run(common + ["--workers", "1", "--segment-seconds", str(a.segment)], d / "one.mp4")
        two, _ = run(common + ["--workers", "2", "--segment-seconds", str(a.segment)], d / "two.mp4")
        import numpy as np
        sys.path.insert(0, str(ROOT / "tests"))
        from videogen import decode_all

        equal = bool(np.array_equal(decode_all(d / "plain.mp4"), decode_all(d / "one.mp4")))
    segs = max(1, round(a.seconds / a.segment))
    per_seg = one / segs
    fixed = max(0.0, one - plain)  # split, worker start-up and join
    print(json.dumps({"plain_s": round(plain, 1), "one_worker_s": round(one, 1), "two_workers_s": round(two, 1),
                      "overhead_pct": round(100 * (one - plain) / plain, 1), "speedup_2": round(plain / two, 2),
                      "segments": segs, "per_segment_s": round(per_seg, 2),
                      "one_worker_output_equals_plain": equal}, indent=1))
    # model: T(n) = fixed + ceil(segments / n) * per_segment (stragglers: the last wave)
    for n, total in ((8, 8 * 16), (64, 64 * 16)):
        import math

        t1 = fixed + total * per_seg
        tn = fixed + math.ceil(total / n) * per_seg
        print(f"model, {total} segments on {n} GPUs: {t1 / tn:.1f}x faster than one (fixed {fixed:.1f}s, {per_seg:.2f}s/segment)")
