"""Input checks of dlcourse.sd (components, pipeline, LoRA files, DreamBooth on a photo folder), kept out of the code
a learner reads. Each error names the function and the argument, says what it got, what it needs and how to fix it.

They run once per call, before the sampling loop: the checks of :class:`~dlcourse.sd.pipeline.SDUNet`'s forward
(called every step) compare shapes in Python only, with no host synchronisation. Image values are read once (one
synchronisation) where images come in.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from dlcourse.argument_checks import (
    check_bool,
    check_device,
    check_dtype,
    check_generator,
    check_images,
    check_instance,
    check_int,
    check_number,
    check_path,
    check_strings,
    describe,
)
from dlcourse.finetune.checks import check_model
from dlcourse.sampling.checks import check_eta

__all__ = [
    "check_components",
    "check_img2img",
    "check_latents",
    "check_load",
    "check_prompts",
    "check_parts",
    "check_sd_images",
    "check_sd_unet_inputs",
    "check_strength",
    "check_text_to_image",
    "check_tiny",
]


def check_parts(tokenizer: Any, text_encoder: Any, unet: Any, vae: Any, scheduler: Any, source: Any) -> None:
    """SDComponents' fields: a tokenizer (callable), three networks, a scheduler with a config, a description."""
    caller = "SDComponents"
    if not callable(tokenizer):
        raise TypeError(f"{caller}: tokenizer must be a CLIPTokenizer (callable on prompts); got "
                        f"{describe(tokenizer)}.")  # fmt: skip
    for name, module in (("text_encoder", text_encoder), ("unet", unet), ("vae", vae)):
        check_model(caller, module, name)
    if not hasattr(scheduler, "config"):
        raise TypeError(f"{caller}: scheduler must be a diffusers scheduler (its config is read), e.g. "
                        f"DDIMScheduler.from_config(pipe.scheduler.config); got {describe(scheduler)}.")  # fmt: skip
    check_instance(caller, "source", source, str, "a string saying where the components came from")


def check_components(caller: str, components: Any) -> None:
    from dlcourse.sd.components import SDComponents

    check_instance(caller, "components", components, SDComponents, "SDComponents",
                   "Get them with dlcourse.sd.stable_diffusion(model_id) or dlcourse.sd.tiny_components().")


def check_prompts(caller: str, name: str, prompt: Any, count: int | None = None) -> list[str]:
    """A prompt or a non-empty list of prompts (``count`` of them when given; one string is repeated)."""
    fix = "Pass one prompt, or one per image." if count is not None else ""
    return check_strings(caller, name, prompt, count=count, fix=fix)


def _nearest(size: int, factor: int) -> str:
    low, high = size // factor * factor, -(-size // factor) * factor
    return f"{high}" if low == 0 else f"{low} or {high}"


