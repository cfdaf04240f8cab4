"""Video inpainting by keyframes (seed 001, steps 5–10): inpaint each keyframe, pick the best
candidate, carry the edit through its keyframe group following the motion, check for jumps.

1. :func:`inpaint_keyframes` — for each keyframe of a :class:`~.keyframes.KeyframePlan`, crop
   around the mask with context, resize to the model's resolution, ask a back-end for ``count``
   candidates (denoise ``strength`` 0.3 by default, prompt, negative prompt, seed) and resize the
   candidates back to the crop. Back-ends: :class:`DiffusersInpaint` (a local diffusers folder
   with a ``StableDiffusionInpaintPipeline``), :class:`ComfyInpaint` (ComfyUI's MODEL/CLIP/VAE;
   the sampling lives in ``remaster.host``), :class:`CallableInpaint` (a plain function; tests and
   stand-in edits).
2. :func:`select_candidates` — one candidate per keyframe: the best agreement with the unmasked
   surroundings (a ring just outside the mask) plus agreement with the previous keyframe's pick
   (colour statistics inside the mask). A manual list of picks overrides it; ``drop`` keeps a
   group original.
3. :func:`propagate` — frame ``t`` of a group gets the keyframe's edit warped along the optical
   flow from ``t`` to the keyframe, composited only inside ``t``'s feathered mask; the last
   ``blend`` frames of a group fade to the next keyframe's edit. Pixels outside the feathered
   mask are the source's, bit for bit. The output is re-measured against the source (masked
   frame-to-frame change); groups whose change jumps above the source's are reported, or dropped
   with ``on_jump="drop"``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .. import host
from ..stream import Chunk, FrameStream, fingerprint_of
from . import flow as flowlib
from .keyframes import KeyframePlan

__all__ = [
    "InpaintBackend",
    "DiffusersInpaint",
    "ComfyInpaint",
    "CallableInpaint",
    "diffusers_model_choices",
    "resolve_diffusers_folder",
    "crop_box",
    "feather",
    "edit_region",
    "KeyframeEdit",
    "InpaintCandidates",
    "InpaintSelection",
    "inpaint_keyframes",
    "select_candidates",
    "parse_picks",
    "propagate",
    "JumpMeter",
    "rectangle_mask",
    "candidate_sheet",
]


# ---------------------------------------------------------------------------------------------
# back-ends
# ---------------------------------------------------------------------------------------------
class InpaintBackend:
    """Makes ``count`` inpainted versions of one image.

    ``generate(image [1,h,w,3] 0..1, mask [1,h,w] 0..1, ...) -> [count,h,w,3] 0..1`` where ``h``
    and ``w`` are multiples of 8. Pixels outside the mask may change (the caller composites).
    """

    name = "backend"
    multiple = 8

    def generate(self, image: torch.Tensor, mask: torch.Tensor, *, prompt: str, negative: str,
                 strength: float, seed: int, steps: int, guidance: float, count: int) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"backend": self.name}


def diffusers_model_choices() -> list[str]:
    """Names of diffusers model folders (holding ``model_index.json``) in the ``diffusers`` folder."""
    names: set = set()
    for d in host.model_dirs("diffusers"):
        if d.is_dir():
            for idx in d.glob("*/model_index.json"):
                names.add(idx.parent.name)
            for idx in d.glob("*/*/model_index.json"):
                names.add(idx.parent.relative_to(d).as_posix())
    return sorted(names)


SD_INPAINTING_URL = "https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-inpainting"


def resolve_diffusers_folder(name: str) -> Path:
    """The folder of a diffusers model given its name in the ``diffusers`` models folder or a path."""
    if not name or not str(name).strip() or str(name).startswith("("):
        raise FileNotFoundError("no diffusers model was chosen: pick a model folder in the node's 'model' input")
    p = Path(str(name)).expanduser()
    if p.is_absolute() and (p / "model_index.json").is_file():
        return p
    for d in host.model_dirs("diffusers"):
        if (d / name / "model_index.json").is_file():
            return d / name
    where = host.model_dirs("diffusers")[0]
    raise FileNotFoundError(
        f"diffusers model folder '{name}' was not found. Put a diffusers inpainting model (a folder with "
        f"model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) in the 'diffusers' models "
        f"folder as {where / str(name)}; download it from {SD_INPAINTING_URL} (or save any diffusers "
        "inpainting pipeline there with save_pretrained)"
    )


def _model_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and host.cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


_pipeline_cache: dict = {}  # the last loaded diffusers pipeline, reused by later runs


class DiffusersInpaint(InpaintBackend):
    """``StableDiffusionInpaintPipeline`` loaded from a local folder (never from a hub)."""

    name = "diffusers"

    def __init__(self, model: str, device: Optional[torch.device] = None) -> None:
        from diffusers import StableDiffusionInpaintPipeline

        self.folder = resolve_diffusers_folder(model)
        self.device = device or host.torch_device()
        self.dtype = _model_dtype(self.device)
        key = (str(self.folder), (self.folder / "model_index.json").stat().st_mtime_ns, str(self.device), str(self.dtype))
        if _pipeline_cache.get("key") != key:
            _pipeline_cache.clear()  # keep at most one pipeline alive
            pipe = StableDiffusionInpaintPipeline.from_pretrained(
                str(self.folder), dtype=self.dtype, local_files_only=True,
                safety_checker=None, requires_safety_checker=False,
            )
            pipe.set_progress_bar_config(disable=True)
            pipe.to(self.device)
            _pipeline_cache.update(key=key, pipe=pipe)
        self.pipe = _pipeline_cache["pipe"]
        self.native = int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)
        self.multiple = max(8, int(self.pipe.vae_scale_factor))

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.folder.name, "dtype": str(self.dtype).replace("torch.", ""),
                "device": str(self.device)}

    def generate(self, image, mask, *, prompt, negative, strength, seed, steps, guidance, count):
        h, w = image.shape[1:3]
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        out = self.pipe(
            prompt=prompt,
            negative_prompt=negative or None,
            image=image.permute(0, 3, 1, 2).float(),
            mask_image=mask[:, None].float(),
            height=h,
            width=w,
            strength=float(strength),
            num_inference_steps=int(steps),
            guidance_scale=float(guidance),
            num_images_per_prompt=int(count),
            generator=gen,
            output_type="pt",
        ).images
        return out.float().cpu().permute(0, 2, 3, 1).clamp(0, 1)


class ComfyInpaint(InpaintBackend):
    """ComfyUI's own MODEL/CLIP/VAE (any SD1.5/SDXL checkpoint, inpainting or not). Runs only
    inside ComfyUI; the sampling call is :func:`remaster.host.comfy_inpaint`."""

    name = "comfyui"

    def __init__(self, model, clip, vae, sampler: str = "euler", scheduler: str = "normal") -> None:
        self.model, self.clip, self.vae = model, clip, vae
        self.sampler, self.scheduler = sampler, scheduler

    def describe(self) -> dict:
        return {"backend": self.name, "sampler": self.sampler, "scheduler": self.scheduler}

    def generate(self, image, mask, *, prompt, negative, strength, seed, steps, guidance, count):
        return host.comfy_inpaint(
            self.model, self.clip, self.vae, image, mask, prompt=prompt, negative=negative,
            strength=strength, seed=seed, steps=steps, cfg=guidance, count=count,
            sampler_name=self.sampler, scheduler=self.scheduler,
        )


class CallableInpaint(InpaintBackend):
    """A plain function ``fn(image [1,h,w,3], mask [1,h,w], seed) -> [h,w,3]`` as a back-end, called
    with ``seed, seed+1, ...`` for the candidates (tests, deliberate simple edits)."""

    name = "function"

    def __init__(self, fn: Callable, label: str = "function") -> None:
        self.fn, self.label = fn, label

    def describe(self) -> dict:
        return {"backend": self.name, "function": self.label}

    def generate(self, image, mask, *, prompt, negative, strength, seed, steps, guidance, count):
        return torch.stack([self.fn(image, mask, seed + j).reshape(image.shape[1:]) for j in range(count)])


# ---------------------------------------------------------------------------------------------
# geometry: crops and feathered masks
# ---------------------------------------------------------------------------------------------
def crop_box(mask: torch.Tensor, context: float = 0.25, margin: int = 16) -> Optional[tuple]:
    """``(x0, y0, x1, y1)`` around the mask ``[H,W]`` grown by ``context`` × its size (at least
    ``margin`` pixels) on each side, clamped to the frame; None when the mask is empty."""
    ys, xs = torch.nonzero(mask > 0, as_tuple=True)
    if len(ys) == 0:
        return None
    H, W = mask.shape
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    pad = max(int(margin), int(round(context * max(y1 - y0, x1 - x0))))
    return max(0, x0 - pad), max(0, y0 - pad), min(W, x1 + pad), min(H, y1 + pad)


def model_size(w: int, h: int, resolution: int, multiple: int = 8) -> tuple:
    """The size a ``w``×``h`` crop is resized to: long side ≈ ``resolution``, both multiples of ``multiple``."""
    s = resolution / max(w, h)
    mw = max(multiple, int(round(w * s / multiple)) * multiple)
    mh = max(multiple, int(round(h * s / multiple)) * multiple)
    return mw, mh


def _resize(x: torch.Tensor, size_hw: tuple) -> torch.Tensor:
    """``[n,h,w,c]`` → ``[n,H,W,c]``, antialiased when shrinking."""
    if tuple(x.shape[1:3]) == tuple(size_hw):
        return x
    y = F.interpolate(x.permute(0, 3, 1, 2).float(), size=size_hw, mode="bilinear", align_corners=False,
                      antialias=True)
    return y.permute(0, 2, 3, 1)


def feather(mask: torch.Tensor, grow: int = 4, radius: int = 8) -> torch.Tensor:
    """Soft compositing alpha ``[n,H,W]`` from a mask: dilate by ``grow`` px, then a box blur of
    ``radius`` px applied twice. It is exactly 0 farther than ``grow + 2·radius`` px from the mask
    (see :func:`edit_region`)."""
    m = mask.detach().float().cpu().numpy()
    if m.ndim == 2:
        m = m[None]
    out = np.empty_like(m)
    kd = np.ones((2 * grow + 1, 2 * grow + 1), np.uint8) if grow > 0 else None
    for i in range(m.shape[0]):
        a = (m[i] > 0.5).astype(np.float32)
        if kd is not None:
            a = cv2.dilate(a, kd)
        if radius > 0:
            k = (2 * radius + 1, 2 * radius + 1)
            a = cv2.blur(cv2.blur(a, k, borderType=cv2.BORDER_REPLICATE), k, borderType=cv2.BORDER_REPLICATE)
            a[a < 1e-4] = 0.0
        out[i] = np.clip(a, 0.0, 1.0)
    t = torch.from_numpy(out)
    return t if mask.ndim == 3 else t[0]


def edit_region(mask: torch.Tensor, grow: int = 4, radius: int = 8) -> torch.Tensor:
    """Boolean ``[n,H,W]``: where an edit may touch pixels (the mask dilated by ``grow + 2·radius``)."""
    m = mask.detach().float().cpu().numpy()
    r = grow + 2 * radius
    k = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
    if m.ndim == 2:
        m = m[None]
    out = np.stack([cv2.dilate((x > 0.5).astype(np.uint8), k) > 0 for x in m])
    return torch.from_numpy(out)


def rectangle_mask(stream: FrameStream, x: float, y: float, width: float, height: float,
                   combine: str = "replace") -> FrameStream:
    """The stream with a rectangle (fractions of the frame) as its mask, the same on every frame."""
    if combine not in ("replace", "add", "intersect"):
        raise ValueError(f"rectangle mask: 'combine' must be replace, add or intersect, got '{combine}'")
    if width <= 0 or height <= 0:
        raise ValueError("rectangle mask: 'width' and 'height' must be above 0")
    H, W = stream.info.height, stream.info.width
    x0, y0 = int(round(x * W)), int(round(y * H))
    x1, y1 = min(W, int(round((x + width) * W))), min(H, int(round((y + height) * H)))
    rect = torch.zeros(H, W)
    rect[y0:y1, x0:x1] = 1.0

    def make():
        def fn(chunk: Chunk) -> Chunk:
            r = rect.expand(len(chunk), H, W)
            if chunk.mask is None or combine == "replace":
                m = r.clone()
            elif combine == "add":
                m = torch.maximum(chunk.mask, r)
            else:
                m = torch.minimum(chunk.mask, r)
            return chunk.with_(mask=m)

        return fn

    params = {"box": [x0, y0, x1, y1], "combine": combine}
    return stream.map("rectangle_mask", params, make, stream.info.with_(has_mask=True))


# ---------------------------------------------------------------------------------------------
# step 5: inpaint keyframes
# ---------------------------------------------------------------------------------------------
@dataclass
class KeyframeEdit:
    """Everything about one keyframe's inpainting, at crop level (uint8 to keep memory small)."""

    index: int  # frame index of the keyframe
    box: Optional[tuple]  # (x0, y0, x1, y1) or None when the mask is empty there
    source: Optional[torch.Tensor] = None  # [h,w,3] uint8 crop of the source
    candidates: Optional[torch.Tensor] = None  # [count,h,w,3] uint8
    mask: Optional[torch.Tensor] = None  # [h,w] float crop of the mask
    thumb: Optional[np.ndarray] = None  # grey uint8 of the whole keyframe at the flow size
    seconds: float = 0.0


