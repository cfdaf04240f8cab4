"""The one precision policy: which dtype a model runs in on a device.

``auto``: fp16 on CUDA (bf16 where a model prefers it and the GPU has it), bf16 on CPUs with native
bf16 (measured faster than fp32 there), fp32 elsewhere. A model that cannot run in half or bf16
precision says so (spandrel's ``supports_half`` / ``supports_bfloat16``) and gets the next choice.
Memory layout (channels-last) is each stage's own measured choice, not part of this policy."""
from __future__ import annotations

import torch

PRECISIONS = ("auto", "fp16", "bf16", "fp32")  # the dropdowns' order
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_dtype(device: torch.device, precision: str = "auto", *, half_ok: bool = True, bf16_ok: bool = True,
               cuda_prefers: str = "fp16") -> torch.dtype:
    """The dtype for ``precision`` on ``device``; ValueError names the accepted choices."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 is for GPUs; on a CPU pick bf16 or fp32 (or auto)")
    if precision == "auto":
        precision = "fp32"
        if device.type == "cuda":
            bf16 = bf16_ok and torch.cuda.is_bf16_supported()
            if cuda_prefers == "bf16" and bf16:
                precision = "bf16"
            elif half_ok:
                precision = "fp16"
            elif bf16:
                precision = "bf16"
        elif device.type == "cpu" and bf16_ok:
            from .. import host

            if host.cpu_has_fast_bf16():
                precision = "bf16"
    return DTYPES[precision]
