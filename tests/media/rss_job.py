"""Run one load→save (or a core-style whole-clip load) in a fresh process; print peak RSS (MB), seconds
and CPU seconds of all its threads (timed after the imports).

    python tests/media/rss_job.py stream SRC OUT      # our Load Video → Save Video
    python tests/media/rss_job.py allframes SRC       # all frames as one float32 tensor (core GetVideoComponents style)
"""
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> None:
    mode, src = sys.argv[1], sys.argv[2]
    import av  # noqa: F401  (imports are not timed: inside ComfyUI they are already loaded)
    import numpy as np  # noqa: F401
    import torch  # noqa: F401

    from remaster.media.decode import open_video
    from remaster.media.encode import save_video

    t0, c0 = time.perf_counter(), time.process_time()
    if mode == "stream":
        speed = sys.argv[4] if len(sys.argv) > 4 else "ultrafast"
        save_video(open_video(src), output_path=sys.argv[3], speed=speed)
    else:
        frames = []
        with av.open(src) as c:
            for f in c.decode(video=0):
                frames.append(torch.from_numpy(f.to_ndarray(format="rgb24")).float() / 255)
        images = torch.stack(frames)  # what a whole-clip IMAGE batch costs
        assert images.ndim == 4
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak_mb, "seconds": time.perf_counter() - t0,
                      "cpu_seconds": time.process_time() - c0}))


if __name__ == "__main__":
    main()
