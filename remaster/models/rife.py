"""RIFE frame interpolation: loading a Practical-RIFE 4.x checkpoint (safe loading, any 4.5+
layout, see :mod:`remaster.models.ifnet` for the network) and :class:`RifeModel`, the network on a
device in its compute dtype, padding frames and interpolating a pair at several timesteps.

Numerics: convolutions run in the compute dtype (fp16 on CUDA, bf16 + channels_last on CPUs with
fast bf16, fp32 elsewhere); flows, masks, warping and blending stay in fp32.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from .cache import MODELS, file_key
from .ifnet import IFNet, RifeConfig, detect_config, strip_state_dict
from .precision import pick_dtype

log = logging.getLogger("remaster.rife")

__all__ = ["RifeConfig", "IFNet", "RifeModel", "detect_config", "load_rife", "compute_dtype_for"]


# ---------------------------------------------------------------------------------------------
# loading and a convenient wrapper
# ---------------------------------------------------------------------------------------------
def compute_dtype_for(device: torch.device, precision: str = "auto") -> tuple:
    """(dtype, channels_last): the pack's precision policy (:mod:`remaster.models.precision`: fp16 on
    CUDA, bf16 on fast-bf16 CPUs, fp32 otherwise; "fp32"/"fp16"/"bf16" force one). channels_last
    pays off with bf16 on a CPU only (measured: fp32 channels_last is slower there)."""
    dtype = pick_dtype(device, precision)
    return dtype, dtype == torch.bfloat16 and device.type == "cpu"


class RifeModel:
    """A loaded IFNet on a device with its compute dtype; pads and unpads frames."""

    def __init__(self, net: IFNet, device: torch.device, name: str = "") -> None:
        self.net = net
        self.device = device
        self.name = name

    @property
    def cfg(self) -> RifeConfig:
        return self.net.cfg

    def pad_multiple(self, scale: float = 1.0) -> int:
        """Frame sides are padded to a multiple of this (the coarsest block divides by it)."""
        return max(32, int(math.ceil(4 * max(self.cfg.scale_list(scale)))))

    def pad(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """Pad ``[n,3,H,W]`` to the model's multiple by edge replication (right and bottom)."""
        m = self.pad_multiple(scale)
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return x

    @torch.inference_mode()
    def features(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        return self.net.features(x)

    @torch.inference_mode()
    def interpolate(
        self,
        img0: torch.Tensor,
        img1: torch.Tensor,
        timesteps: Sequence[float] | float = 0.5,
        scale: float = 1.0,
        f0: Optional[torch.Tensor] = None,
        f1: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Frames between two padded frames ``[1,3,H,W]`` (on the model device) at each timestep:
        returns ``[len(timesteps),3,H,W]`` fp32 clamped to 0..1. ``f0``/``f1`` reuse features."""
        ts = [float(timesteps)] if isinstance(timesteps, (int, float)) else [float(t) for t in timesteps]
        k = len(ts)
        e = (lambda z: None if z is None else z.expand(k, *z.shape[1:]))
        out = self.net(
            img0.expand(k, *img0.shape[1:]),
            img1.expand(k, *img1.shape[1:]),
            torch.tensor(ts, device=img0.device),
            scale,
            e(f0),
            e(f1),
        )
        return out.clamp_(0.0, 1.0)


def build(sd: dict) -> IFNet:
    """An IFNet with ``sd`` loaded (strict on the inference keys), beta folded, fp32 on CPU."""
    sd = strip_state_dict(sd)
    cfg = detect_config(sd)
    net = IFNet(cfg)
    missing, unexpected = net.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"RIFE {cfg.version} checkpoint does not fit the detected layout: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}"
        )
    net.eval().requires_grad_(False)
    return net.fold()


def load_rife(name: str, device: Optional[torch.device] = None, precision: str = "auto",
              download_missing: bool = False) -> RifeModel:
    """Load a RIFE checkpoint by registry id, file name in the ``rife`` folder, or path.

    Safe loading only (safetensors or ``torch.load(weights_only=True)``). The parsed fp32 network
    of the last two files stays in CPU memory (about 25 MB each); a GPU (or reduced-precision)
    copy is made per call and belongs to the caller, so nothing is left on the GPU behind
    ComfyUI's back once a pass ends.
    """
    import copy

    from .. import host
    from . import registry

    device = device or host.torch_device()
    path = registry.resolve(name, "rife", download_missing=download_missing)

    def parse() -> IFNet:
        net = build(registry.unwrap_state_dict(registry.load_state_dict(path)))
        log.info("RIFE %s loaded from %s", net.cfg.version, path)
        return net

    net = MODELS.get("rife", file_key(path), parse, keep=2)
    dtype, cl = compute_dtype_for(device, precision)
    if device.type != "cpu" or dtype != torch.float32 or cl:
        net = copy.deepcopy(net).set_compute(device, dtype, cl)
    return RifeModel(net, device, Path(path).name)
