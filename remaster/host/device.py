"""Devices and memory: ComfyUI's model management inside ComfyUI, plain torch outside."""
from __future__ import annotations

import os

import torch

from .comfy import _mm


def torch_device() -> torch.device:
    forced = os.environ.get("REMASTER_DEVICE")
    if forced:
        return torch.device(forced)
    if _mm is not None:
        try:
            return _mm.get_torch_device()
        except Exception:
            pass
    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def free_memory(device: torch.device) -> int:
    """Bytes free for tensors on ``device``."""
    if device.type == "cuda":
        if _mm is not None:
            try:
                return int(_mm.get_free_memory(device))
            except Exception:
                pass
        free, _total = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:
        return 4 * 2**30


def make_room(device: torch.device, needed_bytes: int) -> None:
    """Ask ComfyUI to unload other models so ``needed_bytes`` fit (no-op outside ComfyUI)."""
    if _mm is not None and device.type == "cuda":
        try:
            _mm.free_memory(needed_bytes, device)
        except Exception:
            pass


def empty_cache() -> None:
    if _mm is not None:
        try:
            _mm.soft_empty_cache()
            return
        except Exception:
            pass
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with AMX or AVX-512 BF16, where bf16 convolutions beat fp32."""
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:
        cap = ""
    if "AMX" in str(cap).upper():
        return True
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return " amx_bf16" in flags or " avx512_bf16" in flags
    except OSError:
        return False


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if _mm is not None and isinstance(exc, getattr(_mm, "OOM_EXCEPTION", ())):
        return True
    return "out of memory" in str(exc).lower()