def _nearest_sizes(h: int, w: int, factor: int) -> str:
    """The valid sizes next to h x w: rounded down and rounded up to multiples of ``factor``."""
    down, up = (h // factor * factor, w // factor * factor), (-(-h // factor) * factor, -(-w // factor) * factor)
    return f"{up[0]}x{up[1]}" if 0 in down else f"{down[0]}x{down[1]} or {up[0]}x{up[1]}"


def check_size(caller: str, name: str, size: Any, factor: int) -> None:
    """A height or width in pixels: a positive multiple of the VAE's factor (8 for SD)."""
    check_int(caller, name, size, factor)
    if size % factor:
        raise ValueError(
            f"{caller}: {name} must be a multiple of {factor} (the VAE downsamples by {factor} into the latents); got "
            f"{size}. The nearest valid sizes: {_nearest(size, factor)}."
        )


def check_sd_images(caller: str, name: str, images: Any, components: Any) -> None:
    """Images (B, 3, H, W) in [-1, 1] with H and W multiples of the VAE's factor (one host synchronisation)."""
    check_images(caller, name, images, channels=3, value_range=False)
    f = components.vae_scale_factor
    h, w = images.shape[-2:]
    if h % f or w % f:
        raise ValueError(
            f"{caller}: {name} must have a height and width that are multiples of {f} (the VAE downsamples by {f}; "
            f"other sizes come back cropped); got {h}x{w}. Resize or crop to {_nearest_sizes(h, w, f)}, "
            f"e.g. torch.nn.functional.interpolate({name}, size=({-(-h // f) * f}, {-(-w // f) * f}), "
            "mode='bilinear')."
        )
    check_images(caller, name, images, channels=3, value_range=True)


def check_latents(caller: str, components: Any, latents: Any) -> None:
    """Latents (B, latent_channels, h, w), floats, for the VAE's decoder."""
    c = components.vae.config.latent_channels
    check_images(caller, "latents", latents, channels=c)


def _check_strength(caller: str, strength: Any) -> None:
    check_number(caller, "strength", strength, 0, 1, above=True,
                 fix="The fraction of the steps to run: 1 forgets the image, 0.3 keeps most of it.")  # fmt: skip


def check_strength(num_steps: Any, strength: Any) -> None:
    check_int("img2img_start", "num_steps", num_steps, 1)
    _check_strength("img2img_start", strength)


def _check_sampling(caller: str, components: Any, guidance_scale: Any, num_steps: Any, generator: Any, fast: Any,
                    progress: Any) -> None:  # fmt: skip
    check_number(caller, "guidance_scale", guidance_scale,
                 fix="s of notebook 06: 1 is no guidance, 7.5 is SD's usual value.")  # fmt: skip
    check_int(caller, "num_steps", num_steps, 1, components.scheduler.config.num_train_timesteps,
              fix="The DDIM steps: 20 to 50 are usual.")  # fmt: skip
    check_generator(caller, "generator", generator)
    check_bool(caller, "fast", fast)
    check_bool(caller, "progress", progress)


def check_text_to_image(components: Any, prompt: Any, negative_prompt: Any, guidance_scale: Any, num_steps: Any,
                        height: Any, width: Any, eta: Any, latents: Any, generator: Any, fast: Any, progress: Any,
                        output: Any) -> tuple[list[str], list[str]]:  # fmt: skip
    """text_to_image's arguments; returns the prompts and as many negative prompts."""
    caller = "text_to_image"
    check_components(caller, components)
    prompts = check_prompts(caller, "prompt", prompt)
    negatives = check_prompts(caller, "negative_prompt", negative_prompt, len(prompts))
    _check_sampling(caller, components, guidance_scale, num_steps, generator, fast, progress)
    check_eta(eta)
    f = components.vae_scale_factor
    for name, size in (("height", height), ("width", width)):
        if size is not None:
            check_size(caller, name, size, f)
    if latents is not None:
        check_latents(caller, components, latents)
        if latents.shape[0] != len(prompts):
            raise ValueError(f"{caller}: latents must hold one starting noise per prompt ({len(prompts)}); got "
                             f"{describe(latents)}.")  # fmt: skip
        for name, size, latent in (("height", height, latents.shape[2]), ("width", width, latents.shape[3])):
            if size is not None and size != latent * f:
                raise ValueError(f"{caller}: {name}={size} disagrees with latents of {describe(latents)} "
                                 f"({latent * f} px); pass one or the other.")  # fmt: skip
        device, want = latents.device, components.device
        if device.type != want.type or (device.index or 0) != (want.index or 0):
            raise ValueError(f"{caller}: latents are on {device} but the model on {want}; move them: "
                             f"latents.to({str(want)!r}).")  # fmt: skip
    if output not in ("image", "latent"):
        raise ValueError(f"{caller}: output must be 'image' or 'latent'; got {describe(output)}.")
    return prompts, negatives


def check_img2img(components: Any, image: Any, prompt: Any, negative_prompt: Any, strength: Any, guidance_scale: Any,
                  num_steps: Any, generator: Any, fast: Any, progress: Any) -> tuple[list[str], list[str]]:  # fmt: skip
    """img2img's arguments; returns as many prompts and negative prompts as images."""
    caller = "img2img"
    check_components(caller, components)
    check_sd_images(caller, "image", image, components)
    prompts = check_prompts(caller, "prompt", prompt)
    if len(prompts) != image.shape[0]:
        raise ValueError(f"{caller}: prompt must be one prompt per image; got {len(prompts)} prompt(s) for "
                         f"{image.shape[0]} image(s). Pass a list of {image.shape[0]} prompts.")  # fmt: skip
    negatives = check_prompts(caller, "negative_prompt", negative_prompt, len(prompts))
    _check_strength(caller, strength)
    _check_sampling(caller, components, guidance_scale, num_steps, generator, fast, progress)
    return prompts, negatives


def check_sd_unet_inputs(unet: nn.Module, x_t: Tensor, context: Tensor) -> None:
    """SDUNet's forward, every step: shapes only (Python integers, no host synchronisation)."""
    config = unet.config
    if x_t.ndim != 4 or x_t.shape[1] != config.in_channels:
        raise ValueError(f"SDUNet: x_t must be latents (B, {config.in_channels}, h, w); got {describe(x_t)}.")
    if context.ndim != 3 or context.shape[0] != x_t.shape[0] or context.shape[2] != config.cross_attention_dim:
        raise ValueError(f"SDUNet: context must be prompt embeddings (B, 77, {config.cross_attention_dim}) with "
                         f"B = {x_t.shape[0]}, from encode_prompt; got {describe(context)}.")  # fmt: skip


def check_load(caller: str, model_id: Any, dtype: Any, device: Any, local_files_only: Any, *, optional: bool) -> None:
    """load_components' and stable_diffusion's arguments (model_id may be None for the latter)."""
    if not (optional and model_id is None):
        check_path(caller, "model_id", model_id,
                   fix="A Hub id such as 'stable-diffusion-v1-5/stable-diffusion-v1-5' or a local folder.")
    check_dtype(caller, "dtype", dtype)
    check_device(caller, "device", device)
    check_bool(caller, "local_files_only", local_files_only)


def check_tiny(seed: Any, image_size: Any) -> None:
    check_int("tiny_components", "seed", seed, 0)
    check_size("tiny_components", "image_size", image_size, 8)
