"""Segmented rendering against a plain run: the overhead of splitting and joining on one worker,
the speed-up of two local workers, and the per-segment costs a model of 8 and 64 GPUs is built
from (a model, not a measurement).

    python bench/scale.py [--clip PATH] [--workflow upscale] [--seconds 6] [--segment 2] [--set NODE.INPUT=V]...

Each configuration runs `python -m remaster run` as a user would (fresh processes, models loaded
in each). CPU seconds are those of the run and every process it started (getrusage of
children): on a shared machine they are the steady figure, wall seconds are not."""
import argparse
import json
import math
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS: list = []


def cpu_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(args, out):
    t0, c0 = time.perf_counter(), cpu_children()
    p = subprocess.run([sys.executable, "-m", "remaster", *MODELS, "run", *args, "--output", str(out)], cwd=ROOT,
                       capture_output=True, text=True)
    if p.returncode:
        sys.exit(p.stderr[-2000:])
    return {"wall": time.perf_counter() - t0, "cpu": cpu_children() - c0, "log": p.stderr}


def speedup(n_gpus: int, frames: int, segments: int, render: float, serial: float, fixed: float) -> float:
    """T(1) / T(n) with T(n) = fixed + serial x frames + ceil(segments / n) x (frames / segments) x
    render (``render``: seconds a frame costs a worker, warm-up included; ``serial``: seconds a
    frame costs the driver after the workers: the join's encode and the audio; ``fixed``: start-up,
    the cut pass, checks)."""
    t1 = fixed + (serial + render) * frames
    tn = fixed + serial * frames + math.ceil(segments / n_gpus) * frames / segments * render
    return t1 / tn


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=str(ROOT.parent / "shared" / "clips" / "talking_head_512_30_audio.mp4"))
    ap.add_argument("--workflow", default="upscale")
    ap.add_argument("--models", default=str(ROOT.parent / "shared" / "models"), help="folder to link models from")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--segment", type=float, default=2.0)
    ap.add_argument("--order", default="plain,one,two",
                    help="which runs, in which order (the first run also warms the file cache)")
    ap.add_argument("--set", action="append", default=None, help="default: Load Video.resize=max_side, max_side=128")
    a = ap.parse_args()
    common = [a.workflow, "--input", a.clip, "--set", f"Load Video.end_time={a.seconds}"]
    for s in a.set or ["Load Video.resize=max_side", "Load Video.max_side=128"]:
        common += ["--set", s]
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        MODELS[:] = ["--models-dir", str(d / "models")]
        subprocess.run([sys.executable, "-m", "remaster", *MODELS, "models", "link", a.models], cwd=ROOT,
                       check=True, capture_output=True)
        seg = ["--segment-seconds", str(a.segment)]
        argv = {"plain": common, "one": common + ["--workers", "1"] + seg, "two": common + ["--workers", "2"] + seg}
        runs = {k: run(argv[k], d / f"{k}.mp4") for k in a.order.split(",")}
        none = {"wall": float("nan"), "cpu": float("nan"), "log": ""}
        plain, one, two = (runs.get(k, none) for k in ("plain", "one", "two"))
        import numpy as np
        sys.path.insert(0, str(ROOT / "tests"))
        from videogen import decode_all

        x, y = decode_all(d / "plain.mp4").astype(np.float64), decode_all(d / "one.mp4").astype(np.float64)
        mse = float(((x - y) ** 2).mean())
    seg_s = [float(v) for v in re.findall(r"\] segment \d+ \(frames \d+-\d+\) in ([\d.]+)s", one["log"])]
    audio_s = sum(float(v) for v in re.findall(r"\] audio \(whole range\) in ([\d.]+)s", one["log"]))
    join_s = float(re.search(r"joined \d+ segments in ([\d.]+)s", one["log"]).group(1))
    warm = re.search(r"warm-up declared by the chain: (\d+) extra source frames read for (\d+)", one["log"])
    frames = int(warm.group(2)) if warm else x.shape[0]
    result = {
        "frames": frames, "segments": len(seg_s), "warmup_frames": int(warm.group(1)) if warm else None,
        "plain": {"wall_s": round(plain["wall"], 1), "cpu_s": round(plain["cpu"], 1)},
        "one_worker": {"wall_s": round(one["wall"], 1), "cpu_s": round(one["cpu"], 1)},
        "two_workers": {"wall_s": round(two["wall"], 1), "cpu_s": round(two["cpu"], 1)},
        "overhead_cpu_pct": round(100 * (one["cpu"] - plain["cpu"]) / plain["cpu"], 1),
        "overhead_wall_pct": round(100 * (one["wall"] - plain["wall"]) / plain["wall"], 1),
        "speedup_2_workers_wall": round(plain["wall"] / two["wall"], 2),
        "per_segment_s": [round(v, 2) for v in seg_s], "audio_task_s": round(audio_s, 2), "join_s": round(join_s, 2),
        "one_worker_psnr_vs_plain": 99.0 if mse == 0 else round(10 * math.log10(255 ** 2 / mse), 1),
    }
    rest = max(0.0, one["wall"] - sum(seg_s) - audio_s - join_s)  # start-up, cut pass, checks (wall, under load)
    result["driver_other_s"] = round(rest, 2)
    print(json.dumps(result, indent=1))
    render = sum(seg_s) / frames  # seconds per frame on a worker (warm-up included)
    serial = (join_s + audio_s) / frames
    print(f"model (measured here: {render * 1000:.1f} ms/frame on a worker, {serial * 1000:.1f} ms/frame serial on the driver, {rest:.1f} s fixed):")
    for segs, label in ((60, "60-min video, 60-s segments"), (180, "60-min video, 20-s segments")):
        f = 60 * 60 * 30
        print(f"  {label}: 8 workers {speedup(8, f, segs, render, serial, rest):.1f}x, 64 workers {speedup(64, f, segs, render, serial, rest):.1f}x")
