"""Inpainting back-ends: each makes ``count`` inpainted versions of one image crop.

:class:`DiffusersInpaint` (a local diffusers folder with a ``StableDiffusionInpaintPipeline``),
:class:`ComfyInpaint` (ComfyUI's MODEL/CLIP/VAE through ComfyUI's own sampling nodes) and
:class:`CallableInpaint` (a plain function; tests and stand-in edits).
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, Optional

import torch

from ... import host
from .geometry import resize_hw


class InpaintBackend:
    """Makes ``count`` inpainted versions of one image.

    ``generate(image [1,h,w,3] 0..1, mask [1,h,w] 0..1, ...) -> [count,h,w,3] 0..1`` where ``h``
    and ``w`` are multiples of 8. Pixels outside the mask may change (the caller composites).
    """

    name = "backend"
    multiple = 8

    def generate(self, image: torch.Tensor, mask: torch.Tensor, *, prompt: str, negative: str,
                 strength: float, seed: int, steps: int, guidance: float, count: int) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"backend": self.name}


def diffusers_model_choices() -> list[str]:
    """Names of diffusers model folders (holding ``model_index.json``) in the ``diffusers`` folder."""
    names: set = set()
    for d in host.model_dirs("diffusers"):
        if d.is_dir():
            for idx in d.glob("*/model_index.json"):
                names.add(idx.parent.name)
            for idx in d.glob("*/*/model_index.json"):
                names.add(idx.parent.relative_to(d).as_posix())
    return sorted(names)


def resolve_diffusers_folder(name: str) -> Path:
    """The folder of a diffusers model given its name in the ``diffusers`` models folder or a path."""
    if not name or not str(name).strip() or str(name).startswith("("):
        raise FileNotFoundError("no diffusers model was chosen: pick a model folder in the node's 'model' input")
    p = Path(str(name)).expanduser()
    if p.is_absolute() and (p / "model_index.json").is_file():
        return p
    for d in host.model_dirs("diffusers"):
        if (d / name / "model_index.json").is_file():
            return d / name
    where = host.model_dirs("diffusers")[0]
    raise FileNotFoundError(
        f"diffusers model folder '{name}' was not found. Put a diffusers inpainting model (a folder with "
        f"model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) in {where}, e.g. a copy of "
        "stable-diffusion-v1-5/stable-diffusion-inpainting saved with save_pretrained"
    )


def _model_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and host.cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


_pipeline_cache: dict = {}  # the last loaded diffusers pipeline, reused by later runs


class DiffusersInpaint(InpaintBackend):
    """``StableDiffusionInpaintPipeline`` loaded from a local folder (never from a hub)."""

    name = "diffusers"

    def __init__(self, model: str, device: Optional[torch.device] = None) -> None:
        from diffusers import StableDiffusionInpaintPipeline

        self.folder = resolve_diffusers_folder(model)
        self.device = device or host.torch_device()
        self.dtype = _model_dtype(self.device)
        key = (str(self.folder), (self.folder / "model_index.json").stat().st_mtime_ns, str(self.device), str(self.dtype))
        if _pipeline_cache.get("key") != key:
            _pipeline_cache.clear()  # keep at most one pipeline alive
            pipe = StableDiffusionInpaintPipeline.from_pretrained(
                str(self.folder), dtype=self.dtype, local_files_only=True,
                safety_checker=None, requires_safety_checker=False,
            )
            pipe.set_progress_bar_config(disable=True)
            pipe.to(self.device)
            _pipeline_cache.update(key=key, pipe=pipe)
        self.pipe = _pipeline_cache["pipe"]
        self.native = int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)
        self.multiple = max(8, int(self.pipe.vae_scale_factor))

    def describe(self) -> dict:
        return {"backend": self.name, "model": self.folder.name, "dtype": str(self.dtype).replace("torch.", ""),
                "device": str(self.device)}

    def generate(self, image, mask, *, prompt, negative, strength, seed, steps, guidance, count):
        h, w = image.shape[1:3]
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        out = self.pipe(
            prompt=prompt,
            negative_prompt=negative or None,
            image=image.permute(0, 3, 1, 2).float(),
            mask_image=mask[:, None].float(),
            height=h,
            width=w,
            strength=float(strength),
            num_inference_steps=int(steps),
            guidance_scale=float(guidance),
            num_images_per_prompt=int(count),
            generator=gen,
            output_type="pt",
        ).images
        return out.float().cpu().permute(0, 2, 3, 1).clamp(0, 1)


class ComfyInpaint(InpaintBackend):
    """ComfyUI's own MODEL/CLIP/VAE (any SD1.5/SDXL checkpoint, inpainting or not). Runs only
    inside ComfyUI (ComfyUI's ``nodes`` module comes from the adapter, :func:`remaster.host.comfy_nodes`)."""

    name = "comfyui"

    def __init__(self, model, clip, vae, sampler: str = "euler", scheduler: str = "normal") -> None:
        self.model, self.clip, self.vae = model, clip, vae
        self.sampler, self.scheduler = sampler, scheduler

    def describe(self) -> dict:
        return {"backend": self.name, "sampler": self.sampler, "scheduler": self.scheduler}

    def generate(self, image, mask, *, prompt, negative, strength, seed, steps, guidance, count):
        """``count`` results ``[count,H,W,3]`` (seeds ``seed``, ``seed+1``, ...) from ComfyUI's own
        nodes: CLIPTextEncode, InpaintModelConditioning (works for inpainting and ordinary
        checkpoints, keeping the unmasked latent through the noise mask) and KSampler."""
        comfy_nodes = host.comfy_nodes()
        encode = comfy_nodes.CLIPTextEncode()
        pos = encode.encode(self.clip, prompt)[0]
        neg = encode.encode(self.clip, negative or "")[0]
        cond = comfy_nodes.InpaintModelConditioning()
        kwargs = {"noise_mask": True} if "noise_mask" in inspect.signature(cond.encode).parameters else {}
        pos, neg, latent = cond.encode(pos, neg, image.float().cpu(), self.vae, mask.float().cpu(), **kwargs)
        outs = []
        for j in range(int(count)):
            host.check_interrupt()
            sampled = comfy_nodes.common_ksampler(self.model, int(seed) + j, int(steps), float(guidance), self.sampler,
                                                  self.scheduler, pos, neg, latent, denoise=float(strength))[0]
            img = self.vae.decode(sampled["samples"])
            if img.ndim == 5:  # some VAEs return [b,t,H,W,3]
                img = img.reshape(-1, *img.shape[-3:])
            outs.append(img[:1].float().cpu())
        out = torch.cat(outs)
        h, w = image.shape[1:3]
        if tuple(out.shape[1:3]) != (h, w):  # ComfyUI crops to multiples of 8; put the size back
            out = resize_hw(out, (h, w))
        return out.clamp(0, 1)


class CallableInpaint(InpaintBackend):
    """A plain function ``fn(image [1,h,w,3], mask [1,h,w], seed) -> [h,w,3]`` as a back-end, called
    with ``seed, seed+1, ...`` for the candidates (tests, deliberate simple edits)."""

    name = "function"

    def __init__(self, fn: Callable, label: str = "function") -> None:
        self.fn, self.label = fn, label

    def describe(self) -> dict:
        return {"backend": self.name, "function": self.label}

    def generate(self, image, mask, *, prompt, negative, strength, seed, steps, guidance, count):
        return torch.stack([self.fn(image, mask, seed + j).reshape(image.shape[1:]) for j in range(count)])
