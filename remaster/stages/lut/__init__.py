"""LUT grading stage: ``.cube`` LUTs (1D, 3D, or a 1D shaper followed by a 3D cube) applied with
trilinear or tetrahedral interpolation on any device. The file format lives in :mod:`.cube`, the
3D lookup (OpenColorIO on the CPU, torch elsewhere) in :mod:`.interp`.

Transfer curves: frames in a stream are display-referred (sRGB/Rec.709 encoded values, as decoded
from video). Most look LUTs expect exactly that, so ``lut_input="display"`` feeds the frame values
unchanged. For LUTs built for scene-linear or log input, ``lut_input="linear"`` or a log curve
converts the frame first, and ``lut_output`` says whether the LUT's output is in that same
encoding (a "look" LUT, converted back to display afterwards) or already display values (a
conversion LUT such as LogC→Rec.709).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ...analysis.colourspace import linear_to_srgb, srgb_to_linear
from ...analysis.curves import apply_1d
from ...stream import Chunk, FrameStream
from .cube import (MAX_1D_SIZE, MAX_3D_SIZE, MAX_FILE_BYTES, CubeLUT, LUTError, format_cube,  # noqa: F401
                   identity_grid, parse_cube, read_cube)
from .interp import INTERPOLATIONS, apply_3d

LUT_INPUTS = ("display", "linear", "logc3", "slog3")
LUT_OUTPUTS = ("same", "display")
SHIPPED_DIR = Path(__file__).resolve().parents[3] / "luts"
SHIPPED_PREFIX = "shipped/"


# ---- transfer curves (display = sRGB-encoded values) ----------------------------------------
# ARRI LogC3 (EI 800) and Sony S-Log3, from the vendors' published formulas
_LOGC = dict(cut=0.010591, a=5.555556, b=0.052272, c=0.247190, d=0.385537, e=5.367655, f=0.092809)


def _logc3_encode(x):
    k = _LOGC
    return torch.where(x > k["cut"], k["c"] * torch.log10((k["a"] * x + k["b"]).clamp(min=1e-10)) + k["d"],
                       k["e"] * x + k["f"])


def _logc3_decode(t):
    k = _LOGC
    return torch.where(t > k["e"] * k["cut"] + k["f"], (10 ** ((t - k["d"]) / k["c"]) - k["b"]) / k["a"],
                       (t - k["f"]) / k["e"])


def _slog3_encode(x):
    return torch.where(x >= 0.01125000,
                       (420.0 + torch.log10(((x + 0.01) / (0.18 + 0.01)).clamp(min=1e-10)) * 261.5) / 1023.0,
                       (x * (171.2102946929 - 95.0) / 0.01125000 + 95.0) / 1023.0)


def _slog3_decode(t):
    return torch.where(t >= 171.2102946929 / 1023.0,
                       (10.0 ** ((t * 1023.0 - 420.0) / 261.5)) * (0.18 + 0.01) - 0.01,
                       (t * 1023.0 - 95.0) * 0.01125000 / (171.2102946929 - 95.0))


def to_lut_input(display: torch.Tensor, lut_input: str) -> torch.Tensor:
    if lut_input == "display":
        return display
    lin = srgb_to_linear(display)
    if lut_input == "linear":
        return lin
    if lut_input == "logc3":
        return _logc3_encode(lin)
    if lut_input == "slog3":
        return _slog3_encode(lin)
    raise LUTError(f"lut_input must be one of {', '.join(LUT_INPUTS)}, got '{lut_input}'")


def from_lut_output(v: torch.Tensor, lut_input: str, lut_output: str) -> torch.Tensor:
    if lut_output == "display" or lut_input == "display":
        return v
    if lut_output != "same":
        raise LUTError(f"lut_output must be one of {', '.join(LUT_OUTPUTS)}, got '{lut_output}'")
    if lut_input == "linear":
        lin = v
    elif lut_input == "logc3":
        lin = _logc3_decode(v)
    else:
        lin = _slog3_decode(v)
    return linear_to_srgb(lin)


def apply_lut(frames: torch.Tensor, lut: CubeLUT, interpolation: str = "tetrahedral", strength: float = 1.0,
              lut_input: str = "display", lut_output: str = "same", clamp: bool = True) -> torch.Tensor:
    """Grade ``frames`` (``[..., 3]`` display values) with ``lut``; ``strength`` mixes with the input."""
    if strength == 0.0:
        return frames
    v = to_lut_input(frames, lut_input)
    if lut.shaper is not None:
        v = apply_1d(v, lut.shaper, lut.shaper_min, lut.shaper_max)
    if lut.cube is not None:
        v = apply_3d(v, lut.cube, lut.size, lut.domain_min, lut.domain_max, interpolation)
    v = from_lut_output(v, lut_input, lut_output)
    if strength != 1.0:
        v = frames + (v - frames) * strength
    if not clamp:
        return v
    return v.clamp(0.0, 1.0) if v is frames else v.clamp_(0.0, 1.0)  # a result of our own: in place


# ---------------------------------------------------------------------------------------------
# files offered to the user: the `luts` models folder plus the looks shipped in the repo
# ---------------------------------------------------------------------------------------------
def shipped_luts() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(SHIPPED_PREFIX + p.name for p in SHIPPED_DIR.glob("*.cube"))


def lut_choices() -> list[str]:
    from ... import host

    user = [n for n in host.list_model_files("luts") if n.lower().endswith(".cube")]
    return user + shipped_luts()


def resolve_lut(name: str) -> Path:
    """Path of a LUT chosen in a node: ``shipped/<file>`` or a file in the ``luts`` models folder."""
    if not name or not str(name).strip():
        raise LUTError("no LUT chosen: pick a .cube file (put your own in the 'luts' models folder)")
    if name.startswith(SHIPPED_PREFIX):
        p = SHIPPED_DIR / name[len(SHIPPED_PREFIX):]
        if p.is_file() and p.parent == SHIPPED_DIR:
            return p
        raise LUTError(f"shipped LUT '{name}' is missing from {SHIPPED_DIR}; choose another LUT")
    from ...models import registry

    try:
        return registry.resolve(name, "luts")
    except registry.ModelNotFound as exc:
        raise LUTError(str(exc)) from None


_lut_cache: dict = {}


def load_lut(name_or_path: str | os.PathLike) -> CubeLUT:
    """Read (and memoise by path, size and mtime) a LUT named in a node or given as a path."""
    p = Path(name_or_path)
    path = p if p.is_file() else resolve_lut(str(name_or_path))
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _lut_cache:
        if len(_lut_cache) > 16:
            _lut_cache.clear()
        _lut_cache[key] = read_cube(path)
    return _lut_cache[key]


def lut_stream(stream: FrameStream, lut_name: str, interpolation: str = "tetrahedral", strength: float = 1.0,
               lut_input: str = "display", lut_output: str = "same") -> FrameStream:
    """A new stream graded with a LUT (read now, so a bad file fails when the graph is built)."""
    from ... import host

    if interpolation not in INTERPOLATIONS:
        raise LUTError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got '{interpolation}'")
    if lut_input not in LUT_INPUTS:
        raise LUTError(f"lut_input must be one of {', '.join(LUT_INPUTS)}, got '{lut_input}'")
    if lut_output not in LUT_OUTPUTS:
        raise LUTError(f"lut_output must be one of {', '.join(LUT_OUTPUTS)}, got '{lut_output}'")
    if not 0.0 <= float(strength) <= 2.0:
        raise LUTError(f"strength must be between 0 and 2, got {strength}")
    lut = load_lut(lut_name)
    p = Path(lut_name)
    path = p if p.is_file() else resolve_lut(lut_name)
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    params = dict(lut=os.path.basename(str(lut_name)), sha=digest, interpolation=interpolation,
                  strength=float(strength), lut_input=lut_input, lut_output=lut_output)

    def make_fn():
        device = host.torch_device()

        def fn(chunk: Chunk) -> Chunk:
            host.check_interrupt()
            x = chunk.frames.to(device, torch.float32)
            y = apply_lut(x, lut, interpolation, float(strength), lut_input, lut_output)
            return chunk.with_(frames=y.cpu())

        return fn

    return stream.map("lut", params, make_fn)
