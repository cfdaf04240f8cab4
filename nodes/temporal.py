"""Temporal Consistency (Remaster) and Train Restorer (Remaster)."""
from __future__ import annotations

from remaster.analysis import flow as flowlib
from remaster.stages import temporal_consistency as stage

from ._common import FRAMES, StreamStage, category, frames_input, stream_inputs


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
        return stream_inputs({
            "original": (FRAMES, {"tooltip": "The stream the processed frames were made from (same frame count); "
                                             "motion is measured on it."}),
            "strength": ("FLOAT", {"default": 0.85, "min": 0.0, "max": 0.98, "step": 0.01,
                                   "tooltip": "How much of the warped previous output is kept where the warp is "
                                              "trusted. 0 = off; 0.85 remembers about 7 frames along the motion."}),
        }, optional={
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
        }, frames="The processed (flickering) stream, e.g. after Upscale or Face Restore.")

    def run(self, frames, original, strength=0.85, flow_quality="dis_medium", flow_max_side=480,
            photo_tolerance=0.06, guard=0.2, reset_on_cuts=True):
        return (stage.temporal_consistency(frames, original, strength=strength, flow_quality=flow_quality,
                                           flow_max_side=flow_max_side, photo_tolerance=photo_tolerance,
                                           guard=guard, reset_on_cuts=reset_on_cuts),)


NODE_CLASS_MAPPINGS = {"RemasterTemporalConsistency": RemasterTemporalConsistency}
NODE_DISPLAY_NAME_MAPPINGS = {"RemasterTemporalConsistency": "Temporal Consistency (Remaster)"}


class RemasterTrainRestorer:
    DESCRIPTION = (
        "Fine-tunes a compact Real-ESRGAN (realesr-general-x4v3, made x1/x2/x4) for your material: "
        "short sequences of your clean frames are damaged by the film damage simulator (or the simple "
        "blur/noise/JPEG degradation), or you connect damaged frames and their clean counterparts. "
        "With 'temporal' on, a module fuses the previous frame's features warped by optical flow. "
        "Writes <name>.safetensors to upscale_models (pick it in Upscale), a training log and a loss "
        "curve under output/train/<name>; a run of the same name resumes. Blocks until done: a few "
        "minutes on a CPU for a small run, the GPU with autocast when there is one."
    )
    CATEGORY = category("Train")
    FUNCTION = "run"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "IMAGE")
    RETURN_NAMES = ("model_name", "loss_curve")

    @classmethod
    def INPUT_TYPES(cls):
        from ._common import model_input

        base = model_input("upscale_models", "Starting weights: a compact Real-ESRGAN such as realesr-general-x4v3.")
        return {
            "required": {
                "clean": frames_input("Clean frames of your material (training targets)."),
                "name": ("STRING", {"default": "my_restorer", "tooltip": "Checkpoint name: upscale_models/<name>.safetensors"}),
                "base": base,
                "scale": ([1, 2, 4], {"default": 1, "tooltip": "Output scale of the trained model (x1 = restore at the same size)."}),
                "temporal": ("BOOLEAN", {"default": True, "tooltip": "Add the temporal module (flow-warped previous features)."}),
                "steps": ("INT", {"default": 300, "min": 1, "max": 1000000,
                                   "tooltip": "Optimiser steps in total (a run of the same name resumes up to this)."}),
                "degradation": ("STRING", {"default": "simple", "tooltip": "'simple' or 'film:<preset>' (film damage simulator); "
                                                                          "ignored when damaged frames are connected."}),
            },
            "optional": {
                "damaged": frames_input("Damaged frames matching 'clean' frame for frame (same count; 1/scale its size)."),
                "patch": ("INT", {"default": 64, "min": 16, "max": 512, "step": 8, "tooltip": "Input crop size."}),
                "max_frames": ("INT", {"default": 90, "min": 3, "max": 2000, "tooltip": "Frames read from the streams."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                                 "tooltip": "Seed for the crops and the simulated damage."}),
            },
        }

    def run(self, clean, name, base, scale, temporal, steps, degradation, damaged=None, patch=64, max_frames=90, seed=0):
        import torch

        from remaster.train import loop

        c = clean.read(0, max_frames, max_frames=max_frames).frames
        cfg = loop.TrainConfig(name=name, base=base, scale=int(scale), temporal=bool(temporal), steps=int(steps),
                               degradation=degradation, patch=int(patch), max_frames=int(max_frames), seed=int(seed))
        if damaged is not None:
            cfg.pairs = [(damaged.read(0, max_frames, max_frames=max_frames).frames, c)]
        else:
            cfg.clips = [c]
        loop.train(cfg)
        import cv2

        png = cv2.imread(str(loop.run_dir(name) / "loss.png"))[..., ::-1].copy()
        return (f"{name}.safetensors", torch.from_numpy(png).float().div(255)[None])


NODE_CLASS_MAPPINGS["RemasterTrainRestorer"] = RemasterTrainRestorer
NODE_DISPLAY_NAME_MAPPINGS["RemasterTrainRestorer"] = "Train Restorer (Remaster)"
