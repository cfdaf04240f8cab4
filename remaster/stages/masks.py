"""SAM2 video masks on the frame stream, through transformers' ``Sam2VideoModel``.

Prompts (positive/negative points, boxes) on one or more frames, for one or more objects, are
propagated forward through the stream one frame at a time in transformers' streaming mode. The
inference session would otherwise keep every frame and every frame's memory; here it is pruned
after each frame to what SAM2 can still attend to: the conditioning (prompted) frames, the last
``num_maskmem`` memories and the last ``max_object_pointers_in_encoder`` object pointers. Memory
therefore stays flat whatever the video length.

The output mask is soft: the sigmoid of SAM2's mask logits, upsampled to the frame size; with
several objects, their union (per-pixel maximum).

At scene cuts the memory can be dropped and the objects re-seeded with their latest prompts
(``reseed_at_cuts``), for footage that cuts between similar framings of the same subject.

Weights: a Hugging Face SAM2.1 folder (``config.json`` + ``model.safetensors``, e.g. the
``facebook/sam2.1-hiera-tiny`` repository) inside the ``sam2`` models folder. Meta's original
``.pt`` checkpoints use another layout that transformers loads only after conversion.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from .. import host
from ..models import registry
from ..stream import Chunk, FrameStream
from ..analysis import scenes
from ..models.cache import MODELS
from ..models.precision import pick_dtype

log = logging.getLogger("remaster.masks")


# ---------------------------------------------------------------------------------------------
# prompts
# ---------------------------------------------------------------------------------------------
@dataclass
class Prompt:
    frame: int
    obj_id: int = 1
    points: list = field(default_factory=list)  # [[x, y, label], ...] label 1 = positive, 0 = negative
    boxes: list = field(default_factory=list)  # [[x0, y0, x1, y1]] (SAM2 takes one box per object)

    def as_json(self) -> dict:
        return {"frame": self.frame, "obj_id": self.obj_id, "points": self.points, "boxes": self.boxes}


def parse_prompts(data: Any, width: int, height: int, frame_count: int) -> list[Prompt]:
    """Prompts from JSON text or a list of dicts ``{"frame", "points", "boxes", "obj_id"}``.
    Coordinates are pixels of the stream's frames. Errors name the entry and the fix."""
    if isinstance(data, str):
        text = data.strip()
        if not text:
            raise ValueError("no SAM2 prompts given: add at least one point or box, e.g. "
                             '[{"frame": 0, "points": [[320, 240, 1]], "obj_id": 1}]')
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"SAM2 prompts are not valid JSON ({exc.msg} at character {exc.pos})") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not data:
        raise ValueError("SAM2 prompts must be a JSON list of objects like "
                         '{"frame": 0, "points": [[x, y, 1]], "boxes": [[x0, y0, x1, y1]], "obj_id": 1}')
    out: list[Prompt] = []
    for n, item in enumerate(data):
        where = f"SAM2 prompt #{n}"
        if not isinstance(item, dict):
            raise ValueError(f"{where} is not an object with frame/points/boxes/obj_id")
        unknown = set(item) - {"frame", "points", "boxes", "obj_id"}
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; use frame, points, boxes, obj_id")
        frame = int(item.get("frame", 0))
        if not 0 <= frame < max(1, frame_count):
            raise ValueError(f"{where}: frame {frame} is outside the stream (0..{frame_count - 1})")
        obj_id = int(item.get("obj_id", 1))
        points = []
        for p in item.get("points", []) or []:
            if len(p) not in (2, 3):
                raise ValueError(f"{where}: a point must be [x, y] or [x, y, label], got {p}")
            x, y = float(p[0]), float(p[1])
            label = int(p[2]) if len(p) == 3 else 1
            if label not in (0, 1):
                raise ValueError(f"{where}: point label must be 1 (object) or 0 (not object), got {label}")
            _check_xy(where, x, y, width, height)
            points.append([x, y, label])
        boxes = []
        for b in item.get("boxes", []) or []:
            if len(b) != 4:
                raise ValueError(f"{where}: a box must be [x0, y0, x1, y1], got {b}")
            x0, y0, x1, y1 = (float(v) for v in b)
            _check_xy(where, x0, y0, width, height)
            _check_xy(where, x1, y1, width, height)
            if x1 <= x0 or y1 <= y0:
                raise ValueError(f"{where}: box {b} is empty; x1 must exceed x0 and y1 exceed y0")
            boxes.append([x0, y0, x1, y1])
        if len(boxes) > 1:
            raise ValueError(f"{where}: SAM2 takes one box per object; give each box its own obj_id")
        if not points and not boxes:
            raise ValueError(f"{where}: it has neither points nor boxes")
        out.append(Prompt(frame, obj_id, points, boxes))
    return sorted(out, key=lambda p: p.frame)


def _check_xy(where: str, x: float, y: float, w: int, h: int) -> None:
    if not (0 <= x <= w and 0 <= y <= h):
        raise ValueError(f"{where}: ({x:g}, {y:g}) lies outside the {w}x{h} frame (coordinates are pixels)")


