"""Film and tape: a damage simulator and the restoration nodes that undo what it makes. Thin node
classes over ``remaster.stages.film_damage``, ``.dust_scratches``, ``.stabilise``,
``.fade_restore``, ``.tape_fixes`` and ``.denoise_regrain``."""
from __future__ import annotations

import dataclasses

from remaster.stages import denoise_regrain as dn
from remaster.stages import dust_scratches as ds
from remaster.stages import fade_restore as fr
from remaster.stages import film_damage as fd
from remaster.stages import stabilise as sb
from remaster.stages import tape_fixes as tf

from ._common import FRAMES, StreamStage, category, frames_input

GROUP = category("Film & Tape")


class _FilmStage(StreamStage):
    """A film/tape node: its widgets are the fields of ``SETTINGS`` (the node's own defaults for
    those not given), the rest of its inputs (masks, reference, ``mask_output``) go to ``STAGE``."""

    CATEGORY = GROUP
    SETTINGS: type
    STAGE: staticmethod

    def run(self, frames, **kw):
        types = self.INPUT_TYPES()
        for section in ("required", "optional"):
            for name, spec in types.get(section, {}).items():
                if name not in kw and name != "frames":
                    opts = spec[1] if len(spec) > 1 else {}
                    kw[name] = opts.get("default", spec[0][0] if isinstance(spec[0], list) else None)
        fields = {f.name for f in dataclasses.fields(self.SETTINGS)}
        settings = self.SETTINGS(**{k: v for k, v in kw.items() if k in fields})
        return (type(self).STAGE(frames, settings, **{k: v for k, v in kw.items() if k not in fields}),)


def _mask_input(what: str) -> tuple:
    return (FRAMES, {"tooltip": f"Same size and length as the frames: its mask (or brightness) marks {what}."})


def _float(default: float, lo: float, hi: float, tip: str, step: float = 0.05) -> tuple:
    return ("FLOAT", {"default": default, "min": lo, "max": hi, "step": step, "tooltip": tip})


def _int(default: int, lo: int, hi: int, tip: str) -> tuple:
    return ("INT", {"default": default, "min": lo, "max": hi, "tooltip": tip})


def _bool(default: bool, tip: str) -> tuple:
    return ("BOOLEAN", {"default": default, "tooltip": tip})


def _amount(tip: str, default: float = 1.0) -> tuple:
    return _float(default, 0.0, 4.0, tip)


class RemasterFilmDamage(_FilmStage):
    SETTINGS, STAGE = fd.DamageSettings, staticmethod(fd.film_damage)
    DESCRIPTION = (
        "Make clean footage look like an old reel or tape, to preview a look or to test a restoration "
        "chain: line scratches at the gauge's angle that last many frames, one-frame dust, dirt and hairs, "
        "blotches, dye fading per stock, luminance-dependent grain, gate weave, flicker, vignetting, "
        "softness; for tape, noise bands with a colour shift, chroma bleed and delay, dropouts and "
        "head-switching noise. Seeded per frame: any range renders identically. Optionally puts the "
        "damage mask on the stream."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": frames_input(),
                "preset": (list(fd.PRESETS), {"default": "16mm", "tooltip": "Film gauge or tape format."}),
                "severity": _float(1.0, 0.0, 4.0, "Scales every defect (0 = clean, 1 = typical, 2 = badly kept)."),
                "seed": _int(0, 0, 2**31 - 1, "Same seed, same damage."),
                "stock": (["preset"] + list(fd.STOCKS), {"tooltip": "Film stock whose dyes fade (preset = the gauge's usual stock)."}),
                "fading": _float(1.0, 0.0, 1.0, "How far the dyes have faded."),
                "mask_output": _bool(False, "Put where the local damage is (scratches, dust, blotches, tape defects) on the stream's mask."),
            },
            "optional": {
                "scratches": _amount("Line scratches."), "dust": _amount("Dust and dirt specks."),
                "hairs": _amount("Hairs."), "blotches": _amount("Blotches."), "grain": _amount("Film grain."),
                "weave": _amount("Gate weave and jitter."), "flicker": _amount("Exposure flicker."),
                "vignette": _amount("Vignetting."), "softness": _amount("Softness."),
                "tape_noise": _amount("Tape luma noise."), "noise_bands": _amount("Tape noise bands."),
                "chroma_bleed": _amount("Tape chroma bleed and delay."), "dropouts": _amount("Tape dropouts."),
                "head_switching": _amount("Head-switching noise at the bottom."),
            },
        }


class RemasterDustScratches(_FilmStage):
    SETTINGS, STAGE = ds.DustSettings, staticmethod(ds.dust_scratches)
    DESCRIPTION = (
        "Find and remove dust, dirt, hairs, blotches and line scratches. One-frame defects are found by "
        "comparing each frame with its motion-compensated neighbours and repaired from them; scratches "
        "(thin, near-vertical, persistent lines) and places where motion is too large are filled from the "
        "surrounding picture. One pass, a window of up to five frames, reset at scene cuts."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": frames_input(),
                "sensitivity": _float(0.5, 0.0, 1.0, "Higher finds fainter specks (and risks touching real detail)."),
                "dust": _bool(True, "Remove one-frame defects (dust, dirt, hairs, blotches)."),
                "scratches": _bool(True, "Remove line scratches."),
                "radius": _int(2, 1, 2, "Neighbouring frames on each side compared."),
                "mask_output": _bool(False, "Put the detection on the stream's mask, for inspection."),
            },
            "optional": {
                "protect": _mask_input("areas never to touch"),
                "damage": _mask_input("known damage to repair as well (e.g. Film Damage's mask output)"),
            },
        }


