"""Interpolate (RIFE): more frames per second on the frame stream, same duration and audio."""
from __future__ import annotations

from ._common import FRAMES, category, model_input, stream_inputs

SCALES = ["auto", "1.0", "0.5", "0.25", "2.0"]


class RemasterInterpolate:
    DESCRIPTION = (
        "Raise the frame rate with RIFE (Practical-RIFE 4.x weights from the 'rife' models folder; the "
        "version is recognised from the file). Multiply the rate (x2, x3, x4) or reach a target rate "
        "such as 24 -> 60 fps; the duration and audio stay exactly as they were and source frames pass "
        "through untouched. Nothing is interpolated across scene cuts (the frame is held or "
        "cross-faded), repeated frames can be removed first, and chunk borders are seamless."
    )
    CATEGORY = category("Motion")
    FUNCTION = "run"
    RETURN_TYPES = (FRAMES, "FLOAT")
    RETURN_NAMES = ("frames", "fps")

    @classmethod
    def INPUT_TYPES(cls):
        from remaster.stages.interpolate import DEFAULT_MODEL

        model = model_input("rife", "RIFE weights (Practical-RIFE 4.6, 4.7, 4.9, 4.22, 4.25...). "
                                    "4.25 is the best all-rounder; 4.6 is the lightest.")
        names = model[0]
        if DEFAULT_MODEL in names:
            model = (names, dict(model[1], default=DEFAULT_MODEL))
        return stream_inputs({
            "model": model,
            "mode": (["multiply", "fps"], {
                "tooltip": "multiply: frame rate x multiplier. fps: reach target_fps (any rate at or above the source's)."}),
            "multiplier": ("INT", {"default": 2, "min": 1, "max": 16,
                                   "tooltip": "Frame rate multiplier when mode is multiply (2 = twice as many frames)."}),
            "target_fps": ("FLOAT", {"default": 60.0, "min": 1.0, "max": 1000.0, "step": 0.001,
                                     "tooltip": "Output frame rate when mode is fps (59.94 and 29.97 become exact NTSC rates)."}),
            "scene_cuts": (["repeat", "blend"], {
                "tooltip": "What fills the gap at a scene cut: repeat holds the last frame of the old shot "
                           "(the cut stays sharp), blend cross-fades. Never interpolated."}),
            "detect_cuts": ("BOOLEAN", {"default": True,
                                        "tooltip": "Find scene cuts when the stream has none attached (Scene Cuts node). "
                                                   "Found once per chain on the decoded video (no stage upstream runs again)."}),
            "remove_duplicates": ("BOOLEAN", {"default": False,
                                              "tooltip": "Drop repeated frames (old recordings, screen captures, 25->30 "
                                                         "conversions) and interpolate their time slots instead, removing stutter."}),
            "duplicate_threshold": ("FLOAT", {"default": 0.015, "min": 0.0, "max": 0.2, "step": 0.001,
                                              "tooltip": "How similar a frame must be to the previous one to count as a "
                                                         "repeat (99th percentile of the difference, 0..1). Raise it for noisy sources."}),
            "scale": (SCALES, {
                "tooltip": "Resolution the motion is estimated at: auto uses 0.5 above 2.6K (4K) and 0.25 above 5K. "
                           "Lower is faster and copes with larger motion; 2.0 for small, detailed video."}),
        }, optional={
            "precision": (["auto", "fp32", "fp16", "bf16"], {
                "tooltip": "auto: fp16 on NVIDIA GPUs, bf16 on CPUs with fast bf16, else fp32."}),
            "download_missing": ("BOOLEAN", {"default": False,
                                             "tooltip": "Download the chosen model from the URLs in models.json if it is not installed."}),
        })

    def run(self, frames, model, mode="multiply", multiplier=2, target_fps=60.0, scene_cuts="repeat",
            detect_cuts=True, remove_duplicates=False, duplicate_threshold=0.015, scale="auto",
            precision="auto", download_missing=False):
        from remaster.stages.interpolate import interpolate

        out = interpolate(frames, model=model, mode=mode, multiplier=multiplier, target_fps=target_fps,
                          cut_mode=scene_cuts, detect_cuts=detect_cuts, remove_duplicates=remove_duplicates,
                          dedup_threshold=duplicate_threshold, scale=scale if scale == "auto" else float(scale),
                          precision=precision, download_missing=download_missing)
        return (out, float(out.info.fps))


NODE_CLASS_MAPPINGS = {"RemasterInterpolate": RemasterInterpolate}
NODE_DISPLAY_NAME_MAPPINGS = {"RemasterInterpolate": "Interpolate (Remaster)"}
