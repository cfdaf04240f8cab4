"""Figures for Temporal Consistency: warping error and PSNR on real clips after a deliberately
flickering per-frame stage and after the real upscaler, plus frames/s at 720p.

* Flickering stage: the clean clip with a different invented texture (smooth noise, 0.04) and a
  brightness change (5 %) on every frame. PSNR against the clean clip.
* Upscaler: the clip at half size, JPEG q40 per frame, through realesr-general-x4v3 and filtered
  down to x2 (= the clip's size). PSNR against the clean clip; flow on the small original.
* Warping error: flow-compensated frame-to-frame difference measured on the source's motion
  (Farneback on the original, a different estimator from the stage's DIS).
* Speed: 720p processed and original, one thread for torch and OpenCV; wall time and process
  CPU time (the machine may be shared: CPU time is the load-independent figure).

    python bench/temporal.py [--frames 16] [--sheet docs/img/temporal_sheet.png]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster.analysis import flow as flowlib  # noqa: E402
from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import temporal_consistency as tc  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402

SHARED = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))


def psnr(a, b):
    return 10 * math.log10(1.0 / float(((a - b) ** 2).mean()))


def flicker(clean, seed=1):
    g = torch.Generator().manual_seed(seed)
    n, h, w, _ = clean.shape
    gain = 1 + 0.05 * torch.randn(n, 1, 1, 1, generator=g)
    tex = F.interpolate(torch.randn(n, 3, h // 2, w // 2, generator=g), size=(h, w), mode="bilinear")
    return (clean * gain + 0.04 * tex.permute(0, 2, 3, 1)).clamp(0, 1)


def upscaled(clean):
    from spandrel import ModelLoader

    small = F.interpolate(clean.permute(0, 3, 1, 2), scale_factor=0.5, mode="area").permute(0, 2, 3, 1)
    orig = []
    for f in small:
        u8 = (f.numpy() * 255 + 0.5).astype(np.uint8)
        _, b = cv2.imencode(".jpg", u8[..., ::-1].copy(), [cv2.IMWRITE_JPEG_QUALITY, 40])
        orig.append(torch.from_numpy(cv2.imdecode(b, 1)[..., ::-1].copy()).float() / 255)
    orig = torch.stack(orig)
    desc = ModelLoader().load_from_file(str(SHARED / "models/realesrgan/realesr-general-x4v3.pth")).eval()
    desc.model.float()
    outs = []
    with torch.inference_mode():
        for i in range(orig.shape[0]):
            y = desc(orig[i : i + 1].permute(0, 3, 1, 2))
            outs.append(F.interpolate(y, size=clean.shape[1:3], mode="bicubic", antialias=True).clamp(0, 1))
    return orig, torch.cat(outs).permute(0, 2, 3, 1).contiguous()


def score(name, clean, orig, proc, **kw):
    out = tc.temporal_consistency(from_tensor(proc), from_tensor(orig), **kw).read().frames
    we0, we1 = flowlib.warping_error(proc, orig), flowlib.warping_error(out, orig)
    r = {"case": name, "warping_error_per_frame": round(we0, 5), "warping_error_steady": round(we1, 5),
         "warping_error_change_pct": round(100 * (we1 / we0 - 1), 1),
         "psnr_per_frame": round(psnr(proc, clean), 3), "psnr_steady": round(psnr(out, clean), 3),
         "psnr_change_db": round(psnr(out, clean) - psnr(proc, clean), 3)}
    print(json.dumps(r), flush=True)
    return r, out


def speed(frames=24):
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    fr = open_video(SHARED / "clips/juggle_720p24.mp4").read(0, frames).frames
    proc = flicker(fr)
    b = tc.TemporalBlender()
    b.step(proc[0], fr[0])
    t, c = time.perf_counter(), time.process_time()
    for i in range(1, frames):
        b.step(proc[i], fr[i])
    wall, cpu = (time.perf_counter() - t) / (frames - 1), (time.process_time() - c) / (frames - 1)
    return {"size": "1280x720", "fps_wall": round(1 / wall, 1), "fps_cpu_time": round(1 / cpu, 1),
            "load_average": os.getloadavg()[0], "cpus": os.cpu_count()}


def sheet(path, clean, proc, out, t):
    """Crops of frame t: clean | per-frame | steady | |per-frame − warped previous| | |steady − warped previous|."""

    fl = flowlib.estimate_flow(flowlib.grey(clean[t], 0), flowlib.grey(clean[t - 1], 0), "dis_medium")

    def tdiff(x):
        w = flowlib.remap(x[t - 1].numpy().copy(), fl)
        return np.repeat(np.clip(np.abs(x[t].numpy() - w).mean(-1, keepdims=True) * 6, 0, 1), 3, -1)

    tiles = [clean[t].numpy(), proc[t].numpy(), out[t].numpy(), tdiff(proc), tdiff(out)]
    img = np.concatenate([np.pad(x, ((0, 0), (0, 4), (0, 0)), constant_values=1) for x in tiles], 1)
    u8 = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), u8[..., ::-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--sheet", default="")
    ap.add_argument("--no-upscale", action="store_true")
    a = ap.parse_args()
    results = []
    for clip_name in ("juggle_720p24.mp4", "bedroom_540p30.mp4"):
        clean = open_video(SHARED / "clips" / clip_name, max_side=640).read(0, a.frames).frames
        r, out = score(f"{clip_name}: flickering stage", clean, clean, flicker(clean))
        results.append(r)
        if a.sheet and clip_name.startswith("juggle"):
            sheet(a.sheet, clean[:, 40:296, 200:456], flicker(clean)[:, 40:296, 200:456], out[:, 40:296, 200:456], 8)
        if not a.no_upscale:
            orig, proc = upscaled(clean)
            results.append(score(f"{clip_name}: x4v3 upscaler (x2 from JPEG q40)", clean, orig, proc)[0])
    sp = speed()
    print(json.dumps(sp))
    print(json.dumps({"results": results, "speed": sp}))


if __name__ == "__main__":
    main()
