"""Stable Diffusion driven by the course's own loop: prompt -> CLIP embeddings -> DDIM + guidance on latents -> VAE.

Nothing here samples by itself: :func:`text_to_image` is :func:`~dlcourse.sampling.guided_denoiser` (notebook 06)
around SD's U-Net, run by :func:`~dlcourse.sampling.ddim_sample` (notebook 04) on 4 x H/8 x W/8 latents, then decoded
by the VAE (notebook 05). :func:`img2img` starts the same loop part-way, from an encoded image noised to the
timestep that ``strength`` picks (SDEdit, Meng et al. 2022). Both equal diffusers' ``StableDiffusionPipeline`` and
``StableDiffusionImg2ImgPipeline`` for the same seed, scheduler, prompts and guidance (tests/test_sd.py).

Shapes: images (B, 3, H, W) in [-1, 1]; latents (B, 4, H/8, W/8); prompt embeddings (B, 77, 768) for SD 1.5.

Taught in notebooks/08_stable_diffusion.ipynb.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlcourse.argument_checks import check_generator
from dlcourse.finetune.checks import check_model
from dlcourse.runtime import Precision
from dlcourse.sampling import ddim_sample, guided_denoiser, timesteps
from dlcourse.sd.checks import (
    check_components,
    check_img2img,
    check_latents,
    check_prompts,
    check_sd_images,
    check_sd_unet_inputs,
    check_strength,
    check_text_to_image,
)
from dlcourse.sd.components import SDComponents

__all__ = ["SDUNet", "decode_latents", "encode_images", "encode_prompt", "img2img", "img2img_start", "text_to_image"]


class SDUNet(nn.Module):
    """SD's UNet2DConditionModel called the way the course's samplers and train() call a model:
    ``model(x_t (B, 4, h, w), t (B,), context=(B, 77, D)) -> eps (B, 4, h, w)``."""

    def __init__(self, unet: nn.Module):
        check_model("SDUNet", unet, "unet")
        super().__init__()
        self.unet = unet

    def forward(self, x_t: Tensor, t: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        check_sd_unet_inputs(self.unet, x_t, context)  # shapes only: no host sync in the sampling loop
        # SD 1.x attends to all 77 positions, padding included (it was trained that way): no mask by default.
        out = self.unet(x_t, t, encoder_hidden_states=context, encoder_attention_mask=context_mask, return_dict=False)
        return out[0]


@torch.no_grad()
def encode_prompt(components: SDComponents, prompt: str | Sequence[str]) -> Tensor:
    """Prompts -> CLIP's last hidden states (B, 77, D): tokenised to the tokenizer's 77 positions (start token,
    words, end token, then padding; longer prompts are cut), every position kept, as SD was trained."""
    check_components("encode_prompt", components)
    tokenizer, text_encoder = components.tokenizer, components.text_encoder
    tokens = tokenizer(
        check_prompts("encode_prompt", "prompt", prompt), padding="max_length", max_length=tokenizer.model_max_length,
        truncation=True, return_tensors="pt",
    )
    use_mask = text_encoder.config.to_dict().get("use_attention_mask")  # False for SD's CLIP
    mask = tokens.attention_mask.to(text_encoder.device) if use_mask else None
    return text_encoder(tokens.input_ids.to(text_encoder.device), attention_mask=mask)[0]


@torch.no_grad()
def decode_latents(components: SDComponents, latents: Tensor) -> Tensor:
    """Latents (B, 4, h, w) -> images (B, 3, 8h, 8w) in [-1, 1]: undo the scaling factor, then the VAE's decoder."""
    check_components("decode_latents", components)
    check_latents("decode_latents", components, latents)
    vae = components.vae
    images = vae.decode(latents.to(vae.dtype) / components.scaling_factor, return_dict=False)[0]
    return images.float().clamp(-1, 1)