# ---------------------------------------------------------------------------------------------
# model
# ---------------------------------------------------------------------------------------------


def model_dir(name: str) -> Path:
    """The Hugging Face folder for a SAM2 choice (a file inside the folder, or the folder)."""
    p = Path(str(name)).expanduser()
    if p.is_dir():
        folder = p
    else:
        path = registry.resolve(name, "sam2")
        folder = path.parent
        if path.suffix in (".pt", ".pth") and not (folder / "config.json").is_file():
            raise registry.ModelError(
                f"'{path.name}' looks like one of Meta's original SAM2 checkpoints, which transformers cannot "
                "load directly. Use the Hugging Face release instead: put the files of e.g. "
                "facebook/sam2.1-hiera-tiny (config.json and model.safetensors) in a sub-folder of the "
                f"'sam2' models folder ({host.model_dirs('sam2')[0]}/sam2.1-hiera-tiny/)."
            )
    if not (folder / "config.json").is_file():
        hint = ""
        entry = registry.entries().get(folder.name)
        if entry is not None and entry.urls:
            hint = f" Download it from {entry.url.rsplit('/', 1)[0]}/config.json into that folder."
        raise registry.ModelError(
            f"SAM2 folder '{folder}' has no config.json. It must hold a Hugging Face SAM2 release "
            "(config.json + model.safetensors), e.g. the files of facebook/sam2.1-hiera-tiny." + hint
        )
    return folder


def sam2_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA (fp16 where bf16 is missing), bf16 on CPUs with fast bf16 (about 30% faster
    than fp32 for SAM2.1 tiny here; masks within 0.005), fp32 elsewhere."""
    return pick_dtype(device, cuda_prefers="bf16")


def load_sam2(name: str, device: torch.device, dtype: torch.dtype):
    folder = model_dir(name)
    key = (str(folder.resolve()), str(device), dtype)
    return MODELS.get("sam2", key, lambda: _load_sam2(folder, device, dtype))


def _load_sam2(folder: Path, device: torch.device, dtype: torch.dtype):
    import transformers
    from transformers import Sam2VideoModel, Sam2VideoProcessor, Sam2VideoVideoProcessor

    # transformers 5 dropped the "Fast" suffix; 4.56-4.x only has the Fast class
    Sam2ImageProcessor = getattr(transformers, "Sam2ImageProcessor", None) or transformers.Sam2ImageProcessorFast
    try:
        model, info = Sam2VideoModel.from_pretrained(str(folder), local_files_only=True, dtype=dtype,
                                                     output_loading_info=True)
    except Exception as exc:  # a corrupt or foreign folder
        raise registry.ModelError(f"could not load SAM2 from '{folder}': {exc}") from exc
    missing = list(info.get("missing_keys") or [])
    if missing:  # transformers would silently leave these randomly initialised
        raise registry.ModelError(
            f"SAM2 weights in '{folder}' do not match its config.json ({len(missing)} missing, e.g. "
            f"{missing[:3]}); re-download both files from the same Hugging Face repository"
        )
    model = model.to(device).eval()
    size = int(model.config.image_size)
    mask = size // 4
    processor = Sam2VideoProcessor(
        image_processor=Sam2ImageProcessor(size={"height": size, "width": size},
                                           mask_size={"height": mask, "width": mask}),
        video_processor=Sam2VideoVideoProcessor(size={"height": size, "width": size}),
    )
    return model, processor


# ---------------------------------------------------------------------------------------------
# propagation
# ---------------------------------------------------------------------------------------------
class Sam2Tracker:
    """Streams frames through a SAM2 inference session with a bounded memory bank."""

    def __init__(self, model, processor, prompts: list[Prompt], height: int, width: int,
                 device: torch.device, dtype: torch.dtype) -> None:
        self.model, self.processor = model, processor
        self.h, self.w = height, width
        self.device, self.dtype = device, dtype
        self.by_frame: dict[int, list[Prompt]] = {}
        for p in prompts:
            self.by_frame.setdefault(p.frame, []).append(p)
        self.latest: dict[int, Prompt] = {}
        cfg = model.config
        self.window = max(int(cfg.num_maskmem), int(cfg.max_object_pointers_in_encoder)) + 1
        self.session = None
        self.reset()

    def reset(self) -> None:
        self.session = self.processor.init_video_session(inference_device=self.device, dtype=self.dtype)

    def _add(self, frame: int, prompt: Prompt) -> None:
        kw: dict = {}
        if prompt.points:
            kw["input_points"] = [[[[p[0], p[1]] for p in prompt.points]]]
            kw["input_labels"] = [[[int(p[2]) for p in prompt.points]]]
        if prompt.boxes:
            kw["input_boxes"] = [[prompt.boxes[0]]]
        before = list(self.session.obj_with_new_inputs)
        self.processor.add_inputs_to_inference_session(
            self.session, frame_idx=frame, obj_ids=[prompt.obj_id], original_size=(self.h, self.w), **kw
        )
        # the processor replaces the list of objects with new inputs; keep earlier ones too
        self.session.obj_with_new_inputs = before + [o for o in self.session.obj_with_new_inputs if o not in before]
        self.latest[prompt.obj_id] = prompt

    def reseed(self, frame: int) -> None:
        """Drop all memory and seed the objects again on ``frame`` with their latest prompts."""
        latest = dict(self.latest)
        self.reset()
        for obj_id, p in latest.items():
            if not any(q.obj_id == obj_id for q in self.by_frame.get(frame, [])):
                self._add(frame, p)

    def _prune(self, frame: int) -> None:
        s = self.session
        if s.processed_frames:
            for k in [k for k in s.processed_frames if k <= frame]:
                del s.processed_frames[k]
        horizon = frame - self.window
        for obj_idx, outs in s.output_dict_per_obj.items():
            nc = outs["non_cond_frame_outputs"]
            for k in [k for k in nc if k < horizon]:
                del nc[k]
            tracked = s.frames_tracked_per_obj.get(obj_idx, {})
            for k in [k for k in tracked if k < horizon]:
                del tracked[k]

    def step(self, frame: int, pixel_values: torch.Tensor) -> torch.Tensor:
        """Soft mask ``[H, W]`` for stream frame ``frame``."""
        for p in self.by_frame.get(frame, []):
            self._add(frame, p)
        if self.session.get_obj_num() == 0:
            return torch.zeros(self.h, self.w)
        with torch.inference_mode():
            out = self.model(inference_session=self.session, frame=pixel_values.to(self.device, self.dtype),
                             frame_idx=frame)
        logits = self.processor.post_process_masks(
            [out.pred_masks.float()], original_sizes=[[self.h, self.w]], binarize=False
        )[0]
        self._prune(frame)
        return torch.sigmoid(logits[:, 0]).amax(0).float().cpu()

    def memory_frames(self) -> int:
        """How many frames' memories the session holds (for tests and benches)."""
        s = self.session
        n = len(s.processed_frames or {})
        for outs in s.output_dict_per_obj.values():
            n = max(n, len(outs["cond_frame_outputs"]) + len(outs["non_cond_frame_outputs"]))
        return n