class RemasterStabilise(_FilmStage):
    SETTINGS, STAGE = sb.StabiliseSettings, staticmethod(sb.stabilise)
    DESCRIPTION = (
        "Remove gate weave and hand-held jitter and keep intended camera moves: frame-to-frame motion from "
        "tracked corners, the camera path smoothed over a centred window inside each shot, borders filled "
        "or hidden by a small zoom."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": frames_input(),
                "radius": _int(12, 1, 60, "Frames each side used to smooth the path (longer = steadier, more delay)."),
                "strength": _float(1.0, 0.0, 1.0, "How much of the shake to remove."),
                "rotation": _bool(True, "Also steady rotation and zoom wobble."),
                "edge": (list(sb.EDGES), {"tooltip": "Uncovered borders: reflect, replicate the edge, black, or crop (zoom in)."}),
                "crop": _float(0.04, 0.0, 0.25, "Zoom used by edge = crop.", 0.01),
            },
        }


class RemasterRestoreFadedColour(_FilmStage):
    SETTINGS, STAGE = fr.FadeSettings, staticmethod(fr.restore_fade)
    DESCRIPTION = (
        "Bring back faded film colour: each dye layer's lost density is restored per channel (automatic per "
        "shot, or the known fading of a stock), lost saturation is given back, and exposure flicker is "
        "levelled. Optionally match a better-kept reference copy."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": frames_input(),
                "mode": (list(fr.MODES), {"tooltip": "auto: measured per shot. A stock: invert that stock's fading."}),
                "strength": _float(1.0, 0.0, 1.0, "How much of the correction to apply."),
                "amount": _float(1.0, 0.0, 1.0, "How faded the stock is (stock modes)."),
                "saturation": _float(1.25, 0.5, 2.0, "Saturation given back (auto mode)."),
                "deflicker": _float(1.0, 0.0, 1.0, "Level exposure flicker (0 = off)."),
                "radius": _int(12, 0, 60, "Frames each side the measurements are averaged over."),
            },
            "optional": {
                "reference": (FRAMES, {"tooltip": "A better-kept copy of the same footage (same size and length)."}),
            },
        }


class RemasterTapeFixes(_FilmStage):
    SETTINGS, STAGE = tf.TapeSettings, staticmethod(tf.tape_fixes)
    DESCRIPTION = (
        "Repair analogue and early digital tape: chroma delay and bleed corrected against the luma, noise "
        "bands and dropouts filled from neighbouring frames or lines, head-switching noise at the bottom "
        "blacked out, inpainted or cropped away."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": frames_input(),
                "chroma_delay": _bool(True, "Measure and undo the colour's horizontal lag."),
                "chroma_sharpen": _float(1.0, 0.0, 1.0, "Snap bled colour back to luma edges."),
                "dropouts": _bool(True, "Repair dropout streaks."),
                "bands": _bool(True, "Repair noise bands."),
                "sensitivity": _float(0.5, 0.0, 1.0, "Higher finds fainter defects."),
                "head_switch": (list(tf.HEAD_MODES), {"default": "inpaint", "tooltip": "What to do with the noisy bottom lines."}),
                "head_lines": _float(0.02, 0.0, 0.1, "Height of the head-switching strip as a fraction of the frame (0 = detect).", 0.005),
            },
            "optional": {"protect": _mask_input("areas never to touch")},
        }


class RemasterDenoiseRegrain(_FilmStage):
    SETTINGS, STAGE = dn.DenoiseSettings, staticmethod(dn.denoise_regrain)
    DESCRIPTION = (
        "Motion-compensated temporal denoise that keeps detail (neighbours warped by optical flow, weighted by "
        "how well they match), then fresh grain matched to the source's measured grain put back, so the "
        "texture stays and the boiling noise goes."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "frames": frames_input(),
                "strength": _float(1.0, 0.0, 4.0, "Multiplies the measured noise level."),
                "radius": _int(2, 1, 4, "Frames each side averaged."),
                "regrain": _float(0.5, 0.0, 2.0, "Grain put back, relative to the measured grain (0 = clean)."),
                "seed": _int(0, 0, 2**31 - 1, "Grain seed."),
            },
            "optional": {"protect": _mask_input("areas left as they came (a face, a title)")},
        }



NODE_CLASS_MAPPINGS = {
    "RemasterFilmDamage": RemasterFilmDamage,
    "RemasterDustScratches": RemasterDustScratches,
    "RemasterStabilise": RemasterStabilise,
    "RemasterRestoreFadedColour": RemasterRestoreFadedColour,
    "RemasterTapeFixes": RemasterTapeFixes,
    "RemasterDenoiseRegrain": RemasterDenoiseRegrain,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "RemasterFilmDamage": "Film Damage (Remaster)",
    "RemasterDustScratches": "Dust & Scratches (Remaster)",
    "RemasterStabilise": "Stabilise (Remaster)",
    "RemasterRestoreFadedColour": "Restore Faded Colour (Remaster)",
    "RemasterTapeFixes": "Tape Fixes (Remaster)",
    "RemasterDenoiseRegrain": "Denoise & Regrain (Remaster)",
}
