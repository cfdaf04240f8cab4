"""Keyframe analysis speed at 1080p: Remaster's masked keyframe analysis vs Katna's keyframe
extraction (``Katna.video.Video.extract_video_keyframes``) on the same file.

    python bench/keyframes.py [--frames 120] [--video path-to-1080p.mp4]

Without ``--video`` a 1080p H.264 test file is made from ../shared/clips/juggle_720p24.mp4
(upscaled with ffmpeg). Katna is a bench-only dependency: ``pip install Katna --no-deps
imutils ffmpy scikit-learn scikit-image`` (its declared opencv-contrib-python would replace the
pack's OpenCV; the opencv-python-headless already installed provides what Katna calls).
Prints frames/s for: decoding alone, our analysis (decode included, best of two runs), Katna
(decode included, one run: it takes minutes).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_1080p(src: Path, frames: int, out: Path) -> Path:
    import imageio_ffmpeg

    if not out.exists():
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-frames:v", str(frames),
                        "-vf", "scale=1920:1080:flags=bicubic", "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p",
                        "-an", str(out)], check=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--video", default="")
    ap.add_argument("--keyframes", type=int, default=8, help="number of keyframes Katna is asked for")
    args = ap.parse_args()

    from remaster.media.decode import open_video
    from remaster.stages import inpaint as inp
    from remaster.stages.inpaint import keyframes as kf

    tmp = Path(tempfile.gettempdir()) / "remaster_bench"
    tmp.mkdir(exist_ok=True)
    shared = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))
    video = Path(args.video) if args.video else make_1080p(shared / "clips" / "juggle_720p24.mp4", args.frames,
                                                            tmp / f"juggle_1080p_{args.frames}.mp4")
    s = open_video(video)
    n = s.info.frame_count
    print(f"file: {video} {s.info.width}x{s.info.height} {n} frames")

    t0 = time.perf_counter()
    for _ in s.chunks():
        pass
    t_dec = time.perf_counter() - t0
    print(f"decode only (PyAV, float RGB):        {n / t_dec:7.1f} frames/s")

    t_ours = float("inf")
    for run in range(2):  # best of two (the analysis is memoised per stream, so re-open each time)
        masked = inp.rectangle_mask(open_video(video), 0.35, 0.25, 0.3, 0.5)
        kf._cache.clear()
        t0 = time.perf_counter()
        plan = kf.analyse_keyframes(masked)
        t_ours = min(t_ours, time.perf_counter() - t0)
    print(f"Remaster keyframes (decode included): {n / t_ours:7.1f} frames/s  -> {len(plan.keyframes)} keyframes")
    if t_ours > t_dec:
        print(f"  analysis alone (difference to decoding): {n / (t_ours - t_dec):7.1f} frames/s")

    try:
        from Katna.video import Video
        from Katna.writer import KeyFrameDiskWriter
    except ImportError:
        print("Katna is not installed; see the module docstring")
        return
    out_dir = tmp / "katna_out"
    out_dir.mkdir(exist_ok=True)
    vd = Video()
    t0 = time.perf_counter()
    vd.extract_video_keyframes(no_of_frames=args.keyframes, file_path=str(video),
                               writer=KeyFrameDiskWriter(location=str(out_dir)))
    t_katna = time.perf_counter() - t0
    print(f"Katna extract_video_keyframes:        {n / t_katna:7.1f} frames/s  ({vd.n_processes} processes)")
    print(f"speed-up: {t_katna / t_ours:.1f}x")


if __name__ == "__main__":
    main()
