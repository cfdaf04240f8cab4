"""Relight node: thin schema over ``remaster.stages.relight``."""
from __future__ import annotations

from remaster.stages import relight as relight_stage

from ._common import StreamStage, category, stream_inputs

_UNIT = {"min": 0.0, "max": 1.0, "step": 0.01}


class RemasterRelight(StreamStage):
    DESCRIPTION = (
        "Change the light and keep the person: each frame is split into smooth shading (the light) and "
        "reflectance (skin, texture, the face), only the shading is changed, and the two are recombined, "
        "so identity and detail are untouched. Lifts a dim shot toward a target exposure (highlights "
        "kept), fills shadows, and adds a soft key, fill or rim light from a direction relative to the "
        "person, whose shape is read from the stream's mask. The exposure follows the shot slowly and "
        "restarts at scene cuts, so nothing flickers. A preset sets every light; the widgets below "
        "override it when 'override' is on."
    )
    CATEGORY = category("Colour")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "preset": (list(relight_stage.PRESETS), {
                "default": "soft studio",
                "tooltip": "natural: exposure only (a dim room made bright, nothing else). soft studio: lifted "
                           "shadows, soft key from the front-left, a little fill and rim. window key: a strong "
                           "cool side light. rim + fill: edges lit from behind, open shadows."}),
            "target": (list(relight_stage.TARGETS), {
                "tooltip": "person: relight inside the mask only. background: outside it (exposure and shadows). "
                           "both: the whole frame (lights land on the person when there is a mask)."}),
            "strength": ("FLOAT", dict(_UNIT, default=1.0, tooltip="Mix of the new light (1 = as the preset/widgets set it).")),
            "override": ("BOOLEAN", {"default": False, "tooltip": "Use the widgets below instead of the preset's values."}),
            "exposure": ("FLOAT", {"default": 0.40, "min": 0.05, "max": 0.9, "step": 0.01,
                                   "tooltip": "Display value the subject's (geometric-mean) brightness is lifted toward when darker (0.40 ~ a well-lit person)."}),
            "shadow_lift": ("FLOAT", dict(_UNIT, default=0.45, tooltip="Open up shading darker than the exposure target (a fill light).")),
            "key": ("FLOAT", dict(_UNIT, default=0.35, tooltip="Key light strength.")),
            "fill": ("FLOAT", dict(_UNIT, default=0.2, tooltip="Fill light strength (from the other side).")),
            "rim": ("FLOAT", dict(_UNIT, default=0.1, tooltip="Rim light on the person's edges (from behind).")),
            "azimuth": ("FLOAT", {"default": -35.0, "min": -180.0, "max": 180.0, "step": 1.0,
                                  "tooltip": "Key light direction around the person: 0 = from the camera, -90 = from the "
                                             "frame's left, 90 = right, 180 = behind."}),
            "elevation": ("FLOAT", {"default": 30.0, "min": -60.0, "max": 85.0, "step": 1.0,
                                    "tooltip": "Key light height in degrees above the horizon."}),
            "softness": ("FLOAT", dict(_UNIT, default=0.8, tooltip="0 = hard light with dark terminator, 1 = fully wrapped.")),
            "temperature": ("FLOAT", {"default": 5600.0, "min": 1500.0, "max": 15000.0, "step": 100.0,
                                      "tooltip": "Colour of the light in Kelvin: 6500 = neutral, lower = warmer, higher = cooler."}),
        }, frames="A stream; with a person mask (e.g. from Video Matting) for target person/background.")

    def run(self, frames, preset="soft studio", target="person", strength=1.0, override=False, exposure=0.40,
            shadow_lift=0.45, key=0.35, fill=0.2, rim=0.1, azimuth=-35.0, elevation=30.0, softness=0.8,
            temperature=5600.0):
        extra = {}
        if override:
            extra = dict(exposure=exposure, shadow_lift=shadow_lift, key=key, fill=fill, rim=rim, azimuth=azimuth,
                         elevation=elevation, softness=softness, temperature=temperature)
        s = relight_stage.preset(preset, target=target, strength=strength, **extra)
        return (relight_stage.relight(frames, s),)


NODE_CLASS_MAPPINGS = {"RemasterRelight": RemasterRelight}
NODE_DISPLAY_NAME_MAPPINGS = {"RemasterRelight": "Relight (Remaster)"}
