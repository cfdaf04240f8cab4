"""Person masks on the frame stream: video matting (RVM), portrait matting (MODNet), quality
matting (BiRefNet), SAM2 video masks from prompts, and mask tools. Thin nodes over ``remaster.stages.matting``,
``remaster.stages.masks`` and ``remaster.stages.mask_tools``; the mask travels in the stream."""
from __future__ import annotations

from remaster.stages import mask_tools, masks, matting

from ._common import FRAMES, StreamStage, category, model_input, stream_inputs

GROUP = category("Masks")


class RemasterVideoMatting(StreamStage):
    DESCRIPTION = (
        "Cut the person out of every frame with RobustVideoMatting, a recurrent network that remembers "
        "the previous frames, so the matte is steady and hair and edges stay soft. The alpha becomes the "
        "stream's mask (frames are unchanged); the memory is reset at scene cuts."
    )
    CATEGORY = GROUP

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "model": model_input("matting", "RobustVideoMatting weights (matting folder): mobilenetv3 is fast, resnet50 a little finer.", "video_matting"),
            "downsample_ratio": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                          "tooltip": "Size at which the network looks at the frame (the edges are refined at full size). "
                                                     "0 = automatic (longer side ~640 px). Lower for close-ups, higher for small people in wide shots."}),
            "reset_at_cuts": ("BOOLEAN", {"default": True, "tooltip": "Forget the previous shot at scene cuts (detected if none are attached)."}),
            "stabilize": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 0.95, "step": 0.05,
                                    "tooltip": "Temporal smoothing of the matte (as Mask Temporal Smooth): steadies the "
                                               "fringe at still edges without trailing moving ones. 0 = raw network output."}),
        })

    def run(self, frames, model, downsample_ratio=0.0, reset_at_cuts=True, stabilize=0.8):
        out = matting.rvm_matte(frames, model, downsample_ratio=downsample_ratio, reset_at_cuts=reset_at_cuts)
        if stabilize > 0:
            out = mask_tools.smooth_stream(out, strength=stabilize, reset_at_cuts=reset_at_cuts)
        return (out,)


class RemasterPortraitMatting(StreamStage):
    DESCRIPTION = (
        "Portrait matte with MODNet, frame by frame: fast, good for head-and-shoulders shots. The alpha "
        "becomes the stream's mask. Frames of any aspect ratio are scaled to the reference size (sides "
        "multiples of 32) and the matte scaled back. Add Mask Temporal Smooth after it against flicker."
    )
    CATEGORY = GROUP

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "model": model_input("matting", "MODNet weights (matting folder): photographic for camera footage, webcam for webcam-like video.", "portrait_matting"),
            "ref_size": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 32,
                                 "tooltip": "Shorter side the network works at (MODNet was trained at 512)."}),
        })

    def run(self, frames, model, ref_size=512):
        return (matting.modnet_matte(frames, model, ref_size=ref_size),)


class RemasterQualityMatting(StreamStage):
    DESCRIPTION = (
        "High-quality cut-out with BiRefNet, frame by frame: sharp, detailed edges on any foreground "
        "(people, objects). The alpha becomes the stream's mask; frames are unchanged. A motion-gated "
        "running average steadies the matte where the picture is still and follows it at once where "
        "it moves (reset at scene cuts). Slow: a large transformer at 1024 px (lite is cheaper)."
    )
    CATEGORY = GROUP

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "model": model_input("matting", "BiRefNet weights (matting folder): general for any subject, portrait for "
                                            "people, lite (Swin-T) for speed.", "image_matting"),
            "resolution": ("INT", {"default": 1024, "min": 128, "max": 2048, "step": 32,
                                   "tooltip": "Square size the network sees (the frame is squeezed to it and the matte "
                                              "scaled back). BiRefNet was trained at 1024; 512 is ~4x faster, coarser."}),
            "stabilize": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 0.95, "step": 0.05,
                                    "tooltip": "Temporal steadying of the matte where the picture does not move (0 = raw "
                                               "per-frame output). Moving edges always take the new matte."}),
            "reset_at_cuts": ("BOOLEAN", {"default": True, "tooltip": "Start the steadying afresh at scene cuts (detected if none are attached)."}),
        })

    def run(self, frames, model, resolution=1024, stabilize=0.7, reset_at_cuts=True):
        return (matting.birefnet_matte(frames, model, resolution=resolution, stabilise=stabilize,
                                       reset_at_cuts=reset_at_cuts),)


