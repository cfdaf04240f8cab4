"""Face restoration on the frame stream: detect, align, restore (GFPGAN / CodeFormer), paste back.

Per frame: faces are found with RetinaFace (facexlib-format weights, :mod:`remaster.models.retinaface`)
or YuNet (OpenCV's ``FaceDetectorYN``); each face's five landmarks are smoothed over time (a
per-face track, reset at scene cuts and when the face jumps) so the aligned crop does not jitter;
the crop is a similarity warp onto the 512x512 FFHQ template; the restorer (spandrel's GFPGAN, or
CodeFormer from spandrel-extra-arches) runs on all faces of a chunk in one batch; the result is
warped back and blended in with a feathered mask and a strength. Pixels outside the pasted face
squares are never modified; a frame without faces passes through untouched.

GFPGAN runs with its stored noise maps instead of fresh random noise per call, so a still face
gives the same output on every frame (random noise is a known source of GFPGAN video flicker).
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np
import torch

from .. import host
from ..models import registry, retinaface
from ..stream import Chunk, FrameStream, Temporal
from ..analysis import scenes
from ..models.precision import pick_dtype
from ..models.cache import MODELS, file_key

log = logging.getLogger("remaster.face_restore")

RESTORE_FOLDER = "facerestore_models"
DETECT_FOLDER = "facedetection"
SIZE = 512
# five landmarks (image-left eye, image-right eye, nose, mouth left, mouth right) of the FFHQ-aligned
# 512x512 face that GFPGAN and CodeFormer were trained on (the values published with facexlib)
TEMPLATE_512 = np.array(
    [[192.98138, 239.94708], [318.90277, 240.1936], [256.63416, 314.01935],
     [201.26117, 371.41043], [313.08905, 371.15118]], dtype=np.float32)


class FaceRestoreError(ValueError):
    """Bad settings or an unusable model file (the message names the input and the fix)."""


# ---------------------------------------------------------------------------------------------
# detection
# ---------------------------------------------------------------------------------------------
class FaceDetector:
    """Faces in RGB float frames: ``[k, 15]`` = box x1,y1,x2,y2, score, 5 landmarks (x, y)."""

    def __init__(self, name: str, threshold: float = 0.6, det_size: int = 512,
                 device: Optional[torch.device] = None) -> None:
        path = registry.resolve(name, DETECT_FOLDER)
        self.path = Path(path)
        self.threshold = float(threshold)
        self.det_size = int(det_size)
        self.kind = "yunet" if self.path.suffix.lower() == ".onnx" else "retinaface"
        if self.kind == "yunet":
            if not hasattr(cv2, "FaceDetectorYN"):
                raise FaceRestoreError("YuNet needs OpenCV >= 4.5.4 (cv2.FaceDetectorYN); pick a RetinaFace .pth detector")
            self.net = cv2.FaceDetectorYN.create(str(self.path), "", (320, 320), self.threshold, 0.3, 5000)
        else:
            entry = registry.by_filename(self.path.name, DETECT_FOLDER)
            variant = (entry.extra.get("variant") if entry else None) or "facexlib"
            try:
                sd = registry.unwrap_state_dict(registry.load_state_dict(self.path))
                self.net = retinaface.from_state_dict(sd, variant)
            except ValueError as exc:
                raise FaceRestoreError(f"detector '{self.path.name}': {exc}") from exc
            self.device = device or host.torch_device()
            self.net.to(self.device)
            self._priors: dict = {}

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        s = min(1.0, self.det_size / max(h, w))
        img = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)[..., ::-1]
        if s < 1.0:
            img = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        img = np.ascontiguousarray(img)
        if self.kind == "yunet":
            self.net.setInputSize((img.shape[1], img.shape[0]))
            _, faces = self.net.detect(img)
            if faces is None or len(faces) == 0:
                return np.zeros((0, 15), np.float32)
            faces = np.asarray(faces, np.float32)
            out = np.concatenate([faces[:, 0:2], faces[:, 0:2] + faces[:, 2:4], faces[:, 14:15], faces[:, 4:14]], 1)
        else:
            out = retinaface.detect(self.net, img, self.threshold, prior_cache=self._priors)
        if len(out):
            out = out.copy()
            out[:, [0, 1, 2, 3]] /= s
            out[:, 5:] /= s
            out = out[np.argsort(-out[:, 4])]
        return out


# ---------------------------------------------------------------------------------------------
# restoration models
# ---------------------------------------------------------------------------------------------


def _ensure_extra_arches() -> bool:
    """Register spandrel-extra-arches (CodeFormer lives there) once; False if not installed."""
    try:
        from spandrel import MAIN_REGISTRY
        from spandrel_extra_arches import EXTRA_REGISTRY
    except ImportError:
        return False
    MAIN_REGISTRY.add(*EXTRA_REGISTRY, ignore_duplicates=True)  # ComfyUI may have added them already
    return True


def load_restorer(name: str):
    """spandrel descriptor of a face restoration model (GFPGAN v1.x clean, CodeFormer, ...)."""

    path = registry.resolve(name, RESTORE_FOLDER)
    return MODELS.get("face_restore", file_key(path), lambda: _load_restorer(Path(path)), keep=2)


def _load_restorer(path: Path):
    from spandrel import ModelLoader

    sd = registry.load_state_dict(path)
    has_extra = _ensure_extra_arches()
    try:
        desc = ModelLoader().load_from_state_dict(sd)
    except Exception as exc:
        hint = "" if has_extra else (
            " CodeFormer needs the package spandrel-extra-arches (pip install spandrel-extra-arches)."
        )
        raise FaceRestoreError(
            f"model '{Path(path).name}' is not a face restoration model spandrel can load ({exc}).{hint}"
        ) from exc
    if getattr(desc, "purpose", "") != "FaceSR":
        raise FaceRestoreError(
            f"model '{Path(path).name}' is a {desc.architecture.id} {desc.purpose} model, not a face "
            "restorer; pick GFPGANv1.4.pth or codeformer.pth"
        )
    return desc.eval()


# ---------------------------------------------------------------------------------------------
# geometry
# ---------------------------------------------------------------------------------------------
def align_matrix(points: np.ndarray, size: int = SIZE) -> np.ndarray:
    """2x3 similarity transform taking the 5 landmarks onto the template of a ``size`` crop."""
    dst = TEMPLATE_512 * (size / 512.0)
    M, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), dst, method=cv2.LMEDS)
    if M is None:  # degenerate landmarks: least squares over all points
        M, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), dst, method=0)
    return M


def aligned_crop(frame: np.ndarray, M: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The ``size`` square crop ``M`` maps the face into. When the warp shrinks (a face larger
    than the crop, e.g. after a x4 upscale) the face region is low-passed first (Gaussian,
    sigma 0.45 / scale), so the bilinear warp does not alias fine detail into false patterns."""
    s = float(np.sqrt(abs(np.linalg.det(M[:, :2]))))
    if s >= 0.75:
        return cv2.warpAffine(frame, M, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
    H, W = frame.shape[:2]
    inv = cv2.invertAffineTransform(M)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float32) @ inv.T
    pad = int(np.ceil(3 * 0.45 / s)) + 2
    x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - pad, 0, [W - 1, H - 1])
    x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + pad, [x0 + 1, y0 + 1], [W, H])
    roi = cv2.GaussianBlur(frame[y0:y1, x0:x1], (0, 0), 0.45 / s, borderType=cv2.BORDER_REFLECT101)
    M2 = M.astype(np.float64).copy()
    M2[:, 2] += M2[:, :2] @ np.array([x0, y0], np.float64)  # roi(u, v) = frame(u + x0, v + y0)
    return cv2.warpAffine(roi, M2, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)


