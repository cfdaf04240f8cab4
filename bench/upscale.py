"""Upscale speed: ours vs ComfyUI core's way, on the same frames and weights, in one run.

Core's ImageUpscaleWithModel (comfy_extras/nodes_upscale_model.py) runs the spandrel model in
float32 NCHW, one image at a time, in 512-pixel tiles with 32 pixels of overlap and a linear
feather, dividing by the summed masks. ``core_like`` below reproduces that procedure (our own
code, written from reading core). Ours is :class:`remaster.stages.upscale.Upscaler` with
precision "auto" (bf16 + channels_last on CPUs with AVX-512-BF16 / AMX).

Also prints the FLOP rate we reach (FLOPs of one untiled forward, counted by torch's
FlopCounterMode, divided by our time per frame) as a fraction of the machine's measured bf16
convolution peak (3x3 convolutions of the shapes these models use, channels_last, best of
several runs). The machine is shared, so each side is timed several times, interleaved, and the
best time is kept; process CPU time (less sensitive to other users of the cores) is reported too.

    python bench/upscale.py [--frames 1] [--repeats 3] [--models-dir ../shared/models/realesrgan]

Writes a JSON summary to stdout's last line. Frames come from ../shared/clips/dog_720p30_audio.mp4.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # same for both sides; see docs/upscale.md

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster import host  # noqa: E402
from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import upscale as up  # noqa: E402

SHARED = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))


def core_like(desc, frames: torch.Tensor, tile: int = 512, overlap: int = 32) -> torch.Tensor:
    """ComfyUI core's procedure: fp32 NCHW, per image, 512 tiles, overlap 32, linear feather."""
    s = int(desc.scale)
    x_all = frames.permute(0, 3, 1, 2).float()
    n, c, H, W = x_all.shape
    out = torch.empty(n, c, H * s, W * s)
    with torch.inference_mode():
        for b in range(n):
            x = x_all[b : b + 1]
            if H <= tile and W <= tile:
                out[b : b + 1] = desc(x)
                continue
            acc = torch.zeros(1, c, H * s, W * s)
            div = torch.zeros_like(acc)
            ys = range(0, H - overlap, tile - overlap) if H > tile else [0]
            xs = range(0, W - overlap, tile - overlap) if W > tile else [0]
            for y0 in ys:
                for x0 in xs:
                    py, px = max(0, min(H - overlap, y0)), max(0, min(W - overlap, x0))
                    th, tw = min(tile, H - py), min(tile, W - px)
                    y = desc(x[:, :, py : py + th, px : px + tw])
                    m = torch.ones_like(y)
                    f = overlap * s
                    for dim in (2, 3):
                        if f >= m.shape[dim]:
                            continue
                        for t in range(f):
                            a = (t + 1) / f
                            m.narrow(dim, t, 1).mul_(a)
                            m.narrow(dim, m.shape[dim] - 1 - t, 1).mul_(a)
                    acc[:, :, py * s : py * s + y.shape[2], px * s : px * s + y.shape[3]] += y * m
                    div[:, :, py * s : py * s + y.shape[2], px * s : px * s + y.shape[3]] += m
            out[b : b + 1] = acc / div
    return out.permute(0, 2, 3, 1)


def bf16_conv_peak(repeats: int = 3) -> float:
    """Best bf16 channels_last 3x3 convolution rate over a few shapes these models use."""
    best_rate = 0.0
    with torch.inference_mode():
        for cin, cout, hw in ((64, 64, 256), (64, 64, 128), (192, 64, 128), (128, 128, 128)):
            conv = torch.nn.Conv2d(cin, cout, 3, padding=1).to(torch.bfloat16).to(memory_format=torch.channels_last)
            x = torch.randn(1, cin, hw, hw).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
            flops = 2 * cin * cout * 9 * hw * hw
            conv(x)
            for _ in range(repeats):
                t = time.perf_counter()
                for _ in range(3):
                    conv(x)
                best_rate = max(best_rate, flops * 3 / (time.perf_counter() - t))
    return best_rate