def sam2_mask(
    stream: FrameStream,
    model: str,
    prompts: Any,
    reseed_at_cuts: bool = False,
    combine: str = "replace",
) -> FrameStream:
    """Soft SAM2 masks for the prompted objects; the union becomes the stream's mask.

    ``combine``: ``replace`` the stream's mask, or ``union``/``intersect`` with the existing one.
    """
    info = stream.info
    plist = parse_prompts(prompts, info.width, info.height, info.frame_count)
    if combine not in ("replace", "union", "intersect"):
        raise ValueError(f"combine must be replace, union or intersect, got '{combine}'")
    if combine != "replace" and not info.has_mask:
        raise ValueError(f"combine '{combine}' needs a stream that already has a mask; use 'replace'")
    folder = model_dir(model)
    params = {"model": folder.name, "prompts": [p.as_json() for p in plist], "reseed": bool(reseed_at_cuts),
              "combine": combine}

    def producer(up: FrameStream, chunk_size: int) -> Iterator[Chunk]:
        device = host.torch_device()
        dtype = sam2_dtype(device)
        net, processor = load_sam2(str(folder), device, dtype)
        tracker = Sam2Tracker(net, processor, plist, up.info.height, up.info.width, device, dtype)
        cuts = set(scenes.scene_cuts(up)) if reseed_at_cuts else set()
        progress = host.Progress(up.info.frame_count, "SAM2 video mask")
        try:
            for chunk in up.chunks(chunk_size):
                images = [f.permute(2, 0, 1) for f in chunk.frames]
                pixels = processor(images=images, return_tensors="pt", do_rescale=False).pixel_values
                masks = torch.empty(chunk.frames.shape[:3])
                for i in range(len(chunk)):
                    idx = chunk.start + i
                    if idx in cuts and tracker.latest:
                        tracker.reseed(idx)
                    masks[i] = tracker.step(idx, pixels[i])
                    progress.update(1)
                if combine == "union":
                    masks = torch.maximum(masks, chunk.mask.float())
                elif combine == "intersect":
                    masks = torch.minimum(masks, chunk.mask.float())
                yield chunk.with_(mask=masks)
        finally:
            progress.close()

    return stream.derive("sam2_mask", params, producer, info.with_(has_mask=True), frames_unchanged=True)


def preview_mask(frame: Any, prompts: list, model: str) -> torch.Tensor:
    """A soft mask ``[H, W]`` for one frame (``[H, W, 3]`` 0..1) from that frame's prompt entries;
    for the editor's mask preview. Errors in prompts or the model choice are ``ValueError``
    (a missing file stays ``FileNotFoundError``)."""
    import numpy as np

    from ..stream import from_tensor

    f = torch.as_tensor(np.asarray(frame, dtype=np.float32))
    if f.ndim != 3 or f.shape[-1] != 3:
        raise ValueError(f"preview frame must be [H, W, 3], got {tuple(f.shape)}")
    rebased = [dict(p, frame=0) for p in prompts]
    try:
        return sam2_mask(from_tensor(f[None]), model, rebased).read().mask[0]
    except registry.ModelError as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise ValueError(str(exc)) from exc
