"""Video inpainting by keyframes: Keyframes → Inpaint Keyframes → Select Candidates →
Propagate Edit → Comparison, plus a rectangle mask source. Thin nodes over
``remaster.stages.inpaint.keyframes``, ``remaster.stages.inpaint`` and ``remaster.stages.package``."""
from __future__ import annotations

from remaster import webui
from remaster import host
from remaster.analysis import flow as flowlib
from remaster.stages import inpaint as inp
from remaster.stages.inpaint import keyframes as kf
from remaster.stages import package

from ._common import FRAMES, StreamStage, category, frames_input, stream_inputs

KEYFRAMES = "REMASTER_KEYFRAMES"  # remaster.stages.inpaint.keyframes.KeyframePlan
CANDIDATES = "REMASTER_CANDIDATES"  # remaster.stages.inpaint.InpaintCandidates
SELECTION = "REMASTER_INPAINT_SELECTION"  # remaster.stages.inpaint.InpaintSelection

GROUP = category("Inpaint")


class RemasterRectangleMask(StreamStage):
    DESCRIPTION = (
        "Give the stream a rectangular mask (the same on every frame), in fractions of the frame so it "
        "fits any resolution. A simple mask source for inpainting when no segmentation is needed."
    )
    CATEGORY = GROUP
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        def frac(default, tip):
            return ("FLOAT", {"default": default, "min": 0.0, "max": 1.0, "step": 0.005, "tooltip": tip})

        return stream_inputs({
            "x": frac(0.25, "Left edge, as a fraction of the frame width."),
            "y": frac(0.25, "Top edge, as a fraction of the frame height."),
            "width": frac(0.5, "Width, as a fraction of the frame width."),
            "height": frac(0.5, "Height, as a fraction of the frame height."),
            "combine": (["replace", "add", "intersect"], {
                "tooltip": "replace: the rectangle is the mask. add/intersect: combine with the stream's "
                           "existing mask (union / intersection)."}),
        })

    def apply(self, frames, x=0.25, y=0.25, width=0.5, height=0.5, combine="replace"):
        return (inp.rectangle_mask(frames, x, y, width, height, combine),)


class RemasterKeyframes:
    DESCRIPTION = (
        "Choose keyframes for inpainting where the MASKED region changes (colour difference and optical-flow "
        "motion inside the mask, each frame compared with the most recent keyframe). Changes outside the mask "
        "never create keyframes; scene cuts always start a group. Outputs the plan and the keyframes as a "
        "stream for previewing."
    )
    CATEGORY = GROUP
    FUNCTION = "analyse"
    RETURN_TYPES = (KEYFRAMES, FRAMES, "STRING", "INT")
    RETURN_NAMES = ("keyframes", "keyframe_frames", "indices", "count")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "movement": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                   "tooltip": "Movement in the masked area: higher = more keyframes, smaller groups "
                                              "(lower difference threshold)."}),
            "determinism": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                      "tooltip": "How deterministic the model and prompt are: higher = more keyframes "
                                                 "are affordable (edits agree), so smaller groups."}),
            "min_group": ("INT", {"default": 4, "min": 1, "max": 1000,
                                  "tooltip": "Fewest frames in a group (scene cuts still start a group)."}),
            "max_group": ("INT", {"default": 48, "min": 1, "max": 10000,
                                  "tooltip": "Most frames in a group: a keyframe is forced after this many."}),
            "analysis_side": ("INT", {"default": 256, "min": 32, "max": 2048, "step": 16,
                                      "tooltip": "Longest side of the downscaled copy the analysis runs on."}),
        }, frames="Frames with the inpainting region as their mask.")

    def analyse(self, frames, movement=0.5, determinism=0.5, min_group=4, max_group=48, analysis_side=256):
        plan = kf.analyse_keyframes(frames, movement, determinism, min_group, max_group, analysis_side)
        return (plan, kf.keyframe_stream(frames, plan), ", ".join(str(k) for k in plan.keyframes),
                len(plan.keyframes))