def model_flops(desc, h: int, w: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    m = desc.model.float()
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        m(torch.zeros(1, 3, h, w))
    return int(fc.get_total_flops())


def frames_for(size: tuple[int, int], n: int) -> torch.Tensor:
    clip = SHARED / "clips" / "dog_720p30_audio.mp4"
    s = open_video(clip, width=size[1], height=size[0])
    return s.read(0, n).frames.contiguous()


def psnr(a, b) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(1 / mse)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs per side; the best is kept")
    ap.add_argument("--models-dir", default=str(SHARED / "models" / "realesrgan"))
    args = ap.parse_args()
    from spandrel import ModelLoader

    cases = [  # (model file, input size HxW): compact at 640x360 (core tiles it), RRDB smaller (slow)
        ("realesr-general-x4v3.pth", (360, 640)),
        ("RealESRGAN_x4plus.pth", (108, 192)),
    ]
    peak = bf16_conv_peak()
    print(f"device: cpu, {torch.get_num_threads()} threads, fast bf16: {host.cpu_has_fast_bf16()}, "
          f"measured bf16 conv peak {peak / 1e9:.1f} GFLOP/s")
    rows = []
    for name, size in cases:
        path = Path(args.models_dir) / name
        if not path.is_file():
            print(f"skip {name}: not found in {args.models_dir}")
            continue
        frames = frames_for(size, args.frames)
        n = len(frames)
        core_desc = ModelLoader().load_from_file(str(path)).eval()
        core_desc.model.float()
        core_desc(frames[:1, :64, :64].permute(0, 3, 1, 2))  # warm-up
        ours = up.Upscaler(up._spandrel_load(
            {k: v.float() for k, v in up.registry.unwrap_state_dict(up.registry.load_state_dict(path)).items()},
            name), torch.device("cpu"), "auto")
        ours(frames[:1, :64, :64].contiguous())  # warm-up (also moves/casts the model)
        # interleaved, best of N: the machine is shared, so single timings are noisy
        t_core = t_ours = c_core = c_ours = math.inf
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            ref = core_like(core_desc, frames)
            t_core = min(t_core, (time.perf_counter() - t) / n)
            c_core = min(c_core, (time.process_time() - c) / n)
            t, c = time.perf_counter(), time.process_time()
            y = ours(frames)
            t_ours = min(t_ours, (time.perf_counter() - t) / n)
            c_ours = min(c_ours, (time.process_time() - c) / n)
        fl = model_flops(core_desc, *size)
        row = {
            "model": name, "input": f"{size[1]}x{size[0]}", "frames": n,
            "core_s_per_frame": round(t_core, 3), "ours_s_per_frame": round(t_ours, 3),
            "speedup": round(t_core / t_ours, 2),
            "core_cpu_s_per_frame": round(c_core, 3), "ours_cpu_s_per_frame": round(c_ours, 3),
            "speedup_cpu_time": round(c_core / c_ours, 2), "ours_precision": str(ours.dtype).replace("torch.", ""),
            "gflop_per_frame": round(fl / 1e9, 1), "ours_gflops": round(fl / t_ours / 1e9, 1),
            "fraction_of_bf16_peak": round(fl / t_ours / peak, 3), "psnr_ours_vs_core_db": round(psnr(y, ref), 1),
        }
        rows.append(row)
        print(f"{name:28s} {row['input']:>8s}  core {t_core:7.2f} s/frame  ours {t_ours:7.2f} s/frame  "
              f"x{row['speedup']:.2f} (CPU time x{row['speedup_cpu_time']:.2f})  {row['ours_gflops']} GFLOP/s = {100 * row['fraction_of_bf16_peak']:.0f}% "
              f"of bf16 peak  PSNR {row['psnr_ours_vs_core_db']} dB")
    print(json.dumps({"peak_bf16_gflops": round(peak / 1e9, 1), "rows": rows}))


if __name__ == "__main__":
    main()