class RemasterSAM2VideoMask(StreamStage):
    DESCRIPTION = (
        "Mask any object (a person, a pet, a car) with SAM2: click points or draw a box on one frame and "
        "SAM2 follows it through the video. Prompts come from the widgets (one object) and/or from JSON "
        "(any number of objects and frames). The soft mask (probability) becomes the stream's mask. "
        "Memory stays bounded for videos of any length."
    )
    CATEGORY = GROUP

    @classmethod
    def INPUT_TYPES(cls):
        names = [n for n in model_input("sam2", "")[0] if not n.endswith((".json", ".txt"))] or ["(no models found)"]
        return stream_inputs({
            "model": (names, {"tooltip": "SAM2.1 Hugging Face folder in models/sam2 (config.json + model.safetensors). tiny is fastest, large best."}),
            "frame": ("INT", {"default": 0, "min": 0, "max": 10**8, "tooltip": "Frame the widget prompt below refers to."}),
            "positive_points": ("STRING", {"default": "", "tooltip": "Points on the object, in pixels: 'x,y; x,y'."}),
            "negative_points": ("STRING", {"default": "", "tooltip": "Points NOT on the object: 'x,y; x,y'."}),
            "box": ("STRING", {"default": "", "tooltip": "Optional box around the object: 'x0,y0,x1,y1' in pixels."}),
            "prompts_json": ("STRING", {"default": "", "multiline": True, "remaster_editor": "sam2_prompts",
                                        "tooltip": 'More prompts as JSON: [{"frame": 0, "points": [[x, y, 1], [x, y, 0]], '
                                                   '"boxes": [[x0, y0, x1, y1]], "obj_id": 1}, ...]. Label 1 = object, 0 = not. '
                                                   "Several obj_id values give several objects (their union is the mask)."}),
            "reseed_at_cuts": ("BOOLEAN", {"default": False,
                                           "tooltip": "At scene cuts, forget and re-seed each object with its latest prompt "
                                                      "(for edits that cut between similar framings)."}),
            "combine": (["replace", "union", "intersect"], {"tooltip": "What to do with a mask the stream already has."}),
        })

    def run(self, frames, model, frame=0, positive_points="", negative_points="", box="", prompts_json="",
            reseed_at_cuts=False, combine="replace"):
        prompts = widget_prompt(frame, positive_points, negative_points, box)
        if prompts_json.strip():
            extra = masks.parse_prompts(prompts_json, frames.info.width, frames.info.height, frames.info.frame_count)
            prompts += [p.as_json() for p in extra]
        if not prompts:
            raise ValueError("SAM2 Video Mask: no prompt given. Enter positive points or a box (pixels) for "
                             "the chosen frame, or prompts as JSON.")
        return (masks.sam2_mask(frames, model, prompts, reseed_at_cuts=reseed_at_cuts, combine=combine),)


def _numbers(text: str, what: str, per: int) -> list[list[float]]:
    out = []
    for part in [p for p in text.replace("\n", ";").split(";") if p.strip()]:
        try:
            vals = [float(v) for v in part.replace(" ", ",").split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"SAM2 Video Mask: '{part.strip()}' in {what} is not numbers") from None
        if len(vals) != per:
            raise ValueError(f"SAM2 Video Mask: {what} needs {per} numbers per entry, got '{part.strip()}'")
        out.append(vals)
    return out


def widget_prompt(frame: int, positive: str, negative: str, box: str) -> list[dict]:
    points = [p + [1] for p in _numbers(positive, "positive_points", 2)]
    points += [p + [0] for p in _numbers(negative, "negative_points", 2)]
    boxes = _numbers(box, "box", 4)
    if not points and not boxes:
        return []
    return [{"frame": int(frame), "points": points, "boxes": boxes, "obj_id": 1}]


class RemasterMaskSmooth(StreamStage):
    DESCRIPTION = (
        "Steady a flickering mask over time without letting it trail behind motion: small changes are "
        "averaged, large ones (a moving edge) are taken at once. A still mask passes unchanged."
    )
    CATEGORY = GROUP

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "strength": ("FLOAT", {"default": 0.6, "min": 0.0, "max": 0.95, "step": 0.05,
                                   "tooltip": "How much small changes are averaged away (0 = off)."}),
            "tolerance": ("FLOAT", {"default": 0.3, "min": 0.01, "max": 1.0, "step": 0.01,
                                    "tooltip": "A mask change at least this big is real motion and is followed at once."}),
            "reset_at_cuts": ("BOOLEAN", {"default": True, "tooltip": "Start fresh at scene cuts."}),
        }, frames="A stream with a mask.")

    def run(self, frames, strength=0.6, tolerance=0.3, reset_at_cuts=True):
        return (mask_tools.smooth_stream(frames, strength, tolerance, reset_at_cuts=reset_at_cuts),)