class RemasterInpaintKeyframes:
    DESCRIPTION = (
        "Inpaint each keyframe inside its mask: a crop around the mask (with context) is resized to the model's "
        "resolution and N candidates are made at the denoise strength. Uses ComfyUI's MODEL/CLIP/VAE when they "
        "are connected (any SD1.5/SDXL checkpoint, inpainting or not), else a diffusers inpainting folder from "
        "models/diffusers. The preview shows the candidates, keyframe by keyframe."
    )
    CATEGORY = GROUP
    FUNCTION = "inpaint"
    RETURN_TYPES = (CANDIDATES, "IMAGE")
    RETURN_NAMES = ("candidates", "preview")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "keyframes": (KEYFRAMES, {"tooltip": "The plan from the Keyframes node."}),
            "diffusers_model": (inp.diffusers_model_choices() or ["(no diffusers models found)"], {
                "tooltip": "A diffusers inpainting model folder in models/diffusers (used when MODEL/CLIP/VAE "
                           "are not connected)."}),
            "prompt": ("STRING", {"default": "", "multiline": True, "tooltip": "What the masked region should show."}),
            "negative": ("STRING", {"default": "", "multiline": True, "tooltip": "What to avoid."}),
            "candidates": ("INT", {"default": 4, "min": 1, "max": 16,
                                   "tooltip": "Candidates per keyframe to choose from."}),
            "strength": ("FLOAT", {"default": 0.3, "min": 0.01, "max": 1.0, "step": 0.01,
                                   "tooltip": "Denoise strength: 0.3 keeps the structure and changes details; "
                                              "1.0 repaints the region."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1, "control_after_generate": False,
                             "tooltip": "Seed, the same for every keyframe so edits agree."}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 200, "tooltip": "Sampling steps (before strength)."}),
            "guidance": ("FLOAT", {"default": 7.5, "min": 0.0, "max": 30.0, "step": 0.1,
                                   "tooltip": "Classifier-free guidance scale (CFG)."}),
            "resolution": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 8,
                                   "tooltip": "Long side the crop is resized to for the model (512 for SD1.5, 1024 for SDXL)."}),
            "context": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 2.0, "step": 0.05,
                                  "tooltip": "Context around the mask in the crop, as a fraction of the mask's size."}),
            "feather": ("INT", {"default": 8, "min": 0, "max": 128,
                                "tooltip": "Softness of the composite edge in pixels (the mask also grows by 4 px)."}),
        }, optional={
            "model": ("MODEL", {"tooltip": "ComfyUI model (from Load Checkpoint); with clip and vae it replaces the diffusers model."}),
            "clip": ("CLIP", {"tooltip": "ComfyUI CLIP for the prompts."}),
            "vae": ("VAE", {"tooltip": "ComfyUI VAE."}),
            "sampler": (host.comfy_sampler_choices()[0], {
                "tooltip": "ComfyUI sampler (ComfyUI back-end only)."}),
            "scheduler": (host.comfy_sampler_choices()[1], {
                "tooltip": "ComfyUI scheduler (ComfyUI back-end only)."}),
        }, frames="The same frames (with mask) that went into Keyframes.")

    @classmethod
    def VALIDATE_INPUTS(cls, diffusers_model):
        # checked when it is used: a saved workflow that samples with ComfyUI's MODEL/CLIP/VAE must
        # not fail validation because its diffusers folder is missing on this machine
        return True

    def inpaint(self, frames, keyframes, diffusers_model, prompt="", negative="", candidates=4, strength=0.3, seed=0,
                steps=20, guidance=7.5, resolution=512, context=0.25, feather=8, model=None, clip=None, vae=None,
                sampler="euler", scheduler="normal"):
        if model is not None or clip is not None or vae is not None:
            if model is None or clip is None or vae is None:
                raise ValueError("Inpaint Keyframes: connect all three of model, clip and vae (or none of them to use "
                                 "the diffusers model)")
            backend = inp.ComfyInpaint(model, clip, vae, sampler, scheduler)
        else:
            backend = inp.DiffusersInpaint(diffusers_model)
        cands = inp.inpaint_keyframes(frames, keyframes, backend, prompt, negative, candidates, strength, seed, steps,
                                      guidance, resolution, context, feather_px=feather)
        return (cands, inp.candidate_sheet(cands))


class RemasterSelectCandidates:
    DESCRIPTION = (
        "Choose one candidate per keyframe: automatically (best agreement with the unmasked surroundings and "
        "with the previous keyframe's pick), or by hand with a list of picks in keyframe order, e.g. "
        "'auto, 2, drop' ('drop' keeps that group original)."
    )
    CATEGORY = GROUP
    FUNCTION = "select"
    RETURN_TYPES = (SELECTION, "STRING")
    RETURN_NAMES = ("selection", "picks")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "candidates": (CANDIDATES, {"tooltip": "From Inpaint Keyframes."}),
                "picks": ("STRING", {"default": "", "tooltip": "Comma-separated, in keyframe order: a candidate number "
                                                             "(0-based), 'drop' or 'auto'. Empty = all automatic."}),
                "neighbour_weight": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 10.0, "step": 0.1,
                                               "tooltip": "How much agreeing with the previous keyframe's pick counts "
                                                          "against fitting the surroundings."}),
            }
        }

    def select(self, candidates, picks="", neighbour_weight=0.5):
        sel = inp.select_candidates(candidates, picks, neighbour_weight)
        text = ", ".join("drop" if p is None else str(p) for p in sel.picks)
        return {"ui": {"remaster_candidates": webui.candidates_ui(sel)}, "result": (sel, text)}