@torch.no_grad()
def encode_images(components: SDComponents, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Images (B, 3, H, W) in [-1, 1] -> latents (B, 4, H/8, W/8): a sample of the VAE's posterior
    z = mean + std * eps (the reparameterisation of notebook 05), times the scaling factor.
    eps is drawn from ``generator`` on its own device, as diffusers does."""
    check_components("encode_images", components)
    check_sd_images("encode_images", "images", images, components)  # (B, 3, H, W) in [-1, 1], H and W multiples of 8
    check_generator("encode_images", "generator", generator)
    vae = components.vae
    posterior = vae.encode(images.to(vae.device, vae.dtype)).latent_dist
    eps = _randn(posterior.mean.shape, generator, posterior.mean)
    return (posterior.mean + posterior.std * eps) * components.scaling_factor


def _randn(shape: Sequence[int], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """N(0, I) drawn on the generator's device (the same numbers on any GPU) and moved to ``like``'s."""
    device = generator.device if generator is not None else like.device
    return torch.randn(tuple(shape), generator=generator, device=device, dtype=like.dtype).to(like.device)


def _precision(components: SDComponents) -> Precision | None:
    """Autocast to the U-Net's dtype when it is half precision (our latents stay float32 between steps)."""
    dtype = components.unet.dtype
    return None if dtype == torch.float32 else Precision(components.device.type, dtype, False, "the U-Net's dtype")


def _guided(components: SDComponents, prompts: list[str], negatives: list[str], scale: float):
    """The guided denoiser: uncond/negative and prompt embeddings, one forward of 2B per step."""
    context, uncond = encode_prompt(components, prompts), encode_prompt(components, negatives)
    return guided_denoiser(SDUNet(components.unet), context, uncond, scale)


def text_to_image(
    components: SDComponents,
    prompt: str | Sequence[str],
    negative_prompt: str | Sequence[str] = "",
    *,
    guidance_scale: float = 7.5,
    num_steps: int = 50,
    height: int | None = None,
    width: int | None = None,
    eta: float = 0.0,
    latents: Tensor | None = None,
    generator: torch.Generator | None = None,
    fast: bool = False,
    progress: bool = True,
    output: str = "image",
) -> Tensor:
    """Prompts -> images (B, 3, H, W) in [-1, 1] (or the final latents, output="latent").

    guidance_scale: s of notebook 06 (diffusers' convention; 1 = no guidance). The empty prompt, or
    ``negative_prompt``, is the unconditional side. height, width: multiples of 8 (default: the U-Net's
    sample_size x 8, 512 for SD 1.5; or the size ``latents`` implies). latents: the starting noise x_T
    (B, 4, H/8, W/8); default drawn from ``generator``. fast: replay a CUDA graph of the guided U-Net call (on a GPU).
    """
    prompts, negatives = check_text_to_image(components, prompt, negative_prompt, guidance_scale, num_steps, height,
                                             width, eta, latents, generator, fast, progress, output)  # fmt: skip
    f = components.vae_scale_factor
    default = latents.shape[-2:] if latents is not None else (components.unet.config.sample_size,) * 2
    height, width = height or default[0] * f, width or default[1] * f
    shape = (len(prompts), components.unet.config.in_channels, height // f, width // f)
    if latents is None:
        latents = _randn(shape, generator, torch.empty(0, device=components.device))
    z0 = ddim_sample(
        _guided(components, prompts, negatives, guidance_scale), components.schedule(), latents,
        num_steps=num_steps, eta=eta, generator=generator, precision=_precision(components), fast=fast,
        progress=progress, **components.sampler_settings(),
    )
    return z0 if output == "latent" else decode_latents(components, z0)


def img2img_start(num_steps: int, strength: float) -> int:
    """How many of the num_steps timesteps img2img skips: strength 1 skips none (pure noise, the image forgotten),
    strength 0.3 keeps the last 30% of the steps (the image mostly kept). As diffusers counts it."""
    check_strength(num_steps, strength)
    kept = min(int(num_steps * strength), num_steps)
    if kept == 0:
        raise ValueError(f"strength={strength} with {num_steps} steps runs int({num_steps} * {strength}) = 0 steps; "
                         "raise strength or num_steps.")
    return num_steps - kept


def img2img(
    components: SDComponents,
    image: Tensor,
    prompt: str | Sequence[str],
    negative_prompt: str | Sequence[str] = "",
    *,
    strength: float = 0.8,
    guidance_scale: float = 7.5,
    num_steps: int = 50,
    generator: torch.Generator | None = None,
    fast: bool = False,
    progress: bool = True,
) -> Tensor:
    """An image (B, 3, H, W) in [-1, 1] and prompts -> new images (B, 3, H, W) in [-1, 1] (SDEdit).

    The image is encoded, noised by q(x_t | x_0) to the timestep ``img2img_start`` picks from strength, and the
    guided DDIM loop runs the remaining steps from there. One generator draws the VAE sample, then the noise.
    """
    prompts, negatives = check_img2img(components, image, prompt, negative_prompt, strength, guidance_scale,
                                       num_steps, generator, fast, progress)  # fmt: skip
    settings = components.sampler_settings()
    start = img2img_start(num_steps, strength)
    schedule = components.schedule().to(components.device)
    ts = timesteps(num_steps, schedule.num_timesteps, settings["timestep_spacing"], settings["steps_offset"])
    t_start = int(ts[start])
    z0 = encode_images(components, image, generator).float()
    eps = _randn(z0.shape, generator, z0)
    x_t = schedule.q_sample(z0, t_start, eps, check=False)  # Ho et al. 2020, Eq. (4): the latents, noised to t_start
    z = ddim_sample(
        _guided(components, prompts, negatives, guidance_scale), schedule, x_t, num_steps=num_steps,
        start_step=start, generator=generator, precision=_precision(components), fast=fast, progress=progress,
        **settings,
    )
    return decode_latents(components, z)
