"""Colour bench: LUT grading at 1080p against ffmpeg's lut3d filter, and automatic colour at 1080p.

    python bench/colour.py [--frames 48] [--lut luts/warm_gym.cube] [--clip ../shared/clips/juggle_720p24.mp4]

Makes a 1080p H.264 file from a real clip (ffmpeg from imageio-ffmpeg), then times on that same
file and the same .cube:
  * ffmpeg: decode + lut3d (tetrahedral) to a null sink, and decode alone (filter cost = the
    difference); the format the filter works in is what ffmpeg picks by itself.
  * Remaster: Load Video + Apply LUT (tetrahedral) pulled chunk by chunk, and the load alone;
    plus the LUT on frames already in memory.
  * Automatic colour: the whole two-pass node from the file, and the apply pass on frames in memory.
Wall time and CPU time (all threads) are reported; frames/s are from wall time. It also checks that
our LUT output matches ffmpeg's on ffmpeg's own RGB frames.
"""
from __future__ import annotations

import argparse
import os
import resource
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


def pull(stream) -> None:
    for _ in stream.chunks():
        pass


def row(name: str, frames: int, wall: float, cpu: float) -> str:
    return f"| {name} | {frames / wall:.1f} | {1000 * wall / frames:.1f} | {1000 * cpu / frames:.1f} |"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--lut", default=str(ROOT / "luts" / "warm_gym.cube"))
    ap.add_argument("--clip", default=str(ROOT.parent / "shared" / "clips" / "juggle_720p24.mp4"))
    ap.add_argument("--threads", type=int, default=0,
                    help="threads for torch and for ffmpeg (decoder and filters); 0 = each one's default")
    args = ap.parse_args()
    ff_threads = []
    if args.threads:
        torch.set_num_threads(args.threads)
        ff_threads = ["-threads", str(args.threads), "-filter_threads", str(args.threads)]
    n = args.frames
    tmp = Path(tempfile.mkdtemp(prefix="remaster-bench-"))
    video = tmp / "bench_1080p.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", args.clip, "-frames:v", str(n),
                    "-vf", "scale=1920:1080:flags=bicubic", "-c:v", "libx264", "-crf", "16", "-preset", "fast",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    lut_path = os.path.abspath(args.lut)
    lut = L.read_cube(lut_path)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, ffmpeg threads {args.threads or 'default'}, {os.cpu_count()} CPUs; {n} frames 1920x1080; "
          f"LUT {Path(lut_path).name} ({lut.size}^3)\n")
    print("| what | frames/s | ms/frame (wall) | ms/frame (CPU, all threads) |")
    print("|---|---|---|---|")

    esc = lut_path.replace("\\", "/").replace(":", "\\:")
    ff_dec = timed_ffmpeg([*ff_threads, "-i", str(video), "-f", "null", "-"])
    ff_lut = timed_ffmpeg([*ff_threads, "-i", str(video), "-vf", f"lut3d=file='{esc}':interp=tetrahedral",
                           "-f", "null", "-"])
    print(row("ffmpeg decode only", n, *ff_dec))
    print(row("ffmpeg decode + lut3d (tetrahedral)", n, *ff_lut))
    print(row("ffmpeg lut3d filter alone (difference)", n, ff_lut[0] - ff_dec[0], ff_lut[1] - ff_dec[1]))

    src = open_video(video, chunk_size=8)
    ours_dec = timed(lambda: pull(src))
    ours_lut = timed(lambda: pull(L.lut_stream(src, lut_path, "tetrahedral")))
    print(row("Remaster Load Video only", n, *ours_dec))
    print(row("Remaster Load Video + Apply LUT (tetrahedral)", n, *ours_lut))
    print(row("Remaster Apply LUT alone (difference)", n, ours_lut[0] - ours_dec[0], ours_lut[1] - ours_dec[1]))

    m = min(n, 16)
    frames = src.read(0, m).frames
    for interp in L.INTERPOLATIONS:
        t = timed(lambda: L.apply_lut(frames, lut, interp))
        print(row(f"Remaster LUT on frames in memory ({interp})", m, *t))

    mem = from_tensor(frames, 24)
    s = C.AutoColourSettings()
    params, _ = C.analyse(mem, s)
    p = torch.from_numpy(params).float()
    print(row("Auto colour, apply pass on frames in memory (defaults)", m, *timed(lambda: C.apply_params(frames, p, s))))
    s_lc = C.AutoColourSettings(local_contrast=0.3)
    print(row("Auto colour, apply pass with local contrast (CLAHE)", m, *timed(lambda: C.apply_params(frames, p, s_lc))))
    print(row("Auto colour, analysis pass on frames in memory", m, *timed(lambda: C.analyse(mem, s))))
    print(row("Auto colour node from the file (both passes, 2 decodes)", n, *timed(lambda: pull(C.auto_colour(src, s)))))

    # parity: our LUT on ffmpeg's own RGB frames vs ffmpeg's lut3d output
    def raw(vf: str) -> np.ndarray:
        out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(video), "-frames:v", "4",
                              "-vf", vf, "-f", "rawvideo", "-pix_fmt", "rgb48le", "-"], check=True, capture_output=True)
        return np.frombuffer(out.stdout, dtype="<u2").reshape(-1, 1080, 1920, 3).astype(np.float32) / 65535.0

    base = raw("format=rgb48le")
    theirs = raw(f"format=rgb48le,lut3d=file='{esc}':interp=tetrahedral")
    ours = L.apply_lut(torch.from_numpy(base), lut, "tetrahedral").numpy()
    diff = np.abs(ours - theirs)
    print(f"\nparity with ffmpeg lut3d (rgb48, 4 frames): max |diff| {diff.max():.2e}, mean {diff.mean():.2e}")
    video.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
