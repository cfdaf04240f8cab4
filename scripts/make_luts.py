"""Build the looks shipped in ``luts/`` (33-point .cube files over display sRGB/Rec.709 values).

    python scripts/make_luts.py            # rewrites luts/*.cube

Each look is a small, smooth function of display RGB written out as a cube, so the files are
reproducible from this script and free of anyone else's grading data.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster.stages.lut import format_cube, identity_grid  # noqa: E402

LUMA = torch.tensor([0.2126, 0.7152, 0.0722], dtype=torch.float64)
SIZE = 33


def luma(x):
    return (x * LUMA).sum(-1, keepdim=True)


def s_curve(x, amount, pivot=0.45):
    """Contrast around ``pivot`` that keeps 0 and 1 fixed (a blend toward a smooth sigmoid)."""
    k = 1.0 + 6.0 * amount
    lo = pivot * (x / pivot).clamp(0, 1) ** k
    hi = 1 - (1 - pivot) * ((1 - x) / (1 - pivot)).clamp(0, 1) ** k
    sig = torch.where(x < pivot, lo, hi)
    return x + (sig - x) * amount


def saturation(x, s):
    y = luma(x)
    return y + (x - y) * s


def split_tone(x, shadows, highlights, amount):
    """Tint shadows and highlights by RGB offsets, weighted by luma."""
    y = luma(x)
    sh = torch.tensor(shadows, dtype=x.dtype) * (1 - y) ** 2
    hi = torch.tensor(highlights, dtype=x.dtype) * y**2
    return x + (sh + hi) * amount


def clean_studio(x):
    x = 0.012 + x * 0.985  # a hair of lift, no crushed blacks
    x = s_curve(x, 0.18)
    y = luma(x)
    x = saturation(x, 1.06 - 0.12 * y)  # livelier mid-tones, calm highlights
    return x


def warm_gym(x):
    x = s_curve(x, 0.32, pivot=0.42)
    x = split_tone(x, shadows=(-0.02, 0.0, 0.025), highlights=(0.05, 0.015, -0.045), amount=1.0)
    x = saturation(x, 1.15)
    return x


def neutral_film(x):
    # toe and shoulder: lifted blacks, rolled-off whites, soft mid contrast
    t = s_curve(x, 0.22, pivot=0.4)
    t = 0.03 + 0.93 * t
    t = saturation(t, 0.9)
    t = split_tone(t, shadows=(0.0, 0.006, 0.012), highlights=(0.012, 0.006, -0.01), amount=1.0)
    return t


LOOKS = {
    "clean_studio": (clean_studio, "Clean studio: neutral, gently contrasted, lifted shadows"),
    "warm_gym": (warm_gym, "Warm gym: punchy contrast, warm highlights, cool shadows, rich colour"),
    "neutral_film": (neutral_film, "Neutral film: toe and shoulder, lifted blacks, softer colour"),
}


def main(out_dir: Path = ROOT / "luts") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    grid = identity_grid(SIZE, torch.float64)
    for name, (fn, about) in LOOKS.items():
        cube = fn(grid).clamp(0, 1)
        text = format_cube(cube, title=name.replace("_", " ").title(), decimals=5,
                           comments=(about, "ComfyUI-Remaster look, made by scripts/make_luts.py",
                                     "Input and output: display sRGB/Rec.709 values"))
        (out_dir / f"{name}.cube").write_text(text)
        print(f"{name}.cube")


if __name__ == "__main__":
    main()