def feather_mask(size: int = SIZE, border: float = 0.06, blur: float = 0.05) -> np.ndarray:
    """A ``size`` square of ones that falls smoothly to 0 towards its edges."""
    m = np.zeros((size, size), np.float32)
    b = int(round(size * border))
    m[b:size - b, b:size - b] = 1.0
    k = int(round(size * blur)) * 2 + 1
    return cv2.GaussianBlur(m, (k, k), 0)


def paste(frame: np.ndarray, face: np.ndarray, M: np.ndarray, mask: np.ndarray, strength: float) -> None:
    """Blend ``face`` (aligned crop) back into ``frame`` in place through the inverse of ``M``.
    Only the bounding box of the warped crop is touched, and only where the mask is > 0."""
    H, W = frame.shape[:2]
    size = face.shape[0]
    inv = cv2.invertAffineTransform(M)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float32) @ inv.T
    x0, y0 = np.floor(corners.min(0)).astype(int)
    x1, y1 = np.ceil(corners.max(0)).astype(int)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
    if x1 <= x0 or y1 <= y0:
        return
    inv_roi = inv.copy()
    inv_roi[:, 2] -= (x0, y0)
    size_roi = (x1 - x0, y1 - y0)
    back = cv2.warpAffine(face, inv_roi, size_roi, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    m = cv2.warpAffine(mask, inv_roi, size_roi, flags=cv2.INTER_LINEAR, borderValue=0.0)
    m = np.clip(m * strength, 0.0, 1.0)[..., None]
    roi = frame[y0:y1, x0:x1]
    blended = roi * (1.0 - m) + back * m
    frame[y0:y1, x0:x1] = np.where(m > 0, blended, roi)


# ---------------------------------------------------------------------------------------------
# temporal landmark smoothing
# ---------------------------------------------------------------------------------------------
class LandmarkSmoother:
    """Per-face tracks of smoothed landmarks. ``smoothing`` 0 = raw detections; higher = steadier.
    Fast motion lowers the smoothing (no lag), a face that jumps or a scene cut starts a new track."""

    def __init__(self, smoothing: float = 0.6, max_gap: int = 2) -> None:
        self.alpha = float(np.clip(smoothing, 0.0, 0.95))
        self.max_gap = int(max_gap)
        self.tracks: list[dict] = []

    def reset(self) -> None:
        self.tracks = []

    def __call__(self, index: int, faces: np.ndarray) -> list[np.ndarray]:
        out = []
        used = set()
        for f in faces:
            pts = f[5:15].reshape(5, 2).astype(np.float64)
            size = max(f[2] - f[0], f[3] - f[1], 1.0)
            best, best_d = None, 0.3 * size
            for ti, t in enumerate(self.tracks):
                if ti in used:
                    continue
                d = float(np.linalg.norm(t["pts"].mean(0) - pts.mean(0)))
                if d < best_d:
                    best, best_d = ti, d
            if best is None:
                self.tracks.append({"pts": pts, "seen": index})
                used.add(len(self.tracks) - 1)
                out.append(pts)
                continue
            t = self.tracks[best]
            move = float(np.abs(t["pts"] - pts).max())
            a = self.alpha * float(np.clip(1.0 - move / (0.12 * size), 0.0, 1.0))
            t["pts"] = a * t["pts"] + (1.0 - a) * pts
            t["seen"] = index
            used.add(best)
            out.append(t["pts"].copy())
        self.tracks = [t for t in self.tracks if index - t["seen"] <= self.max_gap]
        return out


# ---------------------------------------------------------------------------------------------
# the restorer
# ---------------------------------------------------------------------------------------------
class FaceRestorer:
    """Restores faces in chunks of frames; keeps the landmark tracks between chunks."""

    def __init__(self, desc, detector: FaceDetector, strength: float = 1.0, fidelity: float = 0.5,
                 min_face: int = 32, smoothing: float = 0.6, cuts: Optional[list] = None,
                 device: Optional[torch.device] = None, precision: str = "auto", max_batch: int = 4) -> None:
        self.desc = desc
        self.detector = detector
        self.strength = float(strength)
        self.fidelity = float(fidelity)
        self.min_face = int(min_face)
        self.smoother = LandmarkSmoother(smoothing)
        self.cuts = cuts if isinstance(cuts, scenes.LazyCuts) else set(int(c) for c in (cuts or ()))
        self.device = device or host.torch_device()
        # no channels_last: StyleGAN's modulated convs keep 5-D weights and flatten with .view
        try:
            self.dtype = pick_dtype(self.device, precision, half_ok=getattr(desc, "supports_half", True),
                                    bf16_ok=getattr(desc, "supports_bfloat16", True))
        except ValueError as exc:
            raise FaceRestoreError(str(exc)) from None
        self.max_batch = max(1, int(max_batch))
        self.mask = feather_mask(SIZE)
        self.arch = desc.architecture.id
        self._ready = False

    def _prepare(self) -> None:
        if not self._ready:
            self.desc.to(self.device)
            # CodeFormer's codebook lookup mixes a float32 one-hot with the weights, so it keeps
            # float32 weights and runs under autocast; the others are cast outright
            self.autocast = self.arch == "CodeFormer" and self.dtype != torch.float32
            self.desc.model.to(dtype=torch.float32 if self.autocast else self.dtype)
            self._ready = True

    @torch.inference_mode()
    def restore_crops(self, crops: np.ndarray) -> np.ndarray:
        """``[k,512,512,3]`` float RGB 0..1 aligned faces -> restored, same shape."""
        self._prepare()
        outs = []
        for i in range(0, len(crops), self.max_batch):
            x = torch.from_numpy(crops[i : i + self.max_batch]).permute(0, 3, 1, 2).to(self.device)
            x = (x * 2.0 - 1.0).contiguous()
            m = self.desc.model
            if self.arch == "GFPGAN":
                y = m(x.to(self.dtype), return_rgb=False, randomize_noise=False)
            elif self.arch == "CodeFormer":
                with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.autocast):
                    y = m(x if self.autocast else x.to(self.dtype), weight=self.fidelity)
            else:
                y = m(x.to(self.dtype))
            y = y[0] if isinstance(y, (tuple, list)) else y
            y = ((y.float() + 1.0) * 0.5).clamp_(0, 1)
            outs.append(y.permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(outs) if outs else crops

    def locate(self, chunk: Chunk) -> list[tuple[int, np.ndarray]]:
        """(frame index in chunk, 2x3 alignment matrix) for every face to restore; advances the
        landmark tracks (reset at scene cuts)."""
        frames = chunk.frames.numpy()
        jobs = []
        for i in range(len(chunk)):
            idx = chunk.start + i
            if idx in self.cuts:
                self.smoother.reset()
            faces = self.detector(frames[i])
            if len(faces):
                wmin = np.minimum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1])
                faces = faces[wmin >= self.min_face]
            for pts in self.smoother(idx, faces):
                M = align_matrix(pts)
                if M is not None:
                    jobs.append((i, M))
        return jobs

    def __call__(self, chunk: Chunk) -> Chunk:
        jobs = self.locate(chunk)
        if not jobs:
            return chunk
        frames = chunk.frames.numpy()
        crops = np.stack([aligned_crop(frames[i], M) for i, M in jobs]).astype(np.float32)
        restored = self.restore_crops(crops)
        out = chunk.frames.clone()
        arr = out.numpy()
        for (i, M), face in zip(jobs, restored):
            paste(arr[i], face, M, self.mask, self.strength)
        return chunk.with_(frames=out)


