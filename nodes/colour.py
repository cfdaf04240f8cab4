"""Colour and light: automatic correction, LUT grading, deflicker, film look. Thin node classes
over ``remaster.stages.colour``, ``.lut``, ``.deflicker`` and ``.film``."""
from __future__ import annotations

from remaster.stages import colour as colour_stage
from remaster.stages import deflicker as deflicker_stage
from remaster.stages import film as film_stage
from remaster.stages import lut as lut_stage

from ._common import FRAMES, StreamStage, category, stream_inputs

_STRENGTH = {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}


class RemasterAutoColour(StreamStage):
    DESCRIPTION = (
        "Automatic light and colour per shot: white balance (grey world, white patch or a picked "
        "neutral region), auto levels by percentiles, exposure/gamma toward a mid-grey target, local "
        "contrast (CLAHE on lightness) and saturation/vibrance that spares skin tones. Statistics are "
        "measured in a first pass and smoothed over time inside each shot (reset at scene cuts), so "
        "the correction never flickers. With a person mask on the stream, the person and the "
        "background can be corrected separately."
    )
    CATEGORY = category("Colour")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "white_balance": (list(colour_stage.WHITE_BALANCE), {
                "default": "white_patch",
                "tooltip": "grey_world: the average of the near-neutral parts of the scene becomes neutral (can mislead on scenes dominated by one colour, e.g. grass). white_patch: the "
                           "brightest unclipped areas become white. region: the patch given by region_* "
                           "becomes neutral grey. off: keep the colour balance."}),
            "wb_strength": ("FLOAT", {"default": 0.8, "min": 0.0, "max": 1.0, "step": 0.01,
                                      "tooltip": "How much of the measured colour cast to remove."}),
            "levels_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                          "tooltip": "Stretch the black and white points measured by percentile to 0 and 1."}),
            "exposure_strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                            "tooltip": "How far the gamma moves the shot's median brightness toward target_grey."}),
            "target_grey": ("FLOAT", {"default": 0.46, "min": 0.1, "max": 0.9, "step": 0.01,
                                      "tooltip": "Display value the median brightness should reach (0.46 is 18 % grey)."}),
            "local_contrast": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                         "tooltip": "Local contrast by CLAHE on lightness (0 = off). Lifts flat, hazy footage."}),
            "saturation": ("FLOAT", {"default": 0.0, "min": -1.0, "max": 1.0, "step": 0.01,
                                     "tooltip": "Saturation change for all colours (-1 = grey)."}),
            "vibrance": ("FLOAT", {"default": 0.15, "min": -1.0, "max": 1.0, "step": 0.01,
                                   "tooltip": "Saturation change that favours dull colours and leaves vivid ones alone."}),
            "skin_protect": ("FLOAT", {"default": 0.7, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "How much saturation/vibrance spare skin-coloured pixels."}),
            "temporal": (list(colour_stage.TEMPORAL), {
                "tooltip": "smooth: statistics smoothed over smoothing_seconds inside each shot (follows slow "
                           "light changes). per_shot: one fixed correction per shot."}),
            "smoothing_seconds": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                            "tooltip": "Width of the temporal smoothing (temporal = smooth)."}),
            "mask_mode": (list(colour_stage.MASK_MODES), {
                "tooltip": "With a person mask on the stream: separate = person and background measured and "
                           "corrected on their own; person_only / background_only = correct just that part."}),
            "strength": ("FLOAT", dict(_STRENGTH, tooltip="Mix of corrected and original (1 = fully corrected).")),
        }, optional={
            "region_x": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                   "tooltip": "Neutral patch left edge, as a fraction of the width (white_balance = region)."}),
            "region_y": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                   "tooltip": "Neutral patch top edge, as a fraction of the height."}),
            "region_w": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                   "tooltip": "Neutral patch width, as a fraction of the width."}),
            "region_h": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.001,
                                   "tooltip": "Neutral patch height, as a fraction of the height."}),
        })

    def run(self, frames, white_balance="white_patch", wb_strength=0.8, levels_strength=1.0, exposure_strength=0.5,
            target_grey=0.46, local_contrast=0.0, saturation=0.0, vibrance=0.15, skin_protect=0.7, temporal="smooth",
            smoothing_seconds=2.0, mask_mode="ignore", strength=1.0, region_x=0.0, region_y=0.0, region_w=0.0,
            region_h=0.0):
        s = colour_stage.AutoColourSettings(
            white_balance=white_balance, wb_strength=wb_strength, region=(region_x, region_y, region_w, region_h),
            levels_strength=levels_strength, exposure_strength=exposure_strength, target_grey=target_grey,
            local_contrast=local_contrast, saturation=saturation, vibrance=vibrance, skin_protect=skin_protect,
            temporal=temporal, smoothing_seconds=smoothing_seconds, mask_mode=mask_mode, strength=strength)
        return (colour_stage.auto_colour(frames, s),)


