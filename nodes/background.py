"""Background replacement node: thin schema over ``remaster.stages.background``."""
from __future__ import annotations

from remaster import host
from remaster.stages import background as bg_stage

from ._common import FRAMES, NONE, StreamStage, category, picked, stream_inputs

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def _input_images() -> list[str]:
    d = host.input_dir()
    if not d.is_dir():
        return []
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


class RemasterReplaceBackground(StreamStage):
    DESCRIPTION = (
        "Put the person (the stream's mask, e.g. from Video Matting) in front of a new background: a "
        "colour, a blurred/darkened copy of the original (the person left out of the blur), an image, a ComfyUI "
        "IMAGE (e.g. a backdrop generated from a prompt), or another video (looped or held "
        "when shorter, trimmed when longer, fitted by cover or contain). Edge colour from the old "
        "background is removed, and light wrap / colour matching help the person sit in the new scene. "
        "Where the mask is 1 the original pixels are kept exactly."
    )
    CATEGORY = category("Masks")

    @classmethod
    def INPUT_TYPES(cls):
        return stream_inputs({
            "source": (list(bg_stage.SOURCES), {"tooltip": "color: solid colour. blur: blurred/darkened original. "
                                                             "image: a picture from the input folder. stream: the 'background' input."}),
            "color": ("STRING", {"default": "#00b140", "tooltip": "Colour for source=color: #RRGGBB or r,g,b (0-255)."}),
            "blur": ("FLOAT", {"default": 24.0, "min": 0.0, "max": 512.0, "step": 1.0,
                               "tooltip": "Blur strength (Gaussian sigma, pixels) for source=blur."}),
            "darken": ("FLOAT", {"default": 0.3, "min": 0.0, "max": 1.0, "step": 0.05,
                                 "tooltip": "How much to darken the background for source=blur (0 = not at all, 1 = black)."}),
            "image": ([NONE] + _input_images(), {"image_upload": True,
                                                "tooltip": "Background picture for source=image (input folder; any path through the API)."}),
            "fit": (list(bg_stage.FITS), {"tooltip": "cover: fill the frame, crop the overflow. contain: whole picture, black bars. stretch: distort to fit."}),
            "loop": ("BOOLEAN", {"default": True, "tooltip": "source=stream shorter than the video: loop it (on) or hold its last frame (off)."}),
            "decontaminate": ("BOOLEAN", {"default": True, "tooltip": "Remove the old background's colour from soft edges (hair)."}),
            "light_wrap": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                     "tooltip": "Let the new background's light spill over the person's edge (0 = off; 0.2-0.4 looks natural)."}),
            "wrap_radius": ("FLOAT", {"default": 12.0, "min": 1.0, "max": 256.0, "step": 1.0, "tooltip": "Width of the light wrap in pixels."}),
            "match_color": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                      "tooltip": "Shift the person's colour balance toward the new background's (0 = off)."}),
        }, optional={
            "background": (FRAMES, {"tooltip": "Background video for source=stream."}),
            "background_image": ("IMAGE", {"tooltip": "A ComfyUI IMAGE as the background (e.g. from a text-to-image graph: "
                                                      "VAE Decode). Used whatever 'source' says; a batch of several images "
                                                      "plays as a background video."}),
        }, frames="A stream with a mask (1 = keep).")

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        if not picked(image) or host.annotated_input_path(image).is_file():
            return True
        return f"background image '{image}' not found in the input folder ({host.input_dir()}) or as a path"

    def run(self, frames, source="color", color="#00b140", blur=24.0, darken=0.3, image="", fit="cover", loop=True,
            decontaminate=True, light_wrap=0.0, wrap_radius=12.0, match_color=0.0, background=None,
            background_image=None):
        image_path = str(host.annotated_input_path(image)) if source == "image" and picked(image) else None
        return (bg_stage.replace_background(
            frames, source=source, color=color, blur=blur, darken=darken, image=image_path, background=background,
            fit_mode=fit, loop=loop, decontaminate_edges=decontaminate, wrap=light_wrap, wrap_radius=wrap_radius,
            match_color=match_color, image_tensor=background_image,
        ),)


NODE_CLASS_MAPPINGS = {"RemasterReplaceBackground": RemasterReplaceBackground}
NODE_DISPLAY_NAME_MAPPINGS = {"RemasterReplaceBackground": "Replace Background (Remaster)"}
