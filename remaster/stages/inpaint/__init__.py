"""Video inpainting by keyframes: inpaint each keyframe, pick the best
candidate, carry the edit through its keyframe group following the motion, check for jumps.

1. :func:`inpaint_keyframes` — for each keyframe of a :class:`~.keyframes.KeyframePlan`, crop
   around the mask with context, resize to the model's resolution, ask a back-end for ``count``
   candidates (denoise ``strength`` 0.3 by default, prompt, negative prompt, seed) and resize the
   candidates back to the crop. Back-ends: :class:`DiffusersInpaint` (a local diffusers folder
   with a ``StableDiffusionInpaintPipeline``), :class:`ComfyInpaint` (ComfyUI's MODEL/CLIP/VAE;
   sampled with ComfyUI's own nodes), :class:`CallableInpaint` (a plain function; tests and
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
from .backends import CallableInpaint, ComfyInpaint, DiffusersInpaint, InpaintBackend, diffusers_model_choices, resolve_diffusers_folder
from .candidates import InpaintCandidates, KeyframeEdit, candidate_sheet, inpaint_keyframes
from .keyframes import KeyframePlan, analyse_keyframes, keyframe_stream
from .geometry import crop_box, edit_region, feather, rectangle_mask
from ...analysis.jumps import JumpMeter
from .propagate import propagate
from .select import InpaintSelection, parse_picks, select_candidates

__all__ = [
    "KeyframePlan",
    "analyse_keyframes",
    "keyframe_stream",
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
