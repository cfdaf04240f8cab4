"""Optical flow shared by the pack: dense flow with OpenCV on downscaled frames, and a backward
warp in torch.

Convention (the one OpenCV uses): ``flow = estimate_flow(a, b)`` gives, for each pixel ``x`` of
``a``, the displacement ``flow[x]`` such that ``a(x) ≈ b(x + flow[x])``. So
``backward_warp(b, flow)`` rebuilds ``a`` from ``b``: to carry content of a reference frame ``r``
onto frame ``t``, estimate ``estimate_flow(t, r)`` and warp ``r`` with it.

Flow is computed on a grey, downscaled copy (``max_side``) and returned at the full size in
full-size pixels. Methods: ``dis`` (OpenCV's Dense Inverse Search, fast and robust; presets
``ultrafast``/``fast``/``medium``) and ``farneback``.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["to_gray_u8", "estimate_flow", "backward_warp", "flow_magnitude", "METHODS"]

METHODS = ("dis_ultrafast", "dis_fast", "dis_medium", "farneback")
_DIS_PRESETS = {
    "dis_ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "dis_fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "dis_medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
_dis_cache: dict = {}


def to_gray_u8(frame: torch.Tensor | np.ndarray, max_side: int = 0) -> np.ndarray:
    """``[H,W,3]`` float 0..1 (torch or numpy) → grey uint8, downscaled so the long side ≤ ``max_side``
    (0 = keep size). Area interpolation, so fine detail averages instead of aliasing."""
    a = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"expected a [H,W,3] frame, got shape {a.shape}")
    g = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    g = np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return resize_max_side(g, max_side)


def resize_max_side(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    return img


def _dis(method: str):
    if method not in _dis_cache:
        _dis_cache[method] = cv2.DISOpticalFlow_create(_DIS_PRESETS[method])
    return _dis_cache[method]


def estimate_flow(
    a: np.ndarray,
    b: np.ndarray,
    method: str = "dis_fast",
    out_size: Optional[tuple[int, int]] = None,
) -> np.ndarray:
    """Flow ``[h,w,2]`` (float32, x then y) with ``a(x) ≈ b(x + flow)``.

    ``a``/``b`` are grey uint8 images of the same size (see :func:`to_gray_u8`). With ``out_size``
    ``(H, W)`` the field is resized to that size and its vectors scaled to those pixels.
    """
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"flow needs two grey images of the same size, got {a.shape} and {b.shape}")
    if method in _DIS_PRESETS:
        flow = _dis(method).calc(a, b, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(a, b, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    else:
        raise ValueError(f"unknown flow method '{method}'; use one of {', '.join(METHODS)}")
    if out_size is not None and tuple(out_size) != a.shape:
        H, W = out_size
        h, w = a.shape
        flow = cv2.resize(flow, (W, H), interpolation=cv2.INTER_LINEAR)
        flow[..., 0] *= W / w
        flow[..., 1] *= H / h
    return flow.astype(np.float32, copy=False)


def flow_magnitude(flow: np.ndarray) -> np.ndarray:
    return np.sqrt(flow[..., 0] ** 2 + flow[..., 1] ** 2)


def backward_warp(
    image: torch.Tensor,
    flow: torch.Tensor | np.ndarray,
    offset: tuple[float, float] = (0.0, 0.0),
    padding: str = "zeros",
) -> torch.Tensor:
    """Sample ``image`` ``[N,C,h,w]`` at ``x + flow(x) - offset`` for every pixel ``x`` of the flow.

    ``flow`` is ``[N,H,W,2]`` or ``[H,W,2]`` in pixels (x, y); the output is ``[N,C,H,W]`` (the flow's
    size, which may differ from the image's: ``offset`` is the position of the image's top-left
    pixel in the flow's coordinates, so a crop can be warped into a region). Bilinear sampling;
    outside the image gives zeros (``padding="zeros"``) or the nearest edge (``"border"``).
    """
    if isinstance(flow, np.ndarray):
        flow = torch.from_numpy(flow)
    if flow.ndim == 3:
        flow = flow.unsqueeze(0)
    n, H, W, _ = flow.shape
    h, w = image.shape[-2:]
    flow = flow.to(device=image.device, dtype=torch.float32)
    ys = torch.arange(H, device=image.device, dtype=torch.float32).view(1, H, 1)
    xs = torch.arange(W, device=image.device, dtype=torch.float32).view(1, 1, W)
    px = xs + flow[..., 0] - float(offset[0])
    py = ys + flow[..., 1] - float(offset[1])
    # align_corners=True: -1 and 1 are the centres of the first and last pixels
    gx = px * (2.0 / max(w - 1, 1)) - 1.0
    gy = py * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    if image.shape[0] != n:
        image = image.expand(n, -1, -1, -1)
    out = F.grid_sample(image.float(), grid, mode="bilinear", padding_mode=padding, align_corners=True)
    return out.to(image.dtype)


# ---------------------------------------------------------------------------------------------
# motion and where it can be trusted (Temporal Consistency, the temporal restorer, the metrics)
# ---------------------------------------------------------------------------------------------
_grids: dict = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if (h, w) not in _grids:
        if len(_grids) > 8:
            _grids.clear()
        _grids[(h, w)] = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return _grids[(h, w)]


def remap(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` sampled at ``x + flow(x)`` (bilinear, edges repeated); OpenCV's remap is the fast
    CPU path for whole frames (see :func:`backward_warp` for torch tensors)."""
    gx, gy = _grid(*flow.shape[:2])
    return cv2.remap(img, gx + flow[..., 0], gy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def grey(frame: torch.Tensor, max_side: int) -> np.ndarray:
    """Grey uint8 copy of ``frame`` ``[H,W,3]`` with long side ≤ ``max_side`` (shrunk first, cheaper)."""
    a = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    return to_gray_u8(resize_max_side(np.ascontiguousarray(a, dtype=np.float32), max_side))


def motion_confidence(cur: np.ndarray, prev: np.ndarray, method: str = "dis_fast", fb_alpha: float = 0.01,
                      fb_beta: float = 0.5, photo_tolerance: float = 0.06, erode: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Flow ``cur -> prev`` (``cur(x) ≈ prev(x + flow)``) and a confidence in 0..1 per pixel.

    ``cur``/``prev``: grey uint8 of the same size. Confidence multiplies a soft forward-backward
    check (error against ``fb_alpha * (|f|² + |b|²) + fb_beta``), a soft photometric check (grey
    difference after warping, ``photo_tolerance`` in 0..1 units) and an in-frame test; it is then
    eroded by ``erode`` pixels so the borders of moving objects count as untrusted."""
    fwd_b = estimate_flow(cur, prev, method)  # t -> t-1
    fwd_f = estimate_flow(prev, cur, method)  # t-1 -> t
    back = remap(fwd_f, fwd_b)
    ex, ey = fwd_b[..., 0] + back[..., 0], fwd_b[..., 1] + back[..., 1]
    err = ex * ex + ey * ey
    bound = fb_alpha * (fwd_b[..., 0] ** 2 + fwd_b[..., 1] ** 2 + back[..., 0] ** 2 + back[..., 1] ** 2) + fb_beta
    c_fb = np.clip(2.0 - err / bound, 0.0, 1.0)  # 1 up to the bound, 0 at twice the bound
    warped = remap(prev, fwd_b).astype(np.float32)
    d = np.abs(cur.astype(np.float32) - warped) / 255.0
    c_ph = np.clip(2.0 - d / max(photo_tolerance, 1e-4), 0.0, 1.0)
    h, w = cur.shape
    gx, gy = _grid(h, w)
    tx, ty = gx + fwd_b[..., 0], gy + fwd_b[..., 1]
    inside = ((tx >= 0) & (tx <= w - 1) & (ty >= 0) & (ty <= h - 1)).astype(np.float32)
    conf = (c_fb * c_ph * inside).astype(np.float32)
    if erode > 0:
        conf = cv2.erode(conf, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
    return fwd_b, conf


def scale_flow(flow: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a flow field to ``size`` (H, W) and scale its vectors to those pixels."""
    H, W = size
    h, w = flow.shape[:2]
    if (h, w) == (H, W):
        return flow
    out = cv2.resize(flow, (W, H), interpolation=cv2.INTER_LINEAR)
    out[..., 0] *= W / w
    out[..., 1] *= H / h
    return out


# ---------------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------------
def warping_error(frames: torch.Tensor, originals: torch.Tensor, method: str = "farneback", max_side: int = 480,
                  cuts: tuple = ()) -> float:
    """Mean flow-compensated frame-to-frame difference of ``frames`` ``[n,H,W,3]``, measured on the
    source's motion: flow and trust mask come from ``originals`` ``[n,h,w,3]`` (Farneback by
    default, a different estimator from the stage's DIS), pixels weighted by confidence.
    Frame pairs across a cut are skipped. Lower is steadier (0..1 units, mean abs per channel)."""
    num = den = 0.0
    prev = None
    H, W = frames.shape[1:3]
    for t in range(frames.shape[0]):
        g = grey(originals[t], max_side)
        if prev is not None and t not in cuts:
            fl, conf = motion_confidence(g, prev, method)
            warped = remap(np.ascontiguousarray(frames[t - 1].numpy(), dtype=np.float32), scale_flow(fl, (H, W)))
            c = cv2.resize(conf, (W, H), interpolation=cv2.INTER_LINEAR)
            d = np.abs(frames[t].numpy() - warped).mean(-1)
            num += float((d * c).sum())
            den += float(c.sum())
        prev = g
    return num / max(den, 1e-9)
