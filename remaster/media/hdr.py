"""HDR (PQ / HLG, BT.2020) to SDR BT.709, and the transfer functions it needs.

Operator (display-referred, as ITU-R BT.2408 and BT.2390 describe it):

1. The decoded non-linear BT.2020 R'G'B' is linearised to display light in nits: PQ by the
   SMPTE ST 2084 EOTF; HLG by its inverse OETF and the BT.2100 OOTF for a 1000-nit display
   (system gamma 1.2).
2. BT.2020 primaries → BT.709 primaries (3×3 in linear light); colours outside BT.709 are
   clipped per channel.
3. The brightest channel is tone-mapped with the BT.2390 EETF (Hermite roll-off in the PQ
   domain) from the source peak (``SOURCE_PEAK_NITS``, 1000: the common grade) to the SDR peak,
   and all three channels are scaled by the same ratio (hue kept).
4. HDR reference white (203 nits, BT.2408) becomes SDR 100 %; the result is encoded for a
   BT.1886 display (gamma 2.4), i.e. what an SDR BT.709 file means to a player.

Below ≈ 90 nits (mid-grey, most skin) the mapping is the identity, so those keep their colour;
only highlights are compressed.
"""
from __future__ import annotations

import torch

SOURCE_PEAK_NITS = 1000.0
SDR_WHITE_NITS = 203.0
SDR_GAMMA = 2.4

_M1, _M2 = 2610 / 16384, 2523 / 4096 * 128
_C1, _C2, _C3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
_HLG_A, _HLG_B, _HLG_C = 0.17883277, 0.28466892, 0.55991073

# linear BT.2020 RGB → linear BT.709 RGB
BT2020_TO_BT709 = torch.tensor([
    [1.6604910, -0.5876411, -0.0728499],
    [-0.1245505, 1.1328999, -0.0083494],
    [-0.0181508, -0.1005789, 1.1187297],
])
BT709_TO_BT2020 = torch.linalg.inv(BT2020_TO_BT709.double()).float()
_LUMA_2020 = (0.2627, 0.6780, 0.0593)


def pq_eotf(e: torch.Tensor) -> torch.Tensor:
    """PQ signal 0..1 → nits."""
    p = e.clamp(0, 1).pow(1 / _M2)
    return 10000.0 * ((p - _C1).clamp(min=0) / (_C2 - _C3 * p)).pow(1 / _M1)


def pq_inverse(nits: torch.Tensor) -> torch.Tensor:
    """Nits → PQ signal 0..1."""
    y = (nits / 10000.0).clamp(0, 1).pow(_M1)
    return ((_C1 + _C2 * y) / (1 + _C3 * y)).pow(_M2)


def hlg_inverse_oetf(e: torch.Tensor) -> torch.Tensor:
    """HLG signal 0..1 → relative scene light 0..1."""
    e = e.clamp(0, 1)
    low = e * e / 3.0
    high = (torch.exp((e - _HLG_C) / _HLG_A) + _HLG_B) / 12.0
    return torch.where(e <= 0.5, low, high)


def hlg_oetf(x: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0, 1)
    return torch.where(x <= 1 / 12, (3 * x).sqrt(), _HLG_A * torch.log((12 * x - _HLG_B).clamp(min=1e-12)) + _HLG_C)


def hlg_to_nits(e: torch.Tensor, peak: float = 1000.0) -> torch.Tensor:
    """HLG R'G'B' ``[...,3]`` → display light (nits) through the BT.2100 OOTF."""
    scene = hlg_inverse_oetf(e)
    gamma = 1.2 + 0.42 * torch.log10(torch.tensor(peak / 1000.0)).item()
    ys = (scene * torch.tensor(_LUMA_2020)).sum(-1, keepdim=True).clamp(min=1e-12)
    return peak * ys.pow(gamma - 1) * scene


def nits_to_hlg(nits: torch.Tensor, peak: float = 1000.0) -> torch.Tensor:
    """Inverse of :func:`hlg_to_nits` (used to make test signals)."""
    gamma = 1.2
    fd = nits / peak
    yd = (fd * torch.tensor(_LUMA_2020)).sum(-1, keepdim=True).clamp(min=1e-12)
    scene = fd * yd.pow((1 - gamma) / gamma)
    return hlg_oetf(scene)


def eetf_bt2390(nits: torch.Tensor, src_peak: float, dst_peak: float) -> torch.Tensor:
    """BT.2390 EETF (black level 0): nits → nits, identity below the knee, Hermite roll-off to
    ``dst_peak`` above it."""
    if dst_peak >= src_peak:
        return nits.clamp(max=src_peak)
    scale = float(pq_inverse(torch.tensor(src_peak)))
    e1 = pq_inverse(nits) / scale
    max_lum = float(pq_inverse(torch.tensor(dst_peak))) / scale
    ks = 1.5 * max_lum - 0.5
    t = ((e1 - ks) / (1 - ks)).clamp(0, 1)
    t2, t3 = t * t, t * t * t
    p = (2 * t3 - 3 * t2 + 1) * ks + (t3 - 2 * t2 + t) * (1 - ks) + (-2 * t3 + 3 * t2) * max_lum
    e2 = torch.where(e1 < ks, e1, p)
    return pq_eotf(e2 * scale)


def to_sdr(rgb: torch.Tensor, transfer: str, src_peak: float = SOURCE_PEAK_NITS) -> torch.Tensor:
    """Non-linear BT.2020 R'G'B' ``[...,3]`` (0..1, PQ or HLG) → SDR BT.709 R'G'B' (0..1)."""
    x = rgb.float()
    if transfer == "smpte2084":
        lin = pq_eotf(x)
    elif transfer == "arib-std-b67":
        lin = hlg_to_nits(x, 1000.0)
        src_peak = 1000.0
    else:
        raise ValueError(f"not an HDR transfer: {transfer}")
    lin = (lin @ BT2020_TO_BT709.T).clamp_(min=0)
    m = lin.amax(-1, keepdim=True)
    mapped = eetf_bt2390(m, src_peak, SDR_WHITE_NITS)
    lin = lin * (mapped / m.clamp(min=1e-6))
    return (lin / SDR_WHITE_NITS).clamp_(0, 1).pow_(1 / SDR_GAMMA)


def from_sdr(rgb: torch.Tensor, transfer: str) -> torch.Tensor:
    """SDR BT.709 R'G'B' → HDR BT.2020 R'G'B' with SDR white at 203 nits (BT.2408 mapping; used
    to make test signals and for SDR material in an HDR chain)."""
    lin = rgb.float().clamp(0, 1).pow(SDR_GAMMA) * SDR_WHITE_NITS
    lin = (lin @ BT709_TO_BT2020.T).clamp_(min=0)
    if transfer == "smpte2084":
        return pq_inverse(lin)
    return nits_to_hlg(lin)