class RemasterMaskAdjust(StreamStage):
    DESCRIPTION = (
        "Shape the stream's mask: threshold (hard or a soft ramp), grow or shrink by pixels, feather "
        "the edge, invert. Applied in that order; each step at its default does nothing."
    )
    CATEGORY = GROUP

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "threshold_low": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                        "tooltip": "0 = no threshold. Alone: hard cut at this value. With threshold_high: soft ramp from low (0) to high (1)."}),
            "threshold_high": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": "Upper end of a soft ramp; 0 (or <= low) makes the threshold hard."}),
            "grow": ("INT", {"default": 0, "min": -256, "max": 256, "tooltip": "Pixels to grow (positive) or shrink (negative) the mask."}),
            "feather": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 256.0, "step": 0.5, "tooltip": "Edge softening radius in pixels."}),
            "invert": ("BOOLEAN", {"default": False, "tooltip": "Swap foreground and background."}),
        }, frames="A stream with a mask.")

    def run(self, frames, threshold_low=0.0, threshold_high=0.0, grow=0, feather=0.0, invert=False):
        s = frames
        if threshold_low > 0:
            s = mask_tools.threshold_stream(s, threshold_low, threshold_high)
        if grow:
            s = mask_tools.grow_stream(s, grow)
        if feather > 0:
            s = mask_tools.feather_stream(s, feather)
        if invert:
            s = mask_tools.invert_stream(s)
        if s is frames:
            mask_tools.require_mask(frames, "Mask Adjust")
        return (s,)


class RemasterMaskRefine(StreamStage):
    DESCRIPTION = (
        "Snap the mask's edges to the picture with a guided filter: soft, blocky or slightly misplaced "
        "edges follow the real outline (hair, shoulders) of the frame."
    )
    CATEGORY = GROUP

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "radius": ("INT", {"default": 8, "min": 1, "max": 128, "tooltip": "Window radius in pixels: how far an edge may move."}),
            "eps": ("FLOAT", {"default": 0.001, "min": 1e-6, "max": 1.0, "step": 0.0001,
                              "tooltip": "Smaller follows image edges more closely; larger keeps the mask smoother."}),
        }, frames="A stream with a mask.")

    def run(self, frames, radius=8, eps=0.001):
        return (mask_tools.refine_stream(frames, radius, eps),)


class RemasterMaskCombine(StreamStage):
    DESCRIPTION = "Combine the masks of two streams of the same size and length; the frames of the first are kept."
    CATEGORY = GROUP

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "other": (FRAMES, {"tooltip": "Second stream; only its mask is used."}),
            "mode": (list(mask_tools.COMBINE_MODES), {"tooltip": "union (either), intersect (both), subtract (first minus second), add, multiply, difference."}),
        }, frames="First stream (its frames are kept).")

    def run(self, frames, other, mode="union"):
        return (mask_tools.combine_streams(frames, other, mode),)


NODE_CLASS_MAPPINGS = {
    "RemasterVideoMatting": RemasterVideoMatting,
    "RemasterPortraitMatting": RemasterPortraitMatting,
    "RemasterQualityMatting": RemasterQualityMatting,
    "RemasterSAM2VideoMask": RemasterSAM2VideoMask,
    "RemasterMaskSmooth": RemasterMaskSmooth,
    "RemasterMaskAdjust": RemasterMaskAdjust,
    "RemasterMaskRefine": RemasterMaskRefine,
    "RemasterMaskCombine": RemasterMaskCombine,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "RemasterVideoMatting": "Video Matting RVM (Remaster)",
    "RemasterPortraitMatting": "Portrait Matting MODNet (Remaster)",
    "RemasterQualityMatting": "Quality Matting BiRefNet (Remaster)",
    "RemasterSAM2VideoMask": "SAM2 Video Mask (Remaster)",
    "RemasterMaskSmooth": "Mask Temporal Smooth (Remaster)",
    "RemasterMaskAdjust": "Mask Adjust (Remaster)",
    "RemasterMaskRefine": "Mask Refine Edges (Remaster)",
    "RemasterMaskCombine": "Combine Masks (Remaster)",
}
