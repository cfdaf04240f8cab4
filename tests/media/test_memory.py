"""Memory is bounded by chunk size, not by video length: peak RSS of load→save for a 60 s 1080p
clip stays within 10 % of a 10 s clip (each in its own process)."""
import json
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg

JOB = Path(__file__).with_name("rss_job.py")


def make_clip(path: Path, seconds: int, fps: int = 10) -> Path:
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
         f"testsrc2=size=1920x1080:rate={fps}:duration={seconds}", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-shortest", str(path)],
        check=True,
    )
    return path


def peak(src: Path, out: Path) -> float:
    r = subprocess.run([sys.executable, str(JOB), "stream", str(src), str(out)], capture_output=True, text=True,
                       check=True, env={"REMASTER_CHUNK_FRAMES": "8", "PATH": "/usr/bin:/bin"})
    return json.loads(r.stdout.strip().splitlines()[-1])["peak_mb"]


def test_peak_memory_does_not_grow_with_length(tmp_path):
    short = make_clip(tmp_path / "short.mp4", 10)
    long = make_clip(tmp_path / "long.mp4", 60)
    a = peak(short, tmp_path / "a.mp4")
    b = peak(long, tmp_path / "b.mp4")
    assert (tmp_path / "b.mp4").stat().st_size > (tmp_path / "a.mp4").stat().st_size
    assert b <= a * 1.10, f"10 s: {a:.0f} MB, 60 s: {b:.0f} MB"
