"""3D LUT lookup: tetrahedral or trilinear interpolation in a flat cube, on any device.

CPU, float32 frames: OpenColorIO's CPU processor. It runs the domain scaling and the lookup in
one pass over each line of pixels, with the SIMD kernel OpenColorIO picks for the
running CPU (SSE2/AVX/AVX2/AVX-512; it avoids gathers where they are slow). Lines are cut into
bands run in threads (OpenColorIO releases the GIL), as many as torch's thread count. The output
is allocated by numpy, whose large buffers are advised for transparent huge pages: a fresh frame
then costs a few page faults instead of thousands.

Everywhere else (GPUs, other dtypes, OpenColorIO missing) the same maths runs in torch, in planar
blocks with one ``gather`` per corner from a planar ``[3, N**3]`` table (one launch per frame on
an accelerator).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ...analysis.curves import normalise_range
from .cube import LUTError

INTERPOLATIONS = ("tetrahedral", "trilinear")
LINE = 2048  # pixels per OpenColorIO line: its RGBA line buffer stays in L1/L2


def apply_3d(x: torch.Tensor, cube: torch.Tensor, size: int, lo=(0.0,) * 3, hi=(1.0,) * 3,
             interpolation: str = "tetrahedral", block: int = 262144) -> torch.Tensor:
    """Look ``x`` (``[..., 3]``) up in a flat cube (``[N**3, 3]``, red fastest) over the domain
    ``lo..hi`` (inputs outside it are clamped to it). ``x`` is left alone; the result is a new
    tensor."""
    if interpolation not in INTERPOLATIONS:
        raise LUTError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got '{interpolation}'")
    if x.device.type == "cpu" and x.dtype == torch.float32 and x.numel():
        proc = cpu_processor(cube, size, interpolation, tuple(lo), tuple(hi))
        if proc is not None:
            return _apply_cpu(proc, x)
    return _apply_torch(x, cube, size, lo, hi, interpolation, block)


# ---- CPU: OpenColorIO ------------------------------------------------------------------------
_processors: dict = {}
_pool = None


def cpu_processor(cube: torch.Tensor, size: int, interpolation: str, lo: tuple, hi: tuple):
    """OpenColorIO's CPU processor for (domain scaling →) cube, or None without OpenColorIO."""
    key = (cube.data_ptr(), cube._version, size, interpolation, lo, hi)
    hit = _processors.get(key)
    if hit is not None:
        return hit[1]
    try:
        import PyOpenColorIO as OCIO
    except ImportError:
        return None
    n = size
    grid = cube.detach().float().cpu().reshape(n, n, n, 3).permute(2, 1, 0, 3).contiguous()  # blue fastest
    steps = []
    if lo != (0.0, 0.0, 0.0) or hi != (1.0, 1.0, 1.0):
        scale = [1.0 / (h - l) for l, h in zip(lo, hi)]
        m = OCIO.MatrixTransform()
        m.setMatrix([scale[0], 0, 0, 0, 0, scale[1], 0, 0, 0, 0, scale[2], 0, 0, 0, 0, 1])
        m.setOffset([-l * s for l, s in zip(lo, scale)] + [0.0])
        steps.append(m)
    t = OCIO.Lut3DTransform()
    t.setGridSize(n)
    t.setInterpolation(OCIO.INTERP_TETRAHEDRAL if interpolation == "tetrahedral" else OCIO.INTERP_LINEAR)
    t.setData(grid.numpy().reshape(-1))
    steps.append(t)
    config = OCIO.Config.CreateRaw()
    config.setProcessorCacheFlags(OCIO.PROCESSOR_CACHE_OFF)  # its cache key ignores the table data
    # lossless: no approximations (no LUT resampling, no fast pow/log)
    proc = config.getProcessor(OCIO.GroupTransform(steps)).getOptimizedCPUProcessor(
        OCIO.BIT_DEPTH_F32, OCIO.BIT_DEPTH_F32, OCIO.OPTIMIZATION_LOSSLESS)
    if len(_processors) > 8:
        _processors.clear()
    _processors[key] = (cube, proc)  # the tensor is kept so its address is not reused
    return proc


def _apply_cpu(proc, x: torch.Tensor) -> torch.Tensor:
    global _pool
    import PyOpenColorIO as OCIO

    src = x.detach().contiguous().numpy().reshape(-1, 3)
    out = np.empty_like(src)
    count = src.shape[0]
    rows = count // LINE
    workers = max(1, min(torch.get_num_threads(), rows))
    per = max(1, math.ceil(rows / workers))
    jobs = [(r * LINE, min(rows, r + per) * LINE, LINE) for r in range(0, rows, per)]
    if count > rows * LINE:
        jobs.append((rows * LINE, count, count - rows * LINE))

    def run(job):
        s, e, width = job
        height = (e - s) // width
        proc.apply(OCIO.PackedImageDesc(src[s:e], width, height, 3), OCIO.PackedImageDesc(out[s:e], width, height, 3))

    if workers > 1:
        if _pool is None or _pool._max_workers < workers:
            from concurrent.futures import ThreadPoolExecutor

            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="remaster-lut")
        list(_pool.map(run, jobs))
    else:
        for job in jobs:
            run(job)
    return torch.from_numpy(out).reshape(x.shape)


# ---- torch (any device) ---------------------------------------------------------------------
def _apply_torch(x, cube, size, lo, hi, interpolation, block):
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