class RemasterApplyLUT(StreamStage):
    DESCRIPTION = (
        "Grade with a .cube LUT (1D, 3D up to 65 points, or a 1D shaper + 3D) using tetrahedral or "
        "trilinear interpolation, on the GPU when there is one. LUTs come from the 'luts' models "
        "folder plus the looks shipped with Remaster (shipped/...). By default the LUT is fed the "
        "frames' display sRGB/Rec.709 values; choose linear or a log curve for LUTs made for those."
    )
    CATEGORY = category("Colour")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "lut": (lut_stage.lut_choices() or ["(no LUTs found)"], {
                "tooltip": "A .cube file from the 'luts' models folder, or one of Remaster's looks (shipped/...)."}),
            "strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01,
                                   "tooltip": "Mix of graded and original (1 = the LUT as made; above 1 exaggerates)."}),
            "interpolation": (list(lut_stage.INTERPOLATIONS), {
                "tooltip": "tetrahedral: smoother, what grading tools use. trilinear: the classic alternative."}),
            "lut_input": (list(lut_stage.LUT_INPUTS), {
                "tooltip": "What values the LUT expects: display (sRGB/Rec.709 video values, most looks), "
                           "linear (scene-linear), logc3 (ARRI LogC3) or slog3 (Sony S-Log3). The frames "
                           "are converted to that encoding before the lookup."}),
            "lut_output": (list(lut_stage.LUT_OUTPUTS), {
                "tooltip": "same: the LUT returns the encoding it was fed (converted back to display). display: "
                           "the LUT already returns display values (e.g. LogC→Rec.709 conversion LUTs)."}),
        })

    def run(self, frames, lut, strength=1.0, interpolation="tetrahedral", lut_input="display", lut_output="same"):
        return (lut_stage.lut_stream(frames, lut, interpolation, strength, lut_input, lut_output),)


class RemasterDeflicker(StreamStage):
    DESCRIPTION = (
        "Steady brightness and colour over time, for flickering footage or a per-frame enhancer's "
        "output. Each frame gets one gain per channel that brings it onto a smoothed curve of the "
        "shot; fades and slow light changes follow the curve and are kept, single-frame jumps are "
        "removed. Nothing is blended between frames, so motion does not smear. Resets at scene cuts."
    )
    CATEGORY = category("Colour")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "mode": (list(deflicker_stage.MODES), {
                "tooltip": "brightness_and_colour: red, green and blue steadied separately (colour flicker "
                           "too). brightness: one gain per frame."}),
            "window_seconds": ("FLOAT", {"default": 0.5, "min": 0.04, "max": 10.0, "step": 0.01,
                                         "tooltip": "Width of the temporal reference. Longer removes slower flicker "
                                                    "but follows quick real light changes less closely."}),
            "strength": ("FLOAT", dict(_STRENGTH, tooltip="How much of the measured flicker to remove.")),
            "max_gain": ("FLOAT", {"default": 2.0, "min": 1.05, "max": 8.0, "step": 0.05,
                                   "tooltip": "Largest brightening or darkening factor applied to a frame."}),
        })

    def run(self, frames, mode="brightness_and_colour", window_seconds=0.5, strength=1.0, max_gain=2.0):
        return (deflicker_stage.deflicker(frames, window_seconds, mode, strength, max_gain),)


class RemasterFilmLook(StreamStage):
    DESCRIPTION = (
        "Finishing touches: a temporal median (motion-guarded, scene-cut aware) for leftover flicker "
        "and noise, a faint overlay of the original footage, and film grain whose strength follows "
        "brightness. Grain is seeded per frame, so re-renders are identical."
    )
    CATEGORY = category("Colour")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "grain_amount": ("FLOAT", {"default": 0.03, "min": 0.0, "max": 0.5, "step": 0.005,
                                       "tooltip": "Grain strength in the mid-tones (0 = none; 0.02-0.05 is subtle)."}),
            "grain_size": ("FLOAT", {"default": 1.5, "min": 0.5, "max": 8.0, "step": 0.1,
                                     "tooltip": "Grain size in pixels."}),
            "grain_colour": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                       "tooltip": "0 = monochrome grain, 1 = independent grain per colour channel."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**31 - 1,
                             "tooltip": "Grain pattern seed; the same seed gives the same grain on every render."}),
            "median_radius": ("INT", {"default": 0, "min": 0, "max": 3,
                                      "tooltip": "Temporal median over 2r+1 frames (0 = off, 1 = three frames)."}),
            "motion_threshold": ("FLOAT", {"default": 0.04, "min": 0.0, "max": 1.0, "step": 0.005,
                                           "tooltip": "Pixels whose median differs from the frame by more than this are "
                                                      "treated as motion and left alone (1 = plain median)."}),
            "original_opacity": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.01,
                                           "tooltip": "Opacity of the original footage laid over the result (needs 'original')."}),
        }, optional={
            "original": (FRAMES, {"tooltip": "The original footage (e.g. straight from Load Video); resized to match."}),
        })

    def run(self, frames, grain_amount=0.03, grain_size=1.5, grain_colour=0.0, seed=0, median_radius=0,
            motion_threshold=0.04, original_opacity=0.0, original=None):
        return (film_stage.film_look(frames, grain_amount, grain_size, grain_colour, seed, median_radius,
                                     motion_threshold, original, original_opacity),)


NODE_CLASS_MAPPINGS = {
    "RemasterAutoColour": RemasterAutoColour,
    "RemasterApplyLUT": RemasterApplyLUT,
    "RemasterDeflicker": RemasterDeflicker,
    "RemasterFilmLook": RemasterFilmLook,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RemasterAutoColour": "Auto Colour & Light (Remaster)",
    "RemasterApplyLUT": "Apply LUT (Remaster)",
    "RemasterDeflicker": "Deflicker (Remaster)",
    "RemasterFilmLook": "Film Look & Grain (Remaster)",
}
