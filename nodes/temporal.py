"""Temporal Consistency (Remaster) and Train Restorer (Remaster)."""
from __future__ import annotations

from remaster.stages import flow as flowlib
from remaster.stages import temporal_consistency as stage

from ._common import FRAMES, StreamStage, category, frames_input


class RemasterTemporalConsistency(StreamStage):
    DESCRIPTION = (
        "Makes any per-frame result steady over time (face restore, upscale, colour, a third-party "
        "IMAGE node): the previous output is warped along the optical flow of the ORIGINAL frames "
        "and blended into the current output where the warp is trustworthy (forward-backward flow "
        "check, photometric check on the original, mis-warp guard, scene-cut resets); new or "
        "occluded content keeps the current frame's detail. Flow-guided recursive warping and "
        "blending (the warping-and-blending family of blind video temporal consistency). One pass, "
        "one frame of state. The processed stream may be larger than the original (after an upscaler)."
    )
    CATEGORY = category("Enhance")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": frames_input("The processed (flickering) stream, e.g. after Upscale or Face Restore."),
                "original": (FRAMES, {"tooltip": "The stream the processed frames were made from (same frame count); "
                                                 "motion is measured on it."}),
                "strength": ("FLOAT", {"default": 0.85, "min": 0.0, "max": 0.98, "step": 0.01,
                                       "tooltip": "How much of the warped previous output is kept where the warp is "
                                                  "trusted. 0 = off; 0.85 remembers about 7 frames along the motion."}),
            },
            "optional": {
                "flow_quality": (list(flowlib.METHODS), {"default": "dis_medium",
                                                         "tooltip": "Optical flow on the original: DIS presets (fast) or Farneback."}),
                "flow_max_side": ("INT", {"default": 480, "min": 64, "max": 4096, "step": 16,
                                          "tooltip": "Flow is computed on a copy of the original this large (long side)."}),
                "photo_tolerance": ("FLOAT", {"default": 0.06, "min": 0.005, "max": 1.0, "step": 0.005,
                                              "tooltip": "Grey-level difference (0..1) of the warped previous original above "
                                                         "which a pixel starts to count as occluded."}),
                "guard": ("FLOAT", {"default": 0.2, "min": 0.01, "max": 1.0, "step": 0.01,
                                    "tooltip": "Difference between the warped previous output and the current one above "
                                               "which it is taken as a mis-warp rather than flicker (fades out to twice this)."}),
                "reset_on_cuts": ("BOOLEAN", {"default": True,
                                              "tooltip": "Start over at scene cuts (attached by a Scene Cuts node, else detected)."}),
            },
        }

    def run(self, frames, original, strength=0.85, flow_quality="dis_medium", flow_max_side=480,
            photo_tolerance=0.06, guard=0.2, reset_on_cuts=True):
        return (stage.temporal_consistency(frames, original, strength=strength, flow_quality=flow_quality,
                                           flow_max_side=flow_max_side, photo_tolerance=photo_tolerance,
                                           guard=guard, reset_on_cuts=reset_on_cuts),)


NODE_CLASS_MAPPINGS = {"RemasterTemporalConsistency": RemasterTemporalConsistency}
NODE_DISPLAY_NAME_MAPPINGS = {"RemasterTemporalConsistency": "Temporal Consistency (Remaster)"}
