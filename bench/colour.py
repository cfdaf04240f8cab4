"""Colour bench: 3D LUT grading against ffmpeg's lut3d filter, and automatic colour, in one run.

    python bench/colour.py [--frames 24] [--height 720] [--threads 1] [--repeats 5] [--lut luts/warm_gym.cube]

Makes an H.264 file from a real clip (ffmpeg from imageio-ffmpeg), and from it, with ffmpeg's own
YUV → RGB conversion, the raw RGB frames both tools then grade: rgb24 (the format ffmpeg's lut3d
picks by itself for such a video) and planar float (gbrpf32le, where its lut3d has SIMD code).
Our in-memory frames are exactly those rgb24 pixels as float32. Timed, interleaved ``--repeats``
times (min and median kept, the machine may be shared):
  * ffmpeg lut3d (tetrahedral, its default) alone: (raw read + lut3d) − raw read, on rgb24 and on
    float planar frames; and on the video: (decode + lut3d) − decode, which includes its YUV → RGB.
  * Remaster Apply LUT (tetrahedral) on the frames in memory, in chunks of 8 (each result dropped
    before the next, as in a stream: results kept alive cost the kernel page zeroing and, with
    transparent huge pages, compaction — see docs/colour.md); and Load Video +
    Apply LUT − Load Video on the same file.
CPU time (all threads; ffmpeg's from its rusage) is the figure to compare on a shared machine.
Then, once: trilinear, the torch path, automatic colour, and our LUT output against ffmpeg's on
ffmpeg's own rgb48 frames.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import colour as C  # noqa: E402
from remaster.stages import lut as L  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402


def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def timed_ffmpeg(args: list) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args], check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def timed(fn) -> tuple[float, float]:
    c, t = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _diff(a: tuple, b: tuple) -> tuple:
    return a[0] - b[0], a[1] - b[1]


def each(chunks: list, fn) -> None:
    """``fn`` on each chunk, each result dropped before the next, as a stream consumer does."""
    for c in chunks:
        fn(c)


def pull(stream) -> None:
    for c in stream.chunks():
        _ = c.frames  # Load Video's frames are made from the decoder's YUV when first read


def row(name: str, frames: int, wall: float, cpu: float) -> str:
    return f"| {name} | {frames / wall:.1f} | {1000 * wall / frames:.1f} | {1000 * cpu / frames:.1f} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--lut", default=str(ROOT / "luts" / "warm_gym.cube"))
    ap.add_argument("--clip", default=str(ROOT.parent / "shared" / "clips" / "juggle_720p24.mp4"))
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for torch and for ffmpeg (decoder and filters); 0 = each one's default")
    args = ap.parse_args()
    ff_threads = []
    if args.threads:
        torch.set_num_threads(args.threads)
        ff_threads = ["-threads", str(args.threads), "-filter_threads", str(args.threads)]
    n, h = args.frames, args.height
    w = (h * 16 // 9 + 1) // 2 * 2
    tmp = Path(tempfile.mkdtemp(prefix="remaster-bench-"))
    video = tmp / f"bench_{h}p.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", args.clip, "-frames:v", str(n),
                    "-vf", f"scale={w}:{h}:flags=bicubic", "-c:v", "libx264", "-crf", "16", "-preset", "fast",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    raws = {}
    for fmt in ("rgb24", "gbrpf32le"):
        raws[fmt] = tmp / f"frames.{fmt}"
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(video), "-f", "rawvideo",
                        "-pix_fmt", fmt, str(raws[fmt])], check=True)
    lut_path = os.path.abspath(args.lut)
    lut = L.read_cube(lut_path)
    esc = lut_path.replace("\\", "/").replace(":", "\\:")
    lut3d = f"lut3d=file='{esc}':interp=tetrahedral"
    rgb = np.fromfile(raws["rgb24"], dtype=np.uint8).reshape(n, h, w, 3)
    frames = torch.from_numpy(rgb).float().div_(255.0)
    chunks = [frames[s:s + 8] for s in range(0, n, 8)]
    src = open_video(video, chunk_size=8)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, ffmpeg threads "
          f"{args.threads or 'default'}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"{n} frames {w}x{h}; LUT {Path(lut_path).name} ({lut.size}^3); {args.repeats} interleaved repeats\n")

    def raw_in(fmt):
        return ["-f", "rawvideo", "-pix_fmt", fmt, "-s", f"{w}x{h}", "-i", str(raws[fmt])]

    def ff(inp, vf=None):
        return timed_ffmpeg([*ff_threads, *inp, *(["-vf", vf] if vf else []), "-f", "null", "-"])

    cases = {
        "ffmpeg lut3d alone, rgb24 frames (the format it picks for a video)":
            lambda: _diff(ff(raw_in("rgb24"), lut3d), ff(raw_in("rgb24"))),
        "ffmpeg lut3d alone, float planar frames (gbrpf32le, its SIMD path)":
            lambda: _diff(ff(raw_in("gbrpf32le"), lut3d), ff(raw_in("gbrpf32le"))),
        "ffmpeg on the video: (decode + lut3d) − decode":
            lambda: _diff(ff(["-i", str(video)], lut3d), ff(["-i", str(video)])),
        "Remaster Apply LUT on frames in memory":
            lambda: timed(lambda: each(chunks, lambda c: L.apply_lut(c, lut, "tetrahedral"))),
        "Remaster on the video: (Load Video + Apply LUT) − Load Video":
            lambda: _diff(timed(lambda: pull(L.lut_stream(src, lut_path, "tetrahedral"))), timed(lambda: pull(src))),
    }
    L.apply_lut(chunks[0], lut, "tetrahedral")  # warm-up: OpenColorIO processor, thread pool
    got = {k: [] for k in cases}
    for _ in range(args.repeats):
        for k, fn in cases.items():
            got[k].append(fn())
    print("| what (tetrahedral) | ms/frame CPU, min | median | ms/frame wall, median |")
    print("|---|---|---|---|")
    stats = {}
    for k, v in got.items():
        cpu = sorted(c for _, c in v)
        wall = sorted(t for t, _ in v)
        stats[k] = (cpu[0], cpu[len(cpu) // 2])
        print(f"| {k} | {1000 * cpu[0] / n:.1f} | {1000 * cpu[len(cpu) // 2] / n:.1f} | {1000 * wall[len(wall) // 2] / n:.1f} |")
    ours = stats["Remaster Apply LUT on frames in memory"]
    print("\nCPU-time ratios, ours / ffmpeg (min / median):")
    for k in list(cases)[:2]:
        print(f"  Apply LUT in memory / {k}: ×{ours[0] / stats[k][0]:.2f} / ×{ours[1] / stats[k][1]:.2f}")
    pipe, ffp = stats["Remaster on the video: (Load Video + Apply LUT) − Load Video"], stats[list(cases)[2]]
    print(f"  on the video, ours / ffmpeg: ×{pipe[0] / ffp[0]:.2f} / ×{pipe[1] / ffp[1]:.2f}\n")

    print("| what, once | frames/s | ms/frame wall | ms/frame CPU |")
    print("|---|---|---|---|")
    m = min(n, 16)
    print(row("Remaster LUT in memory, trilinear", n, *timed(lambda: each(chunks, lambda c: L.apply_lut(c, lut, "trilinear")))))
    from remaster.stages.lut import interp

    keep = interp.cpu_processor
    interp.cpu_processor = lambda *a: None
    try:
        print(row("Remaster LUT in memory, tetrahedral, torch path (GPU code on the CPU)", m,
                  *timed(lambda: L.apply_lut(frames[:m], lut, "tetrahedral"))))
    finally:
        interp.cpu_processor = keep
    mframes = src.read(0, m).frames
    mem = from_tensor(mframes, 24)
    s = C.AutoColourSettings()
    params, _ = C.analyse(mem, s)
    p = torch.from_numpy(params).float()
    print(row("Auto colour, apply pass on frames in memory (defaults)", m, *timed(lambda: C.apply_params(mframes, p, s))))
    s_lc = C.AutoColourSettings(local_contrast=0.3)
    print(row("Auto colour, apply pass with local contrast (CLAHE)", m, *timed(lambda: C.apply_params(mframes, p, s_lc))))
    print(row("Auto colour, analysis pass on frames in memory", m, *timed(lambda: C.analyse(mem, s))))
    print(row("Auto colour node from the file (both passes, 2 decodes)", n, *timed(lambda: pull(C.auto_colour(src, s)))))

    # parity: our LUT on ffmpeg's own RGB frames vs ffmpeg's lut3d output
    def raw(vf: str) -> np.ndarray:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(video), "-frames:v", "4",
                              "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb48le", "-"], check=True, capture_output=True)
        return np.frombuffer(out.stdout, dtype="<u2").reshape(-1, h, w, 3).astype(np.float32) / 65535.0

    base = raw("format=rgb48le")
    theirs = raw(f"format=rgb48le,lut3d=file='{esc}':interp=tetrahedral")
    ours = L.apply_lut(torch.from_numpy(base), lut, "tetrahedral").numpy()
    diff = np.abs(ours - theirs)
    print(f"\nparity with ffmpeg lut3d (rgb48, 4 frames): max |diff| {diff.max():.2e}, mean {diff.mean():.2e}")
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
