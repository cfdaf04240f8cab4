"""LUT grading: a ``.cube`` reader (1D, 3D, or a 1D shaper followed by a 3D cube) and LUT
application in torch on any device, with trilinear or tetrahedral interpolation.

The ``.cube`` format (Adobe/Resolve): ``TITLE "..."``, ``LUT_1D_SIZE n`` and/or ``LUT_3D_SIZE n``,
``DOMAIN_MIN r g b`` / ``DOMAIN_MAX r g b`` (Adobe) or ``LUT_1D_INPUT_RANGE lo hi`` /
``LUT_3D_INPUT_RANGE lo hi`` (Resolve), ``#`` comments, then one ``r g b`` line per entry with red
changing fastest. A file with both sizes holds the 1D shaper table first, then the cube.

Transfer curves: frames in a stream are display-referred (sRGB/Rec.709 encoded values, as decoded
from video). Most look LUTs expect exactly that, so ``lut_input="display"`` feeds the frame values
unchanged. For LUTs built for scene-linear or log input, ``lut_input="linear"`` or a log curve
converts the frame first, and ``lut_output`` says whether the LUT's output is in that same
encoding (a "look" LUT, converted back to display afterwards) or already display values (a
conversion LUT such as LogC→Rec.709).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ..analysis.colourspace import linear_to_srgb, srgb_to_linear
from ..analysis.curves import apply_1d, normalise_range
from ..stream import Chunk, FrameStream

MAX_3D_SIZE = 65
MAX_1D_SIZE = 65536
MAX_FILE_BYTES = 64 * 2**20
INTERPOLATIONS = ("tetrahedral", "trilinear")
LUT_INPUTS = ("display", "linear", "logc3", "slog3")
LUT_OUTPUTS = ("same", "display")
SHIPPED_DIR = Path(__file__).resolve().parents[2] / "luts"
SHIPPED_PREFIX = "shipped/"


class LUTError(ValueError):
    """A LUT file could not be read or used; the message names the file and the fix."""


@dataclass
class CubeLUT:
    """A parsed ``.cube``. Tables are float32; ``cube`` is flat ``[N**3, 3]`` in file order
    (index ``r + g*N + b*N*N``), ``shaper`` is ``[M, 3]``."""

    title: str = ""
    size: int = 0  # 3D size (0 = no cube)
    cube: Optional[torch.Tensor] = None
    domain_min: tuple = (0.0, 0.0, 0.0)
    domain_max: tuple = (1.0, 1.0, 1.0)
    shaper: Optional[torch.Tensor] = None
    shaper_min: tuple = (0.0, 0.0, 0.0)
    shaper_max: tuple = (1.0, 1.0, 1.0)
    source: str = ""
    comments: list = field(default_factory=list)

    @property
    def kind(self) -> str:
        if self.cube is not None and self.shaper is not None:
            return "1D+3D"
        return "3D" if self.cube is not None else "1D"

    def cube_grid(self) -> torch.Tensor:
        """The cube as ``[N(r), N(g), N(b), 3]`` (the layout colour-science's LUT3D uses)."""
        n = self.size
        return self.cube.reshape(n, n, n, 3).permute(2, 1, 0, 3).contiguous()


# ---------------------------------------------------------------------------------------------
# reading and writing
# ---------------------------------------------------------------------------------------------
_NUM = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def _floats(parts: list, n: int, where: str) -> tuple:
    if len(parts) != n:
        raise LUTError(f"{where}: expected {n} numbers, found {len(parts)}")
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise LUTError(f"{where}: '{' '.join(parts)}' is not a list of numbers") from None
    if not all(math.isfinite(v) for v in vals):
        raise LUTError(f"{where}: values must be finite numbers")
    return vals


def parse_cube(text: str, source: str = "<text>") -> CubeLUT:
    """Parse ``.cube`` text. Raises :class:`LUTError` with the line number on malformed input."""
    lut = CubeLUT(source=source)
    size1 = size3 = 0
    rows: list = []
    data_started = False
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{source} line {lineno}"
        if not line:
            continue
        if line.startswith("#"):
            lut.comments.append(line[1:].strip())
            continue
        parts = line.split()
        key = parts[0].upper()
        if _NUM.match(parts[0]) or key in ("NAN", "-NAN", "INF", "-INF", "+INF"):
            data_started = True
            if len(parts) != 3:
                raise LUTError(f"{where}: a table line needs 3 numbers (r g b), found {len(parts)}: '{line[:60]}'")
            try:
                vals = [float(v) for v in parts]
            except ValueError:
                raise LUTError(f"{where}: '{line[:60]}' is not three numbers") from None
            if not all(math.isfinite(v) for v in vals):
                raise LUTError(f"{where}: NaN or infinite value in the table")
            rows.append(vals)
            continue
        if data_started:
            raise LUTError(f"{where}: keyword '{parts[0]}' after the table started; keywords must come first")
        if key == "TITLE":
            m = re.match(r'^\S+\s+"?(.*?)"?\s*$', line)
            lut.title = m.group(1) if m else ""
        elif key in ("LUT_3D_SIZE", "LUT_1D_SIZE"):
            if len(parts) != 2 or not parts[1].isdigit():
                raise LUTError(f"{where}: {key} needs one whole number, got '{line[:60]}'")
            n = int(parts[1])
            if key == "LUT_3D_SIZE":
                if not 2 <= n <= MAX_3D_SIZE:
                    raise LUTError(
                        f"{where}: LUT_3D_SIZE {n} is outside 2..{MAX_3D_SIZE}; resample the LUT to "
                        f"{MAX_3D_SIZE} points or fewer (e.g. 33 or 65) in your grading tool"
                    )
                size3 = n
            else:
                if not 2 <= n <= MAX_1D_SIZE:
                    raise LUTError(f"{where}: LUT_1D_SIZE {n} is outside 2..{MAX_1D_SIZE}")
                size1 = n
        elif key == "DOMAIN_MIN":
            lut.domain_min = lut.shaper_min = _floats(parts[1:], 3, where)
        elif key == "DOMAIN_MAX":
            lut.domain_max = lut.shaper_max = _floats(parts[1:], 3, where)
        elif key == "LUT_3D_INPUT_RANGE":
            lo, hi = _floats(parts[1:], 2, where)
            lut.domain_min, lut.domain_max = (lo,) * 3, (hi,) * 3
        elif key == "LUT_1D_INPUT_RANGE":
            lo, hi = _floats(parts[1:], 2, where)
            lut.shaper_min, lut.shaper_max = (lo,) * 3, (hi,) * 3
        elif re.match(r"^[A-Z][A-Z0-9_]*$", key):
            continue  # other vendors' keywords (e.g. LUT_IN_VIDEO_RANGE) carry no table data
        else:
            raise LUTError(f"{where}: cannot read '{line[:60]}' (not a keyword, comment or r g b line)")
    if not size1 and not size3:
        raise LUTError(f"{source}: no LUT_3D_SIZE or LUT_1D_SIZE line; this is not a .cube LUT")
    expected = size1 + size3**3
    if len(rows) != expected:
        what = " + ".join(x for x in (f"{size1} (1D)" if size1 else "", f"{size3}^3 (3D)" if size3 else "") if x)
        raise LUTError(f"{source}: the table has {len(rows)} r g b lines but the sizes declare {what} = {expected}")
    table = torch.tensor(rows, dtype=torch.float64)
    for lo, hi, what in ((lut.domain_min, lut.domain_max, "3D"), (lut.shaper_min, lut.shaper_max, "1D")):
        if any(h <= l for l, h in zip(lo, hi)):
            raise LUTError(f"{source}: the {what} domain maximum {hi} must be above its minimum {lo}")
    if size1:
        lut.shaper = table[:size1].float().contiguous()
    if size3:
        lut.size = size3
        lut.cube = table[size1:].float().contiguous()
    return lut


def read_cube(path: str | os.PathLike) -> CubeLUT:
    p = Path(path)
    if not p.is_file():
        raise LUTError(f"LUT file '{p}' does not exist")
    size = p.stat().st_size
    if size > MAX_FILE_BYTES:
        raise LUTError(
            f"LUT file '{p.name}' is {size / 2**20:.0f} MB; .cube files above {MAX_FILE_BYTES // 2**20} MB are "
            f"refused (a {MAX_3D_SIZE}^3 cube is about 7 MB)"
        )
    try:
        text = p.read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise LUTError(f"LUT file '{p.name}' is not a text .cube file") from None
    return parse_cube(text, source=p.name)


def format_cube(cube_grid_rgb: torch.Tensor, title: str = "", comments: tuple = (), decimals: int = 6) -> str:
    """``.cube`` text for a cube given as ``[N(r), N(g), N(b), 3]`` over the 0..1 domain."""
    n = int(cube_grid_rgb.shape[0])
    lines = [f"# {c}" for c in comments]
    if title:
        lines.append(f'TITLE "{title}"')
    lines += [f"LUT_3D_SIZE {n}", "DOMAIN_MIN 0.0 0.0 0.0", "DOMAIN_MAX 1.0 1.0 1.0"]
    flat = cube_grid_rgb.permute(2, 1, 0, 3).reshape(-1, 3).double().tolist()
    fmt = f"{{:.{decimals}f}} {{:.{decimals}f}} {{:.{decimals}f}}"
    lines += [fmt.format(*row) for row in flat]
    return "\n".join(lines) + "\n"


def identity_grid(n: int, dtype=torch.float32) -> torch.Tensor:
    """The identity cube ``[N(r), N(g), N(b), 3]``."""
    v = torch.linspace(0, 1, n, dtype=dtype)
    r, g, b = torch.meshgrid(v, v, v, indexing="ij")
    return torch.stack([r, g, b], -1)


# ---------------------------------------------------------------------------------------------
# lookup
# ---------------------------------------------------------------------------------------------
def apply_3d(x: torch.Tensor, cube: torch.Tensor, size: int, lo=(0.0,) * 3, hi=(1.0,) * 3,
             interpolation: str = "tetrahedral", block: int = 262144) -> torch.Tensor:
    """Look ``x`` (``[..., 3]``) up in a flat cube (``[N**3, 3]``, red fastest).

    Works in planar blocks of ``block`` pixels so every temporary stays in cache; the corners are
    fetched with one ``gather`` per corner from a planar ``[3, N**3]`` table."""
    if interpolation not in INTERPOLATIONS:
        raise LUTError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got '{interpolation}'")
    if x.device.type == "cpu" and x.dtype == torch.float32:
        proc = _ocio_processor(cube, size, interpolation)
        if proc is not None:
            return _apply_ocio(proc, normalise_range(x, lo, hi))
    shape = x.shape
    flat = x.reshape(-1, 3)
    table = cube.to(x.device, x.dtype).t().contiguous()
    fn = _tetrahedral if interpolation == "tetrahedral" else _trilinear
    if x.device.type != "cpu":
        block = max(block, 1 << 24)  # one launch per frame on accelerators
    out = torch.empty_like(flat)
    for s in range(0, flat.shape[0], block):
        # (de)interleave through unbind/stack and per-channel copies: far cheaper than .t()
        p = torch.stack(normalise_range(flat[s:s + block], lo, hi).unbind(1), 0)
        res = fn(p, table, size)
        dst = out[s:s + block]
        for c in range(3):
            dst[:, c].copy_(res[c])
    return out.reshape(shape)


# ---- CPU: OpenColorIO's SIMD 3D LUT (same tetrahedral/trilinear interpolation), rows in threads
_ocio_cache: dict = {}
_ocio_pool = None


def _ocio_processor(cube: torch.Tensor, size: int, interpolation: str):
    """An OpenColorIO CPU processor for the cube, or None when OpenColorIO is not installed."""
    key = (cube.data_ptr(), cube._version, size, interpolation)
    hit = _ocio_cache.get(key)
    if hit is not None:
        return hit[1]
    try:
        import PyOpenColorIO as OCIO
    except ImportError:
        return None
    n = size
    grid = cube.detach().float().cpu().reshape(n, n, n, 3).permute(2, 1, 0, 3).contiguous()  # [r,g,b,3]: blue fastest
    t = OCIO.Lut3DTransform()
    t.setGridSize(n)
    t.setInterpolation(OCIO.INTERP_TETRAHEDRAL if interpolation == "tetrahedral" else OCIO.INTERP_LINEAR)
    t.setData(grid.numpy().reshape(-1))
    config = OCIO.Config.CreateRaw()
    config.setProcessorCacheFlags(OCIO.PROCESSOR_CACHE_OFF)  # its cache key ignores the table data
    proc = config.getProcessor(t).getDefaultCPUProcessor()
    if len(_ocio_cache) > 8:
        _ocio_cache.clear()
    _ocio_cache[key] = (cube, proc)  # the tensor is kept so its address is not reused
    return proc


def _apply_ocio(proc, x: torch.Tensor) -> torch.Tensor:
    """Apply in place on ``x`` (a fresh tensor from :func:`_normalise`), in bands of pixels
    across threads (OpenColorIO releases the GIL)."""
    global _ocio_pool
    out = x.contiguous()
    flat = out.numpy().reshape(-1, 3)
    workers = max(1, min(8, os.cpu_count() or 1))
    if _ocio_pool is None:
        from concurrent.futures import ThreadPoolExecutor

        _ocio_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remaster-lut")
    step = max(65536, -(-flat.shape[0] // (workers * 4)))
    bands = [flat[s:s + step] for s in range(0, flat.shape[0], step)]
    list(_ocio_pool.map(proc.applyRGB, bands))
    return out


def _cell(p: torch.Tensor, n: int):
    """Base corner index (as float, exact below 2**24) and fractions of planar points [3, P]."""
    s = p * (n - 1)
    i0 = s.floor().clamp_(max=n - 2)
    f = s - i0
    base = i0[0] + i0[1] * n + i0[2] * (n * n)
    return base, f


def _corner(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    if idx.dtype != torch.long:
        idx = idx.long()
    return table.gather(1, idx.unsqueeze(0).expand(3, -1))


def _tetra_offsets(n: int, device) -> torch.Tensor:
    """For each comparison code ``4*(r>=g) + 2*(r>=b) + (g>=b)``: the flat-index offsets of the
    tetrahedron's second corner (step along the largest fraction) and third corner (steps along
    the two largest)."""
    stride = (1, n, n * n)
    rows = []
    for code in range(8):
        a, b, c = code >> 2 & 1, code >> 1 & 1, code & 1
        mx = 0 if (a and b) else (1 if c else 2)
        mn = 0 if not (a or b) else (1 if (a and not c) else 2)
        if mx == mn:  # contradictory code (cannot occur): any order is fine
            mx, mn = 0, 2
        rows.append((stride[mx], sum(stride) - stride[mn]))
    return torch.tensor(rows, dtype=torch.long, device=device)


def _tetrahedral(p: torch.Tensor, table: torch.Tensor, n: int) -> torch.Tensor:
    base, f = _cell(p, n)
    fr, fg, fb = f[0], f[1], f[2]
    fmax = torch.maximum(torch.maximum(fr, fg), fb)
    fmin = torch.minimum(torch.minimum(fr, fg), fb)
    fmid = fr + fg + fb - fmax - fmin
    code = (fr >= fg).long().mul_(4).add_((fr >= fb).long().mul_(2)).add_((fg >= fb).long())
    off = _tetra_offsets(n, p.device)
    b0 = base.long()
    c0 = _corner(table, b0)
    c1 = _corner(table, b0 + off[:, 0].take(code))
    c2 = _corner(table, b0 + off[:, 1].take(code))
    c3 = _corner(table, b0 + (1 + n + n * n))
    # barycentric weights of the four tetrahedron corners (computed on [P], applied on [3, P])
    return c0.mul_(1.0 - fmax).addcmul_(c1, fmax - fmid).addcmul_(c2, fmid - fmin).addcmul_(c3, fmin)


def _trilinear(p: torch.Tensor, table: torch.Tensor, n: int) -> torch.Tensor:
    base, f = _cell(p, n)
    fr, fg, fb = f[0], f[1], f[2]
    nn = float(n * n)
    c = [_corner(table, base + (dr + dg * n + db * nn)) for db in (0, 1) for dg in (0, 1) for dr in (0, 1)]
    x00 = torch.lerp(c[0], c[1], fr)
    x10 = torch.lerp(c[2], c[3], fr)
    x01 = torch.lerp(c[4], c[5], fr)
    x11 = torch.lerp(c[6], c[7], fr)
    return torch.lerp(torch.lerp(x00, x10, fg), torch.lerp(x01, x11, fg), fb)


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
    return v.clamp(0.0, 1.0) if clamp else v


# ---------------------------------------------------------------------------------------------
# files offered to the user: the `luts` models folder plus the looks shipped in the repo
# ---------------------------------------------------------------------------------------------
def shipped_luts() -> list[str]:
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(SHIPPED_PREFIX + p.name for p in SHIPPED_DIR.glob("*.cube"))


def lut_choices() -> list[str]:
    from .. import host

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
    from ..models import registry

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
    from .. import host

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
