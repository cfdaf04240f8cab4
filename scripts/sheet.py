"""Contact sheets for the docs: label a tile, frames to 8-bit, stack rows, write the image.

Imported by the ``*_sheet.py`` scripts in this folder (run as ``python scripts/<name>.py``)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch


def label(img: np.ndarray, text: str, font_scale: float = 0.48) -> np.ndarray:
    """A copy of ``img`` with ``text`` in white on a black band across its top."""
    img = img.copy()
    cv2.rectangle(img, (0, 0), (img.shape[1], 22), (0, 0, 0), -1)
    cv2.putText(img, text, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def to_u8(t: torch.Tensor) -> np.ndarray:
    """Float frames (0..1) to uint8, rounded."""
    return np.clip(t.numpy() * 255 + 0.5, 0, 255).astype(np.uint8)


def stack(rows: list, max_width: int = 0, max_height: int = 0) -> np.ndarray:
    """Rows (uint8 ``[h,w,3]``) padded with black to the widest and stacked, then shrunk (area
    filter) so the sheet fits ``max_width`` x ``max_height`` (0 = no limit)."""
    w = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, w - r.shape[1]), (0, 0))) for r in rows], 0)
    scale = min(1.0, max_width / sheet.shape[1] if max_width else 1.0, max_height / sheet.shape[0] if max_height else 1.0)
    if scale < 1:
        sheet = cv2.resize(sheet, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    return sheet


def write(path: str | Path, img_bgr: np.ndarray, params: tuple = (cv2.IMWRITE_PNG_COMPRESSION, 9)) -> Path:
    """Write ``img_bgr`` (folders made as needed) and print where, its shape and size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img_bgr, list(params))
    print(path, img_bgr.shape, path.stat().st_size // 1024, "KiB")
    return path
