"""Film restoration bench: real clips damaged by the simulator, restored by ffmpeg's nearest chain
and by ours, scored against the clean clip.

    python bench/film.py [--frames 24] [--side 640] [--preset 16mm] [--stills docs/img] [--speed]

For each clip × severity (0.5, 1, 2 of the preset), the clean frames are damaged with
``film_damage`` (seed 1), then:
  * damaged: scored as is;
  * ffmpeg: the damaged frames piped (lossless RGB) through
    ``deshake, deflicker, normalize, removegrain, hqdn3d`` (the imageio-ffmpeg binary);
  * ours: Dust & Scratches → Stabilise (radius 4) → Restore Faded Colour (auto, deflicker) → Denoise
    (regrain 0, so the score is against the clean, grain-free picture).
Scores: PSNR and SSIM (luma, kornia) against the clean frames, and flicker = mean over frames of
|Δ mean luma(output) − Δ mean luma(clean)| between consecutive frames (×1000).
``--speed`` times each classical node alone on 720p frames in memory (frames/s from wall clock and
from the process's CPU time, which is what a free machine would see with one busy core).
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("REMASTER_SHARED", ROOT.parent / "shared"))

from remaster.media.decode import open_video
from remaster.stages import denoise_regrain as DN
from remaster.stages import dust_scratches as DS
from remaster.stages import fade_restore as FR
from remaster.stages import film_damage as D
from remaster.stages import stabilise as SB
from remaster.stages import tape_fixes as TF
from remaster.stream import from_tensor

CLIPS = ["juggle_720p24.mp4", "dog_720p30_audio.mp4", "bedroom_540p30.mp4"]
SEVERITIES = [0.5, 1.0, 2.0]
FFMPEG_CHAIN = ("deshake,deflicker=size=5:mode=am,normalize=smoothing=24:independence=1,"
                "removegrain=m0=4:m1=4:m2=4,hqdn3d")
LUMA = torch.tensor([0.2126, 0.7152, 0.0722])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(1 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    import kornia

    ya = (a @ LUMA)[:, None]
    yb = (b @ LUMA)[:, None]
    return float(kornia.metrics.ssim(ya, yb, 11).mean())


def flicker(a: torch.Tensor, clean: torch.Tensor) -> float:
    ma, mc = (a @ LUMA).mean((1, 2)), (clean @ LUMA).mean((1, 2))
    return float((ma.diff() - mc.diff()).abs().mean()) * 1000


def ffmpeg_chain(frames: torch.Tensor, fps: float) -> torch.Tensor:
    import imageio_ffmpeg

    n, h, w, _ = frames.shape
    raw = (frames.clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy().tobytes()
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
           "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", f"{fps}", "-i", "-", "-vf", FFMPEG_CHAIN,
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    out = subprocess.run(cmd, input=raw, capture_output=True, check=True).stdout
    y = np.frombuffer(out, np.uint8).reshape(-1, h, w, 3)[:n]
    return torch.from_numpy(y.astype(np.float32) / 255.0)


def ours(frames: torch.Tensor, fps: float) -> torch.Tensor:
    s = from_tensor(frames, fps)
    s = DS.dust_scratches(s)
    # a short path window: the gate's frame-to-frame weave goes, the camera's own moves (which the
    # clean reference has) stay; a long window would be penalised for steadying a hand-held camera
    s = SB.stabilise(s, SB.StabiliseSettings(radius=4))
    s = FR.restore_fade(s)
    s = DN.denoise_regrain(s, DN.DenoiseSettings(regrain=0.0))
    return s.read().frames


def load(name: str, frames: int, side: int) -> tuple:
    s = open_video(SHARED / "clips" / name, end_time=frames / 20.0 + 0.5, max_side=side)
    x = s.read().frames[:frames]
    return x, float(s.info.fps)


def damage(x: torch.Tensor, preset: str, severity: float) -> torch.Tensor:
    st = D.DamageSettings(preset=preset, severity=severity, seed=1)
    return D.film_damage(from_tensor(x), st).read().frames


def save_still(path: Path, rows: list, width: int = 960) -> None:
    import cv2

    img = np.concatenate([np.concatenate(r, 1) for r in rows], 0)
    s = width / img.shape[1]
    img = cv2.resize(img, (width, round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.jpg")
    cv2.imwrite(str(tmp), cv2.cvtColor((img * 255 + 0.5).clip(0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 82])
    os.replace(tmp, path)


def ours_tape(frames: torch.Tensor, fps: float) -> torch.Tensor:
    s = TF.tape_fixes(from_tensor(frames, fps))
    s = DS.dust_scratches(s, DS.DustSettings(scratches=False))
    return DN.denoise_regrain(s, DN.DenoiseSettings(regrain=0.0)).read().frames


def tape(clips: list, frames: int, side: int, stills: str) -> None:
    """VHS copies of the clips: damaged, ffmpeg's removegrain + hqdn3d, ours (Tape Fixes → Dust → Denoise)."""
    global FFMPEG_CHAIN
    chain, FFMPEG_CHAIN = FFMPEG_CHAIN, "removegrain=m0=4:m1=4:m2=4,hqdn3d"
    print("\n| clip (VHS, severity 1) | damaged PSNR / SSIM | ffmpeg removegrain+hqdn3d | ours |\n|---|---|---|---|")
    try:
        for name in clips:
            x, fps = load(name, frames, side)
            dmg = damage(x, "vhs", 1.0)
            ff, our = ffmpeg_chain(dmg, fps), ours_tape(dmg, fps)
            cells = [f"{psnr(y, x):.2f} / {ssim(y, x):.3f}" for y in (dmg, ff, our)]
            print(f"| {name.split('_')[0]} | " + " | ".join(cells) + " |", flush=True)
            if stills:
                i = frames // 2
                save_still(Path(stills) / f"tape_{name.split('_')[0]}.jpg", [[dmg[i].numpy(), our[i].numpy()]])
    finally:
        FFMPEG_CHAIN = chain