def face_restore(stream: FrameStream, model: str, detector: str, strength: float = 1.0,
                 codeformer_fidelity: float = 0.5, min_face_size: int = 32, smoothing: float = 0.6,
                 detection_threshold: float = 0.6, detect_cuts: bool = False, precision: str = "auto") -> FrameStream:
    """A new stream with every detected face restored. Scene cuts attached to the stream (Scene
    Cuts node) reset the landmark smoothing; ``detect_cuts`` finds them if none are attached (once
    per chain, on the decoded video: see :mod:`remaster.analysis.scenes`)."""
    for nm, v, lo, hi in (("strength", strength, 0, 1), ("codeformer_fidelity", codeformer_fidelity, 0, 1),
                          ("smoothing", smoothing, 0, 0.95), ("detection_threshold", detection_threshold, 0.05, 1)):
        if not lo <= float(v) <= hi:
            raise FaceRestoreError(f"{nm} must be between {lo} and {hi}, got {v}")
    if min_face_size < 0:
        raise FaceRestoreError(f"min_face_size must be >= 0 pixels, got {min_face_size}")
    desc = load_restorer(model)
    FaceDetector(detector, detection_threshold)  # fail early on a bad detector file
    params = {
        "model": os.path.basename(str(model)),
        "detector": os.path.basename(str(detector)),
        "strength": float(strength),
        "codeformer_fidelity": float(codeformer_fidelity),
        "min_face_size": int(min_face_size),
        "smoothing": float(smoothing),
        "detection_threshold": float(detection_threshold),
        "detect_cuts": bool(detect_cuts),
        "precision": precision,
    }
    device = host.torch_device()

    def make():
        cuts = scenes.LazyCuts(stream, detect=detect_cuts)
        det = FaceDetector(detector, detection_threshold, device=device)
        fr = FaceRestorer(desc, det, strength, codeformer_fidelity, min_face_size, smoothing, cuts,
                          device, precision)
        progress = host.Progress(stream.info.frame_count, "face restore")

        def fn(ch: Chunk) -> Chunk:
            out = fr(ch)
            progress.update(len(ch))
            return out

        return fn

    # landmark tracks carry over from frame to frame: a range render warms them up (detection and
    # smoothing only matter there) on enough frames for the smoothing to forget its start
    alpha = min(0.95, max(0.0, float(smoothing)))
    warm = int(math.ceil(math.log(1e-4) / math.log(alpha))) + 2 if alpha > 0 else 2
    cut_aware = bool(detect_cuts) or stream.info.scene_cuts is not None
    return stream.map("face_restore", params, make, temporal=Temporal(behind=warm, recurrent=True, cut_aware=cut_aware))
