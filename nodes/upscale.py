"""Upscale (Remaster): Real-ESRGAN and any spandrel super-resolution model on the frame stream."""
from __future__ import annotations

from remaster.stages import upscale as stage

from ._common import FRAMES, NONE, category, model_input, picked, stream_inputs


class RemasterUpscale:
    DESCRIPTION = (
        "Super-resolution on the frame stream with any model from the upscale_models folder "
        "(Real-ESRGAN x4plus / x2plus / anime, realesr-general-x4v3, animevideov3, and every other "
        "model ComfyUI's own upscaler loads). Seamless overlapping tiles sized from free memory, "
        "several frames per pass, fp16 on GPUs and bf16 on CPUs that support it. The output is "
        "resized to the scale or height you ask for with an antialiased filter (e.g. a x4 model "
        "giving a clean x2). Optionally mixes a second model's result in."
    )
    CATEGORY = category("Enhance")
    FUNCTION = "run"
    RETURN_TYPES = (FRAMES, "INT", "INT")
    RETURN_NAMES = ("frames", "width", "height")

    @classmethod
    def INPUT_TYPES(cls):
        models = model_input(stage.FOLDER, "Super-resolution model from the upscale_models folder.")
        second = model_input(stage.FOLDER, "Optional second model whose output is mixed in by 'blend'.")
        return stream_inputs({
            "model": models,
            "scale": ("FLOAT", {"default": 2.0, "min": 0.0, "max": 16.0, "step": 0.05,
                                "tooltip": "Output size as a multiple of the input; 0 = the model's own scale. "
                                           "A x4 model with scale 2 is run at x4 then filtered down to x2."}),
            "target_height": ("INT", {"default": 0, "min": 0, "max": 16384, "step": 2,
                                      "tooltip": "Exact output height in pixels (e.g. 2160); width keeps the aspect "
                                                 "ratio. 0 = use scale."}),
            "precision": (list(stage.PRECISIONS), {"default": "auto",
                                                   "tooltip": "auto: fp16 on NVIDIA GPUs, bf16 on CPUs with AMX/AVX-512-BF16, "
                                                              "else fp32. fp32 is the exact reference, slowest."}),
        }, optional={
            "denoise_strength": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                           "tooltip": "realesr-general-x4v3 only: 1 = full denoise, lower keeps more "
                                                      "grain and detail (blends in realesr-general-wdn-x4v3, which must be "
                                                      "in the same folder)."}),
            "model_b": ([NONE] + second[0], {"default": NONE, "tooltip": second[1]["tooltip"]}),
            "blend": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                "tooltip": "Opacity of model_b's output over model's (0 = only model, 1 = only model_b)."}),
            "tile": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 8,
                             "tooltip": "Tile size in input pixels; 0 = chosen from free memory (smaller after an "
                                        "out-of-memory error)."}),
            "overlap": ("INT", {"default": 24, "min": 0, "max": 256, "step": 2,
                                "tooltip": "Pixels shared by neighbouring tiles, cross-faded so no seam shows."}),
        })

    def run(self, frames, model, scale=2.0, target_height=0, precision="auto", denoise_strength=1.0,
            model_b=NONE, blend=0.0, tile=0, overlap=24):
        out = stage.upscale(
            frames, model, scale=scale, target_height=target_height, precision=precision,
            tile=tile, overlap=overlap, denoise_strength=denoise_strength,
            model_b=picked(model_b), blend=blend,
        )
        return (out, out.info.width, out.info.height)


NODE_CLASS_MAPPINGS = {"RemasterUpscale": RemasterUpscale}
NODE_DISPLAY_NAME_MAPPINGS = {"RemasterUpscale": "Upscale (Remaster)"}
