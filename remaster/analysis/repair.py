"""What the film and tape restoration stages share to repair a frame from its neighbours and from
its own surroundings: luma and YCbCr by OpenCV's per-pixel matrix transform, neighbours warped
onto a frame by dense optical flow (OpenCV DIS on grey thumbnails, :mod:`.flow`, and
``cv2.remap``), a robust noise level, and the two spatial fills (row interpolation across thin
vertical lines, Telea inpainting of small regions box by box)."""
from __future__ import annotations

import cv2
import numpy as np

from . import flow as flowlib
from .colourspace import LUMA_601, YCC_601

__all__ = ["fill_rows", "inpaint_regions", "luma", "robust_sigma", "to_ycc", "from_ycc", "neighbour_flows", "sample_at"]

_LUMA = np.array([LUMA_601], np.float32)
_YCC = np.array(YCC_601, np.float32)
_RGB = np.linalg.inv(_YCC).astype(np.float32)


def luma(x: np.ndarray) -> np.ndarray:
    """Rec.601 luma ``[H,W]`` of ``[H,W,3]`` float RGB."""
    return cv2.transform(np.ascontiguousarray(x, np.float32), _LUMA)


def to_ycc(x: np.ndarray) -> np.ndarray:
    return cv2.transform(np.ascontiguousarray(x, np.float32), _YCC)


def from_ycc(x: np.ndarray) -> np.ndarray:
    return cv2.transform(np.ascontiguousarray(x, np.float32), _RGB)


def robust_sigma(d: np.ndarray) -> float:
    """Noise level of a difference image: 1.4826 × median |d| on a 4× subsampled grid."""
    a = np.abs(d[::4, ::4]).ravel()
    return float(1.4826 * np.median(a)) if a.size else 0.0


def neighbour_flows(item, neighbours: list, method: str = "dis_fast", key: str = "small") -> list:
    """Full-size flow ``[H,W,2]`` from ``item`` to each neighbour (window items with a grey
    thumbnail in ``aux[key]``): ``remap(neighbour, flow)`` carries the neighbour onto ``item``."""
    h, w = item.frame.shape[:2]
    return [flowlib.estimate_flow(item.aux[key], nb.aux[key], method, out_size=(h, w)) for nb in neighbours]


def sample_at(img: np.ndarray, flow: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``remap(img, flow)[mask]`` computed at the masked pixels only (bilinear, edges repeated):
    a repair needs the warped neighbour where the damage is, not over the whole frame."""
    ys, xs = np.nonzero(mask)
    h, w = img.shape[:2]
    px = np.clip(xs + flow[ys, xs, 0], 0, w - 1)
    py = np.clip(ys + flow[ys, xs, 1], 0, h - 1)
    x0, y0 = np.floor(px).astype(np.int64), np.floor(py).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (px - x0).astype(np.float32), (py - y0).astype(np.float32)
    if img.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(img.dtype)


def fill_rows(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill masked pixels along each row by linear interpolation between the nearest unmasked
    pixels on the left and right (thin vertical lines: the right neighbours to use); in place."""
    h, w = mask.shape
    idx = np.broadcast_to(np.arange(w, dtype=np.int32), (h, w))
    left = np.maximum.accumulate(np.where(mask, -1, idx), axis=1)
    right = np.minimum.accumulate(np.where(mask, w, idx)[:, ::-1], axis=1)[:, ::-1]
    ys, xs = np.nonzero(mask)
    li, ri = left[ys, xs], right[ys, xs]
    has_l, has_r = li >= 0, ri < w
    li, ri = np.clip(li, 0, w - 1), np.clip(ri, 0, w - 1)
    t = np.where(has_l & has_r, (xs - li) / np.maximum(ri - li, 1), np.where(has_l, 0.0, 1.0))[:, None]
    x[ys, xs] = (x[ys, li] * (1 - t) + x[ys, ri] * t).astype(x.dtype)
    return x


def inpaint_regions(x: np.ndarray, mask: np.ndarray, pad: int = 8) -> np.ndarray:
    """OpenCV (Telea) inpainting of each masked blob inside its own padded box (cheap for specks
    and strips: the work follows the damage, not the frame); in place. Many blobs or large
    boxes: the whole frame in one call."""
    h, w = mask.shape
    out = x
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = stats[1:]
    if len(boxes) > 64 or float(((boxes[:, 2] + 2 * pad) * (boxes[:, 3] + 2 * pad)).sum()) > 0.3 * h * w:
        boxes = np.array([[0, 0, w, h, 0]])
    for bx, by, bw, bh, _ in boxes:
        x0, y0 = max(0, bx - pad), max(0, by - pad)
        x1, y1 = min(w, bx + bw + pad), min(h, by + bh + pad)
        m = mask[y0:y1, x0:x1]
        u8 = np.clip(out[y0:y1, x0:x1] * 255 + 0.5, 0, 255).astype(np.uint8)
        fill = cv2.inpaint(u8, m.astype(np.uint8), 3, cv2.INPAINT_TELEA).astype(np.float32) / 255
        region = out[y0:y1, x0:x1]
        region[m] = fill[m]
    return out