@dataclass
class InpaintCandidates:
    plan: KeyframePlan
    edits: list  # KeyframeEdit per keyframe, in order
    settings: dict = field(default_factory=dict)
    frame_size: tuple = (0, 0)  # (H, W)

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("inpaint", self.plan.fingerprint, self.settings)

    def __repr__(self) -> str:
        n = sum(1 for e in self.edits if e.candidates is not None)
        return f"<InpaintCandidates {n} keyframes × {self.settings.get('count')} candidates>"


def _u8(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(0, 1).mul(255).round().to(torch.uint8)


def _f32(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255)


def inpaint_keyframes(
    stream: FrameStream,
    plan: KeyframePlan,
    backend: InpaintBackend,
    prompt: str = "",
    negative: str = "",
    count: int = 4,
    strength: float = 0.3,
    seed: int = 0,
    steps: int = 20,
    guidance: float = 7.5,
    resolution: int = 512,
    context: float = 0.25,
    grow: int = 4,
    feather_px: int = 8,
    flow_side: int = 512,
) -> InpaintCandidates:
    """Inpaint every keyframe of ``plan`` (frames and masks from ``stream``); see the module docstring.

    Every keyframe uses the same ``seed`` (candidate ``j`` differs by its place in the batch), so
    neighbouring keyframes start from the same noise, which keeps edits alike across groups.
    """
    if stream.info.frame_count != plan.frame_count:
        raise ValueError(
            f"inpaint: the keyframe plan covers {plan.frame_count} frames but the stream has "
            f"{stream.info.frame_count}; connect the same frames to Keyframes and Inpaint"
        )
    if not stream.info.has_mask:
        raise ValueError("inpaint: the frames carry no mask; connect a mask node (e.g. Mask from "
                         "Rectangle or a segmentation node) before Keyframes and Inpaint")
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"inpaint: 'strength' (denoise) must be in (0, 1], got {strength}")
    if count < 1:
        raise ValueError(f"inpaint: 'count' must be at least 1, got {count}")
    settings = {
        "prompt": prompt, "negative": negative, "count": int(count), "strength": float(strength),
        "seed": int(seed), "steps": int(steps), "guidance": float(guidance), "resolution": int(resolution),
        "context": float(context), "grow": int(grow), "feather": int(feather_px), "flow_side": int(flow_side),
        **backend.describe(),
    }
    wanted = set(plan.keyframes)
    edits: list = []
    progress = host.Progress(len(plan.keyframes), "Inpaint keyframes")
    margin = grow + 2 * feather_px + 8
    for chunk in stream.chunks():
        for i in range(len(chunk)):
            idx = chunk.start + i
            if idx not in wanted:
                continue
            t0 = time.perf_counter()
            frame, mask = chunk.frames[i], chunk.mask[i]
            thumb = flowlib.to_gray_u8(frame, flow_side)
            box = crop_box(mask, context, margin)
            if box is None:
                edits.append(KeyframeEdit(idx, None, thumb=thumb))
                progress.update(1)
                continue
            x0, y0, x1, y1 = box
            crop, mcrop = frame[y0:y1, x0:x1], mask[y0:y1, x0:x1]
            mw, mh = model_size(x1 - x0, y1 - y0, resolution, backend.multiple)
            img_in = _resize(crop[None], (mh, mw)).clamp(0, 1)
            m_in = (_resize(mcrop[None, ..., None], (mh, mw))[..., 0] > 0.5).float()
            out = backend.generate(img_in, m_in, prompt=prompt, negative=negative, strength=strength,
                                   seed=seed, steps=steps, guidance=guidance, count=count)
            if out.ndim != 4 or out.shape[0] != count or tuple(out.shape[1:3]) != (mh, mw):
                raise RuntimeError(f"inpaint back-end returned {tuple(out.shape)}, expected [{count},{mh},{mw},3]")
            back = _resize(out.float().cpu(), (y1 - y0, x1 - x0))
            edits.append(KeyframeEdit(idx, box, _u8(crop), _u8(back), mcrop.float().clone(), thumb,
                                      round(time.perf_counter() - t0, 3)))
            progress.update(1)
    progress.close()
    if len(edits) != len(plan.keyframes):
        raise RuntimeError(f"inpaint: found {len(edits)} of {len(plan.keyframes)} keyframes in the stream")
    H, W = stream.info.height, stream.info.width
    return InpaintCandidates(plan, edits, settings, (H, W))


