"""Video I/O figures, side by side in one run:

* peak RSS of Load Video → Save Video for a 10 s and a 60 s 1080p clip (each in a fresh process);
* peak RSS of the same 10 s clip loaded the way core GetVideoComponents does it (all frames as
  one float32 tensor), for contrast;
* time of our decode → encode passthrough vs the ffmpeg command line with the same codec and
  preset (goal: ratio ≤ 1.15), interleaved twice, best of each (the machine may be shared); our
  time is measured after the imports (inside ComfyUI they are loaded already). Wall time and CPU
  time (all threads; ffmpeg's from its rusage) are both given: on a shared machine the CPU-time
  ratio is the steadier one.

    python bench/video_io.py [--fps 30] [--speed medium] [--no-long]
"""
import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "tests" / "media" / "rss_job.py"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def make_clip(path: Path, seconds: int, fps: int) -> Path:
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size=1920x1080:rate={fps}:duration={seconds}",
                    "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "veryfast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


def job(*args) -> dict:
    r = subprocess.run([sys.executable, str(JOB), *map(str, args)], capture_output=True, text=True)
    if r.returncode != 0:  # e.g. the core-style load killed for memory on a small machine
        return {"peak_mb": float("nan"), "seconds": float("nan"), "cpu_seconds": float("nan"), "failed": r.returncode}
    return json.loads(r.stdout.strip().splitlines()[-1])


def ffmpeg_passthrough(src: Path, dst: Path, speed: str) -> tuple:
    """(wall seconds, CPU seconds of the ffmpeg process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([FFMPEG, "-v", "error", "-y", "-i", str(src), "-c:v", "libx264", "-preset", speed, "-crf", "18",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", str(dst)], check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--speed", default="medium")
    ap.add_argument("--no-long", action="store_true", help="skip the 60 s clip and the core-style load")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        short = make_clip(d / "10s.mp4", 10, a.fps)
        runs, t_ffs = [], []
        for k in range(2):  # interleaved: both sides see the same load
            runs.append(job("stream", short, d / f"o10_{k}.mp4", a.speed))
            t_ffs.append(ffmpeg_passthrough(short, d / f"ff_{k}.mp4", a.speed))
        r10 = min(runs, key=lambda r: r["seconds"])
        t_ff = min(t for t, _ in t_ffs)
        c_ours = min(r["cpu_seconds"] for r in runs)
        c_ff = min(c for _, c in t_ffs)
        r60b = job("stream", short, d / "o10b.mp4", "ultrafast")
        nan = {"peak_mb": float("nan"), "seconds": float("nan"), "cpu_seconds": float("nan")}
        r60 = core = nan
        if not a.no_long:
            long = make_clip(d / "60s.mp4", 60, a.fps)
            r60 = job("stream", long, d / "o60.mp4", "ultrafast")
            core = job("allframes", short)
    print(f"1080p{a.fps} clips, x264 preset {a.speed}, crf 18")
    print(f"{'':44} {'peak RSS':>10} {'seconds':>9}")
    print(f"{'ours, load→save 10 s (ultrafast)':44} {r60b['peak_mb']:8.0f}MB {r60b['seconds']:9.1f}")
    print(f"{'ours, load→save 60 s (ultrafast)':44} {r60['peak_mb']:8.0f}MB {r60['seconds']:9.1f}")
    print(f"{'core-style: 10 s as one float32 IMAGE batch':44} {core['peak_mb']:8.0f}MB {core['seconds']:9.1f}")
    print(f"{'ours, passthrough 10 s (' + a.speed + ')':44} {r10['peak_mb']:8.0f}MB {r10['seconds']:9.1f}")
    print(f"{'ffmpeg CLI, same codec/preset/crf':44} {'':>10} {t_ff:9.1f}")
    print(f"passthrough time ratio ours/ffmpeg: {r10['seconds'] / t_ff:.2f} (goal ≤ 1.15)")
    print(f"passthrough CPU time (all threads, best of 2): ours {c_ours:.1f} s, ffmpeg {c_ff:.1f} s, "
          f"ratio {c_ours / c_ff:.2f}")
    print(f"60 s vs 10 s peak RSS: {r60['peak_mb'] / r60b['peak_mb']:.2f}× (goal ≤ 1.10)")


if __name__ == "__main__":
    main()
