"""The trainer case, measured: a phone in a dim room.

    python bench/trainer.py [--frames 16] [--clips talking_head_512_30_audio.mp4,bedroom_540p30.mp4]

Real clean clips are degraded the way such a phone records them: half size, darker by a display
gamma of 1.4, a warm (or green) cast, sensor noise, strong H.264 compression (PyAV, CRF 34).
Each degraded clip is then

* ``bicubic``: plainly upscaled x2 (the baseline);
* ``colour+x2``: Auto Colour (the shipped ``enhance`` settings) then Real-ESRGAN general v3 x2;
* ``chain``: the pack's enhancement chain: Relight (natural; the exposure measured on the whole
  frame, or on the person through a Video Matting (RVM) matte) + Auto Colour + x2 with
  realesr-general-x4v3 (which also removes noise and compression artefacts);

and scored against the clean original: PSNR, SSIM (luma, Gaussian window) and flicker (mean
absolute frame-to-frame change of the mean luma, compared with the clean clip's). A second table
checks Auto Colour alone against not running it, on dim and on faded (low-contrast) copies.
``--oracle`` prints only what each fault costs: the degraded clip upscaled by bicubic with the
known cast, the known gamma, or both undone exactly (the ceiling of any light/colour correction).
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]  # bench/colour.py
sys.path.insert(0, str(ROOT))

from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import colour as C  # noqa: E402
from remaster.stages import relight as R  # noqa: E402
from remaster.stages import upscale as U  # noqa: E402
from remaster.stages.lut import linear_to_srgb, srgb_to_linear  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402

SHARED = ROOT.parent / "shared"
LW = torch.tensor([0.2126, 0.7152, 0.0722])
CASTS = {"warm": torch.tensor([1.18, 1.0, 0.78]), "green": torch.tensor([0.88, 1.1, 0.86])}
ENHANCE = C.AutoColourSettings(white_balance="white_patch", wb_strength=0.8, vibrance=0.1)  # enhance.json


def h264(frames: torch.Tensor, crf: int = 34, fps: int = 25) -> torch.Tensor:
    """Encode and decode through libx264 (yuv420p) with PyAV."""
    import av

    buf = io.BytesIO()
    n, h, w, _ = frames.shape
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"crf": str(crf), "preset": "veryfast"}
        for f in frames:
            arr = (f.clamp(0, 1) * 255 + 0.5).byte().numpy()
            for pkt in st.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    buf.seek(0)
    with av.open(buf) as inp:
        dec = [torch.from_numpy(fr.to_ndarray(format="rgb24")).float() / 255 for fr in inp.decode(video=0)]
    return torch.stack(dec)


def phone(clean: torch.Tensor, cast: str = "warm", gamma: float = 1.4, noise: float = 0.02, seed: int = 0) -> torch.Tensor:
    n, h, w, _ = clean.shape
    x = F.interpolate(clean.permute(0, 3, 1, 2), size=(h // 2 // 2 * 2, w // 2 // 2 * 2), mode="area").permute(0, 2, 3, 1)
    x = linear_to_srgb(srgb_to_linear(x.clamp(0, 1) ** gamma) * CASTS[cast]).clamp(0, 1)
    g = torch.Generator().manual_seed(seed)
    lin = srgb_to_linear(x)
    x = linear_to_srgb((lin + torch.randn(x.shape, generator=g) * noise * lin.clamp(min=0.02).sqrt()).clamp(0, 1))
    return h264(x)


def faded(clean: torch.Tensor) -> torch.Tensor:
    """An archive-like faded copy: lifted blacks, lowered whites, a yellowed, weaker colour."""
    y = (clean @ LW).unsqueeze(-1)
    x = y + (clean - y) * 0.6
    return (0.16 + 0.62 * x) * torch.tensor([1.03, 1.0, 0.9])


def bicubic(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x.permute(0, 3, 1, 2), size=size, mode="bicubic", align_corners=False).permute(0, 2, 3, 1).clamp(0, 1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1.0 / ((a - b) ** 2).mean().clamp(min=1e-12)))


def ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of luma (Gaussian window sigma 1.5, the usual constants)."""
    x, y = (a @ LW).unsqueeze(1), (b @ LW).unsqueeze(1)
    k = torch.exp(-0.5 * (torch.arange(11) - 5.0) ** 2 / 1.5**2)
    k = (k / k.sum()).float()
    win = (k[:, None] * k[None, :]).view(1, 1, 11, 11)

    def blur(t):
        return F.conv2d(t, win)

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return float(s.mean())


def flicker(x: torch.Tensor) -> float:
    return float((x @ LW).mean((1, 2)).diff().abs().mean())