def candidate_sheet(cands: "InpaintCandidates", side: int = 256) -> torch.Tensor:
    """All candidates as a ComfyUI IMAGE batch ``[keyframes × count, side, side, 3]`` (each crop
    letterboxed into a square), keyframe by keyframe, for choosing picks by eye."""
    tiles = []
    for e in cands.edits:
        if e.candidates is None:
            continue
        for c in range(e.candidates.shape[0]):
            img = _f32(e.candidates[c])
            h, w = img.shape[:2]
            s = side / max(h, w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            small = _resize(img[None], (nh, nw))[0]
            tile = torch.zeros(side, side, 3)
            oy, ox = (side - nh) // 2, (side - nw) // 2
            tile[oy:oy + nh, ox:ox + nw] = small.clamp(0, 1)
            tiles.append(tile)
    return torch.stack(tiles) if tiles else torch.zeros(1, side, side, 3)


# ---------------------------------------------------------------------------------------------
# step 6: select
# ---------------------------------------------------------------------------------------------
@dataclass
class InpaintSelection:
    candidates: InpaintCandidates
    picks: list  # per keyframe: candidate number, or None = dropped (group stays original)
    scores: list = field(default_factory=list)  # per keyframe: list of scores (lower is better)
    manual: list = field(default_factory=list)  # per keyframe: True where the user chose

    @property
    def plan(self) -> KeyframePlan:
        return self.candidates.plan

    @property
    def fingerprint(self) -> str:
        return fingerprint_of("select", self.candidates.fingerprint, self.picks)

    def edited(self, g: int) -> Optional[torch.Tensor]:
        """The chosen candidate of keyframe ``g`` as float ``[h,w,3]`` (None if dropped/empty)."""
        e = self.candidates.edits[g]
        p = self.picks[g]
        if p is None or e.candidates is None:
            return None
        return _f32(e.candidates[p])

    def to_json(self) -> list:
        return [
            {"keyframe": e.index, "pick": "drop" if p is None else p, "manual": m,
             "scores": [round(float(s), 5) for s in sc], "box": list(e.box) if e.box else None,
             "seconds": e.seconds}
            for e, p, sc, m in zip(self.candidates.edits, self.picks, self.scores, self.manual)
        ]

    def __repr__(self) -> str:
        return f"<InpaintSelection picks={self.picks}>"


def parse_picks(text: str, n_keyframes: int) -> list:
    """``"auto, 2, drop"`` → ``["auto", 2, None]`` padded with "auto" to ``n_keyframes``.

    Entries are in keyframe order: a candidate number (0-based), ``drop`` (keep that group
    original) or ``auto``/empty.
    """
    out: list = []
    for raw in (text or "").replace(";", ",").split(","):
        tok = raw.strip().lower()
        if tok in ("", "auto", "a", "-"):
            out.append("auto")
        elif tok in ("drop", "d", "x", "none", "original"):
            out.append(None)
        elif tok.isdigit():
            out.append(int(tok))
        else:
            raise ValueError(f"select: cannot read pick '{raw.strip()}'; use a candidate number, 'drop' or 'auto', "
                             "separated by commas in keyframe order (e.g. 'auto, 2, drop')")
    text_empty = not (text or "").strip()
    if text_empty:
        out = []
    if len(out) > n_keyframes:
        raise ValueError(f"select: {len(out)} picks given but there are only {n_keyframes} keyframes")
    return out + ["auto"] * (n_keyframes - len(out))


def _ring(mask: torch.Tensor, width: int) -> torch.Tensor:
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = (mask.numpy() > 0.5).astype(np.uint8)
    return torch.from_numpy((cv2.dilate(m, k) > 0) & (m == 0))


def _stats(img: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    sel = img[m]
    if sel.numel() == 0:
        return torch.zeros(6)
    return torch.cat([sel.mean(0), sel.std(0, unbiased=False)])


def select_candidates(cands: InpaintCandidates, picks: str = "", neighbour_weight: float = 0.5) -> InpaintSelection:
    """Choose a candidate per keyframe (see the module docstring); ``picks`` overrides."""
    edits = cands.edits
    manual_in = parse_picks(picks, len(edits))
    chosen: list = []
    all_scores: list = []
    manual: list = []
    prev_stats = None
    for g, e in enumerate(edits):
        if e.candidates is None:
            chosen.append(None if manual_in[g] is None else 0)
            all_scores.append([])
            manual.append(manual_in[g] != "auto")
            continue
        src, m = _f32(e.source), e.mask > 0.5
        ring = _ring(e.mask, max(2, min(src.shape[:2]) // 32))
        scores = []
        for c in range(e.candidates.shape[0]):
            img = _f32(e.candidates[c])
            s = float((img[ring] - src[ring]).abs().mean()) if ring.any() else 0.0
            st = _stats(img, m)
            if prev_stats is not None:
                s += neighbour_weight * float((st - prev_stats).abs().mean())
            scores.append(s)
        want = manual_in[g]
        if want == "auto":
            pick = int(np.argmin(scores))
        elif want is None:
            pick = None
        else:
            if not 0 <= want < len(scores):
                raise ValueError(f"select: keyframe {g} (frame {e.index}) has candidates 0..{len(scores) - 1}, "
                                 f"pick {want} does not exist")
            pick = want
        chosen.append(pick)
        all_scores.append(scores)
        manual.append(want != "auto")
        if pick is not None:
            prev_stats = _stats(_f32(e.candidates[pick]), m)
    return InpaintSelection(cands, chosen, all_scores, manual)


# ---------------------------------------------------------------------------------------------
# step 7-10: propagate, composite, blend, check
# ---------------------------------------------------------------------------------------------
class JumpMeter:
    """Step 9: does the edited video change inside the mask more than the source does?

    Per frame ``t`` (not the first of a shot): ``excess = d(out_t, out_t-1) - d(src_t, src_t-1)``,
    ``d`` = mean absolute difference inside the union of both frames' masks, on a copy downscaled
    to ``side``. A group's score is the largest excess over its frames (its first frame measures
    the jump at its start).
    """

    def __init__(self, plan: KeyframePlan, side: int = 256) -> None:
        self.plan, self.side = plan, side
        self.cuts = set(plan.cuts)
        self.prev = None
        self.excess = [0.0] * plan.frame_count

    def _small(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[:2]
        s = min(1.0, self.side / max(H, W))
        size = (max(1, round(H * s)), max(1, round(W * s)))
        y = x.permute(2, 0, 1)[None] if x.ndim == 3 else x[None, None]
        return F.interpolate(y.float(), size=size, mode="area")[0]

    def add(self, index: int, src: torch.Tensor, out: torch.Tensor, mask: Optional[torch.Tensor]) -> None:
        s, o = self._small(src), self._small(out)
        m = self._small(mask)[0] > 0.05 if mask is not None else torch.ones(s.shape[1:], dtype=torch.bool)
        if self.prev is not None and index not in self.cuts and self.prev[0] == index - 1:
            _, ps, po, pm = self.prev
            region = m | pm
            if region.any():
                ds = float((s - ps).abs().mean(0)[region].mean())
                do = float((o - po).abs().mean(0)[region].mean())
                self.excess[index] = max(0.0, do - ds)
        self.prev = (index, s, o, m)

    def group_scores(self) -> list:
        return [max(self.excess[a:b]) if b > a else 0.0 for a, b in self.plan.groups]


def _region_box(alpha: torch.Tensor) -> Optional[tuple]:
    ys, xs = torch.nonzero(alpha > 0, as_tuple=True)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


class _Compositor:
    """Carries keyframe edits to frames (one instance per pass)."""

    def __init__(self, sel: InpaintSelection, mode: str, blend: int, flow_method: str,
                 dropped: set) -> None:
        c = sel.candidates
        self.sel, self.mode, self.blend, self.flow_method = sel, mode, blend, flow_method
        self.plan = c.plan
        self.grow, self.radius = c.settings["grow"], c.settings["feather"]
        self.flow_side = c.settings["flow_side"]
        self.edits = c.edits
        self.dropped = set(dropped)
        self.layers: dict = {}  # g -> (edited crop, source crop) as [1,3,h,w] float
        self.cuts = sorted(self.plan.cuts)

    def _layer(self, g: int):
        """Keyframe ``g``'s change inside its own feathered mask, ``alpha_k · (edit − source)``, as
        ``[1,3,h,w]`` (``replace`` mode: the source crop plus that change). None when dropped."""
        if g in self.dropped:
            return None
        if g not in self.layers:
            e = self.edits[g]
            ed = self.sel.edited(g)
            if ed is None:
                self.layers[g] = None
            else:
                src = _f32(e.source)
                alpha_k = feather(e.mask, self.grow, self.radius)[..., None]
                img = alpha_k * (ed - src)
                if self.mode == "replace":
                    img = src + img
                self.layers[g] = img.permute(2, 0, 1)[None].contiguous()
            for old in [k for k in self.layers if k < g - 1]:
                del self.layers[old]
        return self.layers[g]

    def _same_shot(self, a: int, b: int) -> bool:
        import bisect

        return bisect.bisect_right(self.cuts, a) == bisect.bisect_right(self.cuts, b)

    def _warped(self, g: int, gray: np.ndarray, box: tuple, size: tuple):
        """Keyframe ``g``'s layer warped onto the region ``box`` of the current frame:
        ``(values [3,h,w], valid [h,w])`` or None."""
        layer = self._layer(g)
        if layer is None:
            return None
        e = self.edits[g]
        H, W = size
        fl = flowlib.estimate_flow(gray, e.thumb, self.flow_method, out_size=(H, W))
        rx0, ry0, rx1, ry1 = box
        fr = np.ascontiguousarray(fl[ry0:ry1, rx0:rx1])
        off = (e.box[0] - rx0, e.box[1] - ry0)
        both = torch.cat([layer, torch.ones_like(layer[:, :1])], 1)
        w = flowlib.backward_warp(both, fr, offset=off, padding="zeros")[0]
        return w[:3], w[3]

    def frame(self, index: int, src: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        if mask is None:
            return src
        g = self.plan.group_of(index)
        a, b = self.plan.groups[g]
        contributions = [(g, 1.0)]
        if self.blend > 0 and g + 1 < len(self.plan.groups) and index >= b - self.blend \
                and self._same_shot(index, b):
            w = (index - (b - self.blend) + 1) / (self.blend + 1)
            contributions = [(g, 1.0 - w), (g + 1, w)]
        live = [(k, w) for k, w in contributions if self._layer(k) is not None and w > 0]
        if not live:
            return src
        alpha = feather(mask, self.grow, self.radius)
        box = _region_box(alpha)
        if box is None:
            return src
        x0, y0, x1, y1 = box
        H, W = src.shape[:2]
        gray = flowlib.to_gray_u8(src, self.flow_side)
        s = src[y0:y1, x0:x1].permute(2, 0, 1)
        acc = torch.zeros_like(s)
        for k, w in contributions:
            got = self._warped(k, gray, box, (H, W)) if w > 0 else None
            if got is None:
                continue  # dropped or empty: this share stays original (delta 0)
            val, valid = got
            if self.mode == "delta":
                acc += w * val
            else:
                acc += w * (val + (1.0 - valid) * s - s)
        al = alpha[y0:y1, x0:x1]
        region = s + al * acc
        out = src.clone()
        inside = (al > 0)[..., None]
        out[y0:y1, x0:x1] = torch.where(inside, region.permute(1, 2, 0).clamp(0, 1), src[y0:y1, x0:x1])
        return out


def propagate(
    stream: FrameStream,
    selection: InpaintSelection,
    mode: str = "delta",
    blend: int = 4,
    flow_method: str = "farneback",
    on_jump: str = "report",
    jump_threshold: float = 0.03,
) -> FrameStream:
    """The edited video (see the module docstring). ``mode``: ``delta`` adds the keyframe's change
    (edit − source) to each frame, keeping the frame's own detail; ``replace`` pastes the warped
    keyframe edit itself. ``on_jump``: ``report`` or ``drop`` (an extra pass first, then groups
    scoring above ``jump_threshold`` stay original)."""
    if mode not in ("delta", "replace"):
        raise ValueError(f"propagate: 'mode' must be 'delta' or 'replace', got '{mode}'")
    if on_jump not in ("report", "drop"):
        raise ValueError(f"propagate: 'on_jump' must be 'report' or 'drop', got '{on_jump}'")
    if flow_method not in flowlib.METHODS:
        raise ValueError(f"propagate: unknown flow_method '{flow_method}'; use one of {flowlib.METHODS}")
    plan = selection.plan
    if stream.info.frame_count != plan.frame_count:
        raise ValueError(f"propagate: the edit was made for {plan.frame_count} frames, the stream has "
                         f"{stream.info.frame_count}; connect the same frames used for Keyframes")
    if (stream.info.height, stream.info.width) != tuple(selection.candidates.frame_size):
        raise ValueError("propagate: the frames' size differs from the size the keyframes were inpainted at")
    params = {"selection": selection.fingerprint, "mode": mode, "blend": int(blend), "flow": flow_method,
              "on_jump": on_jump, "jump_threshold": float(jump_threshold)}

    def run(dropped: set, meter: Optional[JumpMeter]) -> Iterator[Chunk]:
        comp = _Compositor(selection, mode, int(blend), flow_method, dropped)
        for chunk in stream.chunks():
            outs = []
            for i in range(len(chunk)):
                idx = chunk.start + i
                m = None if chunk.mask is None else chunk.mask[i]
                o = comp.frame(idx, chunk.frames[i], m)
                if meter is not None:
                    meter.add(idx, chunk.frames[i], o, m)
                outs.append(o)
            host.check_interrupt()
            yield chunk.with_(frames=torch.stack(outs))

    dropped: set = set()
    scores: list = []
    if on_jump == "drop":
        meter = JumpMeter(plan)
        for _ in run(set(), meter):
            pass
        scores = meter.group_scores()
        dropped = {g for g, s in enumerate(scores) if s > jump_threshold}
    info = stream.info.set_extra("inpaint_jump_scores", tuple(round(s, 5) for s in scores))
    info = info.set_extra("inpaint_dropped", tuple(sorted(dropped)))
    params["dropped"] = sorted(dropped)

    def producer(up: FrameStream, size: int) -> Iterator[Chunk]:
        from ..stream import rebatch

        yield from rebatch(run(dropped, None), size)

    return stream.derive("inpaint_propagate", params, producer, info)
