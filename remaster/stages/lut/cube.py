""".cube files (Adobe/Resolve): reading, checking and writing.

``TITLE "..."``, ``LUT_1D_SIZE n`` and/or ``LUT_3D_SIZE n``, ``DOMAIN_MIN r g b`` / ``DOMAIN_MAX r g b``
(Adobe) or ``LUT_1D_INPUT_RANGE lo hi`` / ``LUT_3D_INPUT_RANGE lo hi`` (Resolve), ``#`` comments, then
one ``r g b`` line per entry with red changing fastest. A file with both sizes holds the 1D shaper
table first, then the cube.
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

MAX_3D_SIZE = 65
MAX_1D_SIZE = 65536
MAX_FILE_BYTES = 64 * 2**20


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
