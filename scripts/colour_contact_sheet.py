"""Contact sheet for docs/colour.md: before/after of the colour nodes on real clips.

    python scripts/colour_contact_sheet.py [--clips ../shared/clips] [--out docs/img/colour_contact_sheet.png]

Per clip (one row): the original frame; the same footage degraded (warm cast, lifted blacks, dim
and flat); automatic colour on the degraded footage; that plus the shipped clean-studio LUT; the
original with the warm-gym LUT; the original with the neutral-film LUT and grain.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import colour, film, lut  # noqa: E402
from remaster.analysis.colourspace import linear_to_srgb, srgb_to_linear  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402
from sheet import label, stack, write  # noqa: E402

TILE_W = 384


def degrade(x: torch.Tensor) -> torch.Tensor:
    warm = linear_to_srgb(srgb_to_linear(x) * torch.tensor([1.3, 1.0, 0.7]))
    return (0.12 + 0.62 * warm).clamp(0, 1)  # lifted blacks, dim whites


def row(path: Path, seconds: float, pick: int) -> np.ndarray:
    src = open_video(path, end_time=seconds, max_side=TILE_W)
    orig = src.read().frames
    bad = from_tensor(degrade(orig), src.info.fps)
    auto = colour.auto_colour(bad, local_contrast=0.2)
    studio = lut.lut_stream(auto, "shipped/clean_studio.cube")
    gym = lut.lut_stream(src, "shipped/warm_gym.cube")
    filmic = film.film_look(lut.lut_stream(src, "shipped/neutral_film.cube"), grain_amount=0.02, seed=1)
    tiles = [
        ("original", orig),
        ("degraded (cast, flat)", bad.read().frames),
        ("auto colour on degraded", auto.read().frames),
        ("+ LUT clean studio", studio.read().frames),
        ("original + LUT warm gym", gym.read().frames),
        ("original + neutral film + grain", filmic.read().frames),
    ]
    imgs = []
    for name, frames in tiles:
        f = (frames[pick].clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)
        imgs.append(label(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), name))
    return np.concatenate(imgs, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", default=str(ROOT.parent / "shared" / "clips"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "img" / "colour_contact_sheet.png"))
    args = ap.parse_args()
    clips = Path(args.clips)
    rows = [row(clips / "dog_720p30_audio.mp4", 1.0, 20), row(clips / "juggle_720p24.mp4", 1.0, 12),
            row(clips / "talking_head_512_30_audio.mp4", 1.0, 15)]
    write(args.out, stack(rows, max_width=1600))

if __name__ == "__main__":
    main()
