"""Edges of Replace Background on a real clip with real matting weights: fringe and remnants.

    python bench/background_edges.py [--frames 40] [--side 540] [--old REV]

The fullbody clip is matted with RobustVideoMatting (real weights from ../shared/models, matte
stabilised as Video Matting does) and put over the `enhance` workflow's backdrop (the frame's own
background, blurred and darkened) and over a flat colour. In a 3-pixel band just outside the
matte (alpha < 0.5 next to alpha >= 0.5) the composite should be the new background: the table
gives the mean luma bias (a bright fringe is positive) and the mean absolute difference from the
new background, on all frames and on the fastest-moving ones (hands), with light wrap off.
``--old REV`` also scores the background module as it was at git revision REV.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(ROOT))

from remaster.media.decode import open_video  # noqa: E402
from remaster.stages import background as bgm  # noqa: E402
from remaster.stages import mask_tools, matting  # noqa: E402
from remaster.stream import from_tensor  # noqa: E402

SHARED = ROOT.parent / "shared"
LW = torch.tensor([0.2126, 0.7152, 0.0722])


def band(alpha: torch.Tensor, px: int = 3) -> torch.Tensor:
    inside = (alpha >= 0.5).float().unsqueeze(1)
    grown = F.max_pool2d(inside, 2 * px + 1, 1, px).squeeze(1)
    return (grown > 0.5) & (alpha < 0.5)


def old_module(rev: str):
    text = subprocess.run(["git", "show", f"{rev}:remaster/stages/background.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "background_old.py"
    path.write_text(text.replace("from ..stream", "from remaster.stream").replace("from .mask_tools", "from remaster.stages.mask_tools"))
    spec = importlib.util.spec_from_file_location("background_old", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def score(mod, matted, frames, alpha, fast, source):
    kw = dict(source=source, color="#1b2a3a", blur=24.0, darken=0.45, decontaminate_edges=True, wrap=0.0)
    out = mod.replace_background(matted, **kw).read().frames
    if source == "blur":
        bg = mod.replace_background(from_tensor(frames, 25, mask=torch.zeros_like(alpha)), **kw).read().frames
        if hasattr(bgm, "blurred_backdrop") and mod is bgm:
            bg = bgm.blurred_backdrop(frames, alpha, 24.0, 0.45)
    else:
        bg = torch.tensor(bgm.parse_color("#1b2a3a")).expand_as(out)
    b = band(alpha)
    d = out - bg
    rows = []
    for name, sel in (("all frames", slice(None)), ("fast motion", fast)):
        m = b[sel]
        dd = d[sel][m]
        rows.append((name, float((dd @ LW).mean()), float(dd.abs().mean())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--side", type=int, default=540)
    ap.add_argument("--old", default="")
    args = ap.parse_args()
    frames = open_video(SHARED / "clips" / "fullbody_720x1080_25_audio.mp4", max_side=args.side).read(0, args.frames).frames.clone()
    model = str(SHARED / "models" / "matting" / "rvm_mobilenetv3.pth")
    matted = mask_tools.smooth_stream(matting.rvm_matte(from_tensor(frames, 25), model), strength=0.8)
    ch = matted.read()
    alpha = ch.mask
    matted = from_tensor(frames, 25, mask=alpha)
    motion = (alpha[1:] - alpha[:-1]).abs().mean((1, 2))
    fast = (torch.argsort(motion, descending=True)[: max(1, len(motion) // 5)] + 1).sort().values
    mods = [("new", bgm)] + ([(f"at {args.old}", old_module(args.old))] if args.old else [])
    print("| module | backdrop | frames | luma bias in band | mean abs diff in band |\n|---|---|---|---|---|")
    for label, mod in mods:
        for source in ("blur", "color"):
            for name, bias, mad in score(mod, matted, frames, alpha, fast, source):
                print(f"| {label} | {source} | {name} | {bias:+.4f} | {mad:.4f} |")


if __name__ == "__main__":
    main()
