"""Schemas of the few ComfyUI core nodes that shipped workflows use (the text-to-image part of the
studio backdrop), so the workflow tools can build and check UI twins without ComfyUI. They mirror
ComfyUI 0.3.64's inputs and outputs; they cannot run: in-process, a workflow that needs them
stops with a message saying to run it in ComfyUI."""
from __future__ import annotations

_SAMPLERS = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m", "dpmpp_sde",
             "dpmpp_2m_sde", "ddim", "uni_pc"]
_SCHEDULERS = ["simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal",
               "linear_quadratic", "kl_optimal"]
_MAX = 16384


class _Core:
    FUNCTION = "run"
    CATEGORY = "core"

    def run(self, **_kw):
        raise RuntimeError(f"'{type(self).__name__}' is a ComfyUI core node: run this workflow in ComfyUI "
                           "(the in-process runner only has the Remaster nodes)")


class CheckpointLoaderSimple(_Core):
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")

    @classmethod
    def INPUT_TYPES(cls):
        from .. import host

        names = host.list_model_files("checkpoints") or ["v1-5-pruned-emaonly-fp16.safetensors"]
        return {"required": {"ckpt_name": (names, {"tooltip": "The name of the checkpoint (model) to load."})}}


class CLIPTextEncode(_Core):
    RETURN_TYPES = ("CONDITIONING",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"multiline": True, "dynamicPrompts": True}), "clip": ("CLIP",)}}


class EmptyLatentImage(_Core):
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "width": ("INT", {"default": 512, "min": 16, "max": _MAX, "step": 8}),
            "height": ("INT", {"default": 512, "min": 16, "max": _MAX, "step": 8}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
        }}


class KSampler(_Core):
    RETURN_TYPES = ("LATENT",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "control_after_generate": True}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}),
            "sampler_name": (_SAMPLERS,),
            "scheduler": (_SCHEDULERS,),
            "positive": ("CONDITIONING",),
            "negative": ("CONDITIONING",),
            "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
        }}


class VAEDecode(_Core):
    RETURN_TYPES = ("IMAGE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}


NODE_CLASS_MAPPINGS = {c.__name__: c for c in (CheckpointLoaderSimple, CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode)}
