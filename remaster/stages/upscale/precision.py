"""Which dtype and memory layout the upscaler runs in, and on a CPU which tile size: the pack's
precision policy for spandrel models, and "auto" on a CPU measured once per model and process
(bf16 + channels_last only where the CPU has native bf16, fp32 channels_last, fp32 NCHW)."""
from __future__ import annotations

import logging

import torch

from ... import host
from ...models.precision import pick_dtype

log = logging.getLogger("remaster.upscale")


class UpscaleError(ValueError):
    """Bad settings or an unusable model file (the message names the input and the fix)."""


# ---------------------------------------------------------------------------------------------
def pick_precision(device: torch.device, precision: str = "auto", desc=None) -> tuple[torch.dtype, bool]:
    """(dtype, channels_last) for ``precision`` on ``device`` (the pack's precision policy)."""
    try:
        dtype = pick_dtype(device, precision, half_ok=getattr(desc, "supports_half", True),
                           bf16_ok=getattr(desc, "supports_bfloat16", True))
    except ValueError as exc:
        raise UpscaleError(str(exc)) from None
    return dtype, dtype != torch.float32 or device.type == "cuda"


_TUNED: dict = {}


def _time_forward(model, x: torch.Tensor, repeats: int = 2) -> float:
    import time

    with torch.inference_mode():
        model(x)  # warm-up (oneDNN picks its kernels on the first call)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - t0)
    return best


def autotune_cpu(desc, overlap: int = 24) -> tuple[torch.dtype, bool, int]:
    """(dtype, channels_last, tile) measured on this CPU for this model, once per process.

    Candidates: bf16 + channels_last where the CPU has native bf16 (AMX / AVX-512-BF16), fp32
    channels_last and fp32 NCHW, timed on a 64-px input; then, if a forward is cheap enough to
    try, 128- against 192-px tiles for the winner (cost per pixel net of the overlap). Set
    ``REMASTER_UPSCALE_AUTOTUNE=0`` to use the fixed rule instead."""
    import copy

    n_params = sum(p.numel() for p in desc.model.parameters())
    key = (type(desc.model).__name__, int(desc.scale), n_params, overlap)
    if key in _TUNED:
        return _TUNED[key]
    cands = []
    if getattr(desc, "supports_bfloat16", True) and host.cpu_has_fast_bf16():
        cands.append((torch.bfloat16, True))
    cands += [(torch.float32, True), (torch.float32, False)]
    x0 = torch.rand(1, 3, 64, 64)
    timings = []
    for dtype, cl in cands:
        m = copy.deepcopy(desc.model).to(dtype=dtype).eval()
        x = x0.to(dtype)
        if cl:
            m = m.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        timings.append((_time_forward(m, x), dtype, cl))
        del m
    t64, dtype, cl = min(timings, key=lambda r: r[0])
    tile = 192
    if t64 * (192 / 64) ** 2 < 2.0:  # trying the tile sizes costs a few seconds at most
        m = copy.deepcopy(desc.model).to(dtype=dtype).eval()
        if cl:
            m = m.to(memory_format=torch.channels_last)
        costs = []
        for t in (128, 192):
            x = torch.rand(1, 3, t, t).to(dtype)
            if cl:
                x = x.contiguous(memory_format=torch.channels_last)
            costs.append((_time_forward(m, x, 1) / max(1, t - overlap) ** 2, t))
        tile = min(costs)[1]
        del m
    log.info("upscale auto on this CPU: %s%s, %d-px tiles (64 px: %s)", str(dtype).replace("torch.", ""),
             " channels_last" if cl else "", tile,
             ", ".join(f"{str(d).replace('torch.', '')}{'/CL' if c else ''} {t * 1000:.0f} ms" for t, d, c in timings))
    _TUNED[key] = (dtype, cl, tile)
    return _TUNED[key]
