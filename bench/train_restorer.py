"""Figure: a short CPU fine-tune of realesr-general-x4v3 (x1 restorer) on damaged frames of one
clip, scored on held-out damaged frames of another clip against the starting weights; the
temporal variant against the frame-wise one (same data, loss and steps).

    python bench/train_restorer.py [--steps 300] [--train-clip juggle_720p24.mp4] [--eval-clip bedroom_540p30.mp4]
        [--degradation simple] [--out /tmp/remaster_train_bench]

Prints a JSON summary (last line). Models go to <out>/models/upscale_models, runs to <out>/output/train.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster import host  # noqa: E402
from remaster.train import loop  # noqa: E402

SHARED = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))


def write_sheet(path: str, ev: dict, t: int = 4) -> None:
    import cv2
    import numpy as np

    tiles = [ev["damaged_frames"][t], ev["start"]["frames"][t], ev["trained"]["frames"][t], ev["clean_frames"][t]]
    h, w = tiles[0].shape[:2]
    y0, x0 = h // 4, w // 4
    crops = [np.pad(x[y0 : y0 + h // 2, x0 : x0 + w // 2].numpy(), ((0, 0), (0, 4), (0, 0)), constant_values=1) for x in tiles]
    img = np.concatenate(crops, 1)
    img = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    cv2.imwrite(path, (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)[..., ::-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--patch", type=int, default=48)
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--train-clip", default="juggle_720p24.mp4")
    ap.add_argument("--eval-clip", default="bedroom_540p30.mp4")
    ap.add_argument("--eval-frames", type=int, default=8)
    ap.add_argument("--eval-side", type=int, default=320)
    ap.add_argument("--sheet", default="", help="PNG: damaged | start | trained | clean crops of a held-out frame")
    ap.add_argument("--only", choices=("temporal", "framewise"), help="train/score one variant")
    ap.add_argument("--fresh", action="store_true", help="retrain even if a finished run of the same name exists")
    ap.add_argument("--degradation", default="simple")
    ap.add_argument("--out", default="/tmp/remaster_train_bench")
    a = ap.parse_args()
    out = Path(a.out)
    host.set_dirs(models_dir=str(out / "models"), output_dir=str(out / "output"))
    d = host.model_dirs("upscale_models")[0]
    d.mkdir(parents=True, exist_ok=True)
    base = d / "realesr-general-x4v3.pth"
    if not base.exists():
        os.symlink(SHARED / "models" / "realesrgan" / "realesr-general-x4v3.pth", base)
    summary = {"steps": a.steps, "train_clip": a.train_clip, "eval_clip": a.eval_clip, "degradation": a.degradation}
    for temporal in (True, False):
        if a.only and a.only != ("temporal" if temporal else "framewise"):
            continue
        name = "bench_temporal_v2" if temporal else "bench_framewise"
        cfg = loop.TrainConfig(name=name, clips=[str(SHARED / "clips" / a.train_clip)], steps=a.steps, temporal=temporal,
                               samples=a.samples, patch=a.patch, max_frames=48, degradation=a.degradation, resume=not a.fresh)
        t = time.perf_counter()
        res = loop.train(cfg)
        res["train_seconds"] = round(time.perf_counter() - t, 1)
        ev = loop.compare_on_clip(cfg, str(SHARED / "clips" / a.eval_clip), a.eval_frames, max_side=a.eval_side,
                                  return_frames=bool(a.sheet))
        if a.sheet:
            write_sheet(a.sheet, ev)
            for k in ("damaged_frames", "clean_frames"):
                ev.pop(k)
            for k in ("start", "trained"):
                ev[k].pop("frames")
        res["eval"] = ev
        summary[name] = res
        print(json.dumps({name: res}), flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