def delta_e(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean CIEDE2000 between two clips (colour-science)."""
    import colour

    def lab(t):
        xyz = colour.sRGB_to_XYZ(t.numpy().astype(np.float64))
        return colour.XYZ_to_Lab(xyz)

    return float(np.mean(colour.delta_E(lab(a), lab(b), method="CIE 2000")))


def run_chain(deg: torch.Tensor, size, relight: str = "", fps: int = 25) -> torch.Tensor:
    s = from_tensor(deg, fps)
    if relight == "frame":  # the whole frame's exposure drives the curve
        s = R.relight(s, R.preset("natural", target="both"))
    elif relight == "matte":  # the person's matte guides the exposure (the whole frame gets the new light)
        from remaster.stages import matting

        rvm = str(SHARED / "models" / "matting" / "rvm_mobilenetv3.pth")
        s = R.relight(matting.rvm_matte(s, rvm, reset_at_cuts=False), R.preset("natural", target="both"))
    s = C.auto_colour(s, ENHANCE)
    model = str(SHARED / "models" / "realesrgan" / "realesr-general-x4v3.pth")
    s = U.upscale(s, model, target_height=size[0])
    out = s.read().frames
    if tuple(out.shape[1:3]) != tuple(size):
        out = bicubic(out, size)
    return out


def oracle_rows(name: str, clean: torch.Tensor, size, gamma: float = 1.4) -> None:
    """What each known fault costs: bicubic x2 with the cast, the gamma, or both undone exactly."""
    for cast in ("warm", "green"):
        bic = bicubic(phone(clean, cast, gamma), size)

        def no_cast(x):
            return linear_to_srgb(srgb_to_linear(x) / CASTS[cast]).clamp(0, 1)

        def no_gamma(x):
            return x.clamp(0, 1) ** (1 / gamma)

        base = psnr(bic, clean)
        for label, v in (("bicubic", bic), ("cast undone", no_cast(bic)), ("gamma undone", no_gamma(bic)),
                         ("both undone", no_gamma(no_cast(bic)))):
            print(f"| {name.split('_')[0]} {cast} | {label} | {psnr(v, clean):.2f} ({psnr(v, clean) - base:+.1f}) | "
                  f"{ssim(v, clean):.4f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--side", type=int, default=384, help="long side of the clean reference")
    ap.add_argument("--colour-only", action="store_true", help="only the Auto Colour table")
    ap.add_argument("--oracle", action="store_true", help="only the per-fault ceiling table")
    ap.add_argument("--clips", default="talking_head_512_30_audio.mp4,bedroom_540p30.mp4,fullbody_720x1080_25_audio.mp4")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows, colour_rows = [], []
    for i, name in enumerate(args.clips.split(",")):
        clean = open_video(SHARED / "clips" / name, max_side=args.side).read(0, args.frames).frames.clone()
        clean = clean[:, : clean.shape[1] // 4 * 4, : clean.shape[2] // 4 * 4].contiguous()
        size = tuple(clean.shape[1:3])
        if args.oracle:
            oracle_rows(name, clean, size)
            continue
        for cast in () if args.colour_only else ("warm", "green") if i == 0 else ("warm",):
            deg = phone(clean, cast)
            t = time.perf_counter()
            results = {"bicubic": bicubic(deg, size), "colour+x2": run_chain(deg, size),
                       "chain (frame exposure)": run_chain(deg, size, "frame"),
                       "chain (person exposure, RVM)": run_chain(deg, size, "matte")}
            wall = time.perf_counter() - t
            for k, v in results.items():
                rows.append((f"{name.split('_')[0]} {cast}", k, psnr(v, clean), ssim(v, clean), flicker(v), flicker(clean)))
            print(f"{name} {cast}: {wall:.0f} s", flush=True)
        # Auto Colour alone against not running it, at the clean size
        small = phone(clean, "warm")
        ref = bicubic(small, size)
        for label, src in (("dim", ref), ("faded", faded(clean))):
            out = C.auto_colour(from_tensor(src, 25), ENHANCE).read().frames
            colour_rows.append((f"{name.split('_')[0]} {label}", psnr(src, clean), psnr(out, clean),
                                ssim(src, clean), ssim(out, clean)))
        out = C.auto_colour(from_tensor(clean, 25), ENHANCE).read().frames
        rl = R.relight(from_tensor(clean, 25), R.preset("natural", target="both")).read().frames
        both = C.auto_colour(from_tensor(rl, 25), ENHANCE).read().frames
        colour_rows.append((f"{name.split('_')[0]} clean: mean dE2000 colour {delta_e(out, clean):.2f}, "
                            f"relight+colour {delta_e(both, clean):.2f}", 0, 0, 0, 0))
    print("\n| clip | method | PSNR dB | SSIM | flicker | clean flicker |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.4f} | {r[4]:.4f} | {r[5]:.4f} |")
    print("\n| clip | PSNR without | PSNR Auto Colour | SSIM without | SSIM Auto Colour |\n|---|---|---|---|---|")
    for r in colour_rows:
        if r[1] == 0:
            print(f"| {r[0]} | | | | |")
        else:
            print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.4f} | {r[4]:.4f} |")


if __name__ == "__main__":
    main()