class RemasterPropagateEdit(StreamStage):
    DESCRIPTION = (
        "Carry each keyframe's chosen edit through its group following the motion (optical flow from each frame "
        "to its keyframe), composite it only inside the feathered mask and fade between neighbouring groups. "
        "Pixels outside the mask are the source's, unchanged. Groups whose masked region jumps compared with "
        "the source can be dropped (kept original)."
    )
    CATEGORY = GROUP
    FUNCTION = "propagate"

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "selection": (SELECTION, {"tooltip": "From Select Candidates."}),
            "mode": (["delta", "replace"], {
                "tooltip": "delta: add the keyframe's change to each frame (keeps each frame's own detail, "
                           "e.g. a talking mouth). replace: paste the warped keyframe edit itself."}),
            "blend_frames": ("INT", {"default": 4, "min": 0, "max": 100,
                                     "tooltip": "Frames before each keyframe that fade into the next group's edit."}),
            "flow": (list(flowlib.METHODS), {"default": "farneback",
                                             "tooltip": "Optical flow from each frame to its keyframe: farneback "
                                                        "follows fast motion best; DIS presets are faster."}),
            "on_jump": (["report", "drop"], {
                "tooltip": "report: only measure jumps (see the comparison report). drop: an extra pass first, "
                           "then groups that jump stay original."}),
            "jump_threshold": ("FLOAT", {"default": 0.03, "min": 0.0, "max": 1.0, "step": 0.005,
                                         "tooltip": "Extra mean change inside the mask (0..1) between frames, beyond "
                                                    "the source's, that counts as a jump."}),
        }, frames="The same frames (with mask) that went into Keyframes.")

    def propagate(self, frames, selection, mode="delta", blend_frames=4, flow="farneback", on_jump="report",
                  jump_threshold=0.03):
        return (inp.propagate(frames, selection, mode, blend_frames, flow, on_jump, jump_threshold),)


class RemasterComparison:
    DESCRIPTION = (
        "Before/after comparison stream (side by side, stacked, or a wipe sweeping across the clip) for Save Video. "
        "With the selection connected, the run report (keyframes, picks, scores, timings, settings, jumps "
        "measured against the source) is written as JSON next to the outputs when the comparison is saved."
    )
    CATEGORY = GROUP
    FUNCTION = "compare"
    RETURN_TYPES = (FRAMES, "STRING")
    RETURN_NAMES = ("frames", "report_path")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "before": frames_input("The source frames."),
                "after": frames_input("The edited frames."),
                "layout": (list(package.LAYOUTS), {"tooltip": "How to show both."}),
                "report_prefix": ("STRING", {"default": "remaster/inpaint_report",
                                             "tooltip": "Report file name (and sub-folder) under the output folder."}),
            },
            "optional": {
                "selection": (SELECTION, {"tooltip": "From Select Candidates; needed for the JSON report."}),
            },
        }

    def compare(self, before, after, layout="side_by_side", report_prefix="remaster/inpaint_report", selection=None):
        path = package.next_report_path(report_prefix) if selection is not None else None
        return (package.comparison(before, after, layout, selection, path), str(path or ""))


NODE_CLASS_MAPPINGS = {
    "RemasterRectangleMask": RemasterRectangleMask,
    "RemasterKeyframes": RemasterKeyframes,
    "RemasterInpaintKeyframes": RemasterInpaintKeyframes,
    "RemasterSelectCandidates": RemasterSelectCandidates,
    "RemasterPropagateEdit": RemasterPropagateEdit,
    "RemasterComparison": RemasterComparison,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RemasterRectangleMask": "Rectangle Mask (Remaster)",
    "RemasterKeyframes": "Keyframes (Remaster)",
    "RemasterInpaintKeyframes": "Inpaint Keyframes (Remaster)",
    "RemasterSelectCandidates": "Select Candidates (Remaster)",
    "RemasterPropagateEdit": "Propagate Edit (Remaster)",
    "RemasterComparison": "Comparison (Remaster)",
}