def presets_still(path: Path, name: str = "dog_720p30_audio.mp4", side: int = 480) -> None:
    x, _ = load(name, 6, side)
    tiles = [x[5].numpy()] + [D.damage_frame(x[5].numpy(), 5, D.DamageSettings(preset=p, seed=1))[0] for p in D.PRESETS]
    save_still(path, [tiles[:3], tiles[3:]])


def speed(frames: int = 12) -> dict:
    x, fps = load("juggle_720p24.mp4", frames, 1280)
    dmg = damage(x, "16mm", 1.0)
    vhs = damage(x, "vhs", 1.0)
    out = {}
    for name, fn, src in [("Film Damage (16mm)", lambda s: D.film_damage(s, D.DamageSettings()), x),
                          ("Dust & Scratches", DS.dust_scratches, dmg), ("Stabilise", SB.stabilise, dmg),
                          ("Restore Faded Colour", FR.restore_fade, dmg), ("Tape Fixes", TF.tape_fixes, vhs),
                          ("Denoise & Regrain", DN.denoise_regrain, dmg)]:
        stream = from_tensor(src, fps)  # built (and its input hashed) outside the node's timing
        t, c = time.perf_counter(), time.process_time()
        fn(stream).read()
        out[name] = (frames / (time.perf_counter() - t), frames / (time.process_time() - c))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--side", type=int, default=640)
    ap.add_argument("--preset", default="16mm")
    ap.add_argument("--clips", nargs="*", default=CLIPS)
    ap.add_argument("--stills", default="")
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--tape", action="store_true", help="also the VHS table (and stills)")
    ap.add_argument("--skip-film", action="store_true")
    a = ap.parse_args()
    print("| clip | severity | damaged PSNR / SSIM / flicker | ffmpeg chain | ours |")
    print("|---|---|---|---|---|")
    summary: dict = {}
    for name in ([] if a.skip_film else a.clips):
        x, fps = load(name, a.frames, a.side)
        for sev in SEVERITIES:
            dmg = damage(x, a.preset, sev)
            ff = ffmpeg_chain(dmg, fps)
            t = time.perf_counter()
            our = ours(dmg, fps)
            el = time.perf_counter() - t
            cells = []
            for key, y in (("damaged", dmg), ("ffmpeg", ff), ("ours", our)):
                m = (psnr(y, x), ssim(y, x), flicker(y, x))
                summary.setdefault((sev, key), []).append(m)
                cells.append(f"{m[0]:.2f} / {m[1]:.3f} / {m[2]:.2f}")
            print(f"| {name.split('_')[0]} | {sev} | " + " | ".join(cells) + f" |  <!-- ours {a.frames / el:.1f} fps -->",
                  flush=True)
            if a.stills and sev == 1.0:
                i = a.frames // 2
                save_still(Path(a.stills) / f"film_{name.split('_')[0]}.jpg",
                           [[x[i].numpy(), dmg[i].numpy()], [ff[i].numpy(), our[i].numpy()]])
    print("\nmean over clips:\n\n| severity | damaged | ffmpeg chain | ours |\n|---|---|---|---|")
    for sev in ([] if a.skip_film else SEVERITIES):
        cells = []
        for key in ("damaged", "ffmpeg", "ours"):
            m = np.mean(summary[(sev, key)], 0)
            cells.append(f"{m[0]:.2f} dB / {m[1]:.3f} / {m[2]:.2f}")
        print(f"| {sev} | " + " | ".join(cells) + " |")
    if a.tape:
        tape(a.clips, a.frames, a.side, a.stills)
        if a.stills:
            presets_still(Path(a.stills) / "film_presets.jpg")
    if a.speed:
        print("\n| node (720p, frames in memory) | frames/s (wall) | frames/s (CPU time, all threads) |\n|---|---|---|")
        for k, (wall, cpu) in speed().items():
            print(f"| {k} | {wall:.1f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
