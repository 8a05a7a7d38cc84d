"""Input checks of UNet.forward and of VAE.encode / VAE.decode, kept apart so that dlcourse/models/unet.py and
dlcourse/models/vae.py read as the networks alone.

Each error says what was passed, what the model was built for, and how to fix it (build another config, resize
the images, pass or drop a context).
"""

from __future__ import annotations

import torch
from torch import Tensor

from dlcourse.models.config import UNetConfig
from dlcourse.models.vae_config import VAEConfig

__all__ = ["check_unet_inputs", "check_vae_images", "check_vae_latents"]


def check_unet_inputs(
    cfg: UNetConfig, x: Tensor, t: Tensor | float, context: Tensor | None, context_mask: Tensor | None
) -> Tensor:
    """Check UNet.forward's inputs against the config; return t as a (B,) tensor on x's device.

    x: (B, in_channels, R, R); t: (B,) or one number; context: (B, L, context_dim) or None; context_mask:
    (B, L) bool or None. Shapes only: pure Python on sizes, no host sync, so the forward stays CUDA-graph safe.
    """
    r = cfg.resolution
    if x.ndim != 4 or x.shape[1] != cfg.in_channels or x.shape[2] != r or x.shape[3] != r:
        hint = ""
        if x.ndim == 4 and x.shape[1] != cfg.in_channels:
            hint += (
                f" The model was built with in_channels={cfg.in_channels}; build it with "
                f"UNetConfig(in_channels={x.shape[1]}) for these images (1 for grayscale, 3 for RGB)."
            )
        if x.ndim == 4 and tuple(x.shape[2:]) != (r, r):
            factor = 2 ** (len(cfg.channel_mults) - 1)
            hint += f" The model was built for {r}x{r} images (UNetConfig.resolution={r})."
            if x.shape[2] == x.shape[3] and x.shape[2] % factor == 0:
                sizes = [x.shape[2] // 2**i for i in range(len(cfg.channel_mults))]
                hint += (
                    f" Build it with UNetConfig(resolution={x.shape[2]}) for these images (its feature "
                    f"maps would be {sizes} wide: pick attention_resolutions among those)."
                )
            else:
                hint += (
                    f" Its {len(cfg.channel_mults)} levels need square images whose side is divisible by "
                    f"{factor}; resize or pad the images (e.g. to {r}x{r})."
                )
        raise ValueError(
            f"UNet expected x of shape (B, {cfg.in_channels}, {r}, {r}), got {tuple(x.shape)}.{hint}"
        )
    batch = x.shape[0]
    t = torch.as_tensor(t, device=x.device)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(
            f"t must have shape (B,) = ({batch},), one timestep per image, or be a single number; "
            f"got shape {tuple(t.shape)}."
        )
    if cfg.context_dim is None and context is not None:
        raise ValueError(
            "This UNet has no cross-attention (UNetConfig.context_dim=None), so it cannot use a context. "
            "Call it without context, or build it with UNetConfig(context_dim=D) for a (B, L, D) context."
        )
    if cfg.context_dim is not None:
        if context is None:
            raise ValueError(
                f"This UNet is conditional (UNetConfig.context_dim={cfg.context_dim}) and needs a "
                f"context (B, L, {cfg.context_dim}). For the unconditional branch of classifier-free "
                f"guidance pass the embedding of the empty prompt, not None."
            )
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != cfg.context_dim:
            raise ValueError(
                f"context must have shape (B, L, context_dim) = ({batch}, L, {cfg.context_dim}); "
                f"got {tuple(context.shape)}."
            )
    if context_mask is not None and (context is None or context_mask.shape != context.shape[:2]):
        raise ValueError(
            f"context_mask must be a (B, L) bool tensor matching the context (True = real token); got "
            f"{tuple(context_mask.shape)} for context "
            f"{None if context is None else tuple(context.shape)}."
        )
    return t


def check_vae_images(x: Tensor, cfg: VAEConfig) -> None:
    """VAE.encode takes images (B, in_channels, resolution, resolution); latents given instead are named as such."""
    expected = (cfg.in_channels, cfg.resolution, cfg.resolution)
    if x.ndim == 4 and tuple(x.shape[1:]) == expected:
        return
    hint = ""
    if x.ndim == 4 and tuple(x.shape[1:]) == cfg.latent_shape:
        hint = " These look like latents (the shape encode() returns): pass them to decode(), not encode()."
    elif x.ndim == 4 and x.shape[1] == cfg.in_channels:
        hint = f" The VAE was built for {cfg.resolution}x{cfg.resolution} images (VAEConfig.resolution); resize them."
    raise ValueError(f"VAE.encode expected images (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}.{hint}")


def check_vae_latents(z: Tensor, cfg: VAEConfig) -> None:
    """VAE.decode takes latents (B, c, h, w) of cfg.latent_shape; images given instead are named as such."""
    expected = cfg.latent_shape
    if z.ndim == 4 and tuple(z.shape[1:]) == expected:
        return
    hint = ""
    if z.ndim == 4 and tuple(z.shape[1:]) == (cfg.in_channels, cfg.resolution, cfg.resolution):
        hint = " These look like images: encode them first (vae.encode(x).mean), then decode the latents."
    elif z.ndim == 4 and z.shape[1] != cfg.latent_channels:
        hint = (
            f" The VAE has latent_channels={cfg.latent_channels}, so latents from another autoencoder (or with "
            "channels dropped) cannot be decoded by it."
        )
    raise ValueError(
        f"VAE.decode expected latents (B, {', '.join(map(str, expected))}) (f = {cfg.downsampling_factor}), "
        f"got {tuple(z.shape)}.{hint}"
    )
