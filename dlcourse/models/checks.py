"""Input checks of UNet.forward, of the VAE (its config, encode, decode, its loss) and of the latent space, kept apart
so that dlcourse/models/unet.py, vae.py and dlcourse/latent.py read as the networks alone (the tokenizer's and text
encoder's are in text_checks.py).

Each error says what was passed, what the model was built for, and how to fix it (build another config, resize
the images, pass or drop a context).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from dlcourse.argument_checks import (
    check_instance,
    check_int,
    check_number,
    check_on_device,
    check_tensor,
    describe,
)
from dlcourse.schedules.checks import RANGE_TOLERANCE

if TYPE_CHECKING:
    from dlcourse.models.config import UNetConfig
    from dlcourse.models.vae_config import VAEConfig

__all__ = [
    "check_channel_mults",
    "check_diagonal_gaussian",
    "check_encode_dataset",
    "check_latent_space",
    "check_latent_std",
    "check_latents_for_scaling",
    "check_unet_inputs",
    "check_vae_config",
    "check_vae_images",
    "check_vae_latents",
    "check_vae_loss",
    "check_vae_loss_call",
]


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


def check_vae_config(cfg: VAEConfig) -> None:
    """VAEConfig's fields: positive integers, levels that divide the resolution, GroupNorm groups that divide them."""
    for name in ("in_channels", "resolution", "latent_channels", "base_channels", "num_res_blocks", "groups"):
        value = getattr(cfg, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"VAEConfig.{name} must be a positive integer, got {value!r}.")
    mults = cfg.channel_mults
    if not mults or any(not isinstance(m, int) or isinstance(m, bool) or m < 1 for m in mults):
        raise ValueError(
            f"VAEConfig.channel_mults must be a non-empty tuple of positive integers (one per level), "
            f"got {mults!r}: (1, 2, 2) for f = 4, (1, 2, 4, 4) for f = 8."
        )
    if not isinstance(cfg.mid_attention, bool):
        raise ValueError(f"VAEConfig.mid_attention must be True or False, got {cfg.mid_attention!r}.")
    f = cfg.downsampling_factor
    if cfg.resolution % f != 0:
        raise ValueError(
            f"resolution={cfg.resolution} is not divisible by the downsampling factor f={f} of channel_mults "
            f"{mults}: use a resolution that is a multiple of {f}, or fewer levels."
        )
    bad = sorted({c for c in cfg.level_channels if c % cfg.groups})
    if bad:
        raise ValueError(
            f"GroupNorm needs channels divisible by groups={cfg.groups}, but the levels have {bad} channels. "
            f"Use a base_channels that is a multiple of {cfg.groups}."
        )


def check_channel_mults(channel_mults: Any) -> None:
    """VAEConfig.channel_mults before it becomes a tuple: a list or tuple (JSON gives lists)."""
    if not isinstance(channel_mults, tuple | list):
        raise ValueError(
            f"VAEConfig.channel_mults must be a tuple of positive integers (one per level), got "
            f"{channel_mults!r}: (1, 2, 2) for f = 4, (1, 2, 4, 4) for f = 8."
        )


def check_vae_images(x: Tensor, cfg: VAEConfig, device: torch.device, check_range: bool) -> None:
    """VAE.encode takes float images (B, in_channels, resolution, resolution) in [-1, 1] on the VAE's device;
    latents given instead are named as such. check_range: also check the values (one host synchronisation)."""
    check_tensor("VAE.encode", "x", x, f"images (B, {cfg.in_channels}, H, W) in [-1, 1]")
    expected = (cfg.in_channels, cfg.resolution, cfg.resolution)
    if not (x.ndim == 4 and tuple(x.shape[1:]) == expected):
        hint = ""
        if x.ndim == 4 and tuple(x.shape[1:]) == cfg.latent_shape:
            hint = " These look like latents (the shape encode() returns): pass them to decode(), not encode()."
        elif x.ndim == 4 and x.shape[1] == cfg.in_channels:
            r = cfg.resolution
            hint = f" The VAE was built for {r}x{r} images (VAEConfig.resolution); resize them."
        raise ValueError(
            f"VAE.encode expected images (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}.{hint}"
        )
    if not x.is_floating_point():
        raise ValueError(
            f"VAE.encode: x has dtype {x.dtype}, but the VAE takes float images in [-1, 1]. For uint8 pixels in "
            "[0, 255] pass dlcourse.data.to_model_range(x.float() / 255)."
        )
    check_on_device("VAE.encode", "x", x, device, "the VAE's weights are")
    if check_range and x.numel():
        lo, hi = torch.stack(torch.aminmax(x.detach())).float().tolist()  # one host synchronisation
        if not (lo >= -1 - RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE):  # written so NaN fails too
            raise ValueError(
                f"VAE.encode: x has values in [{lo:.4g}, {hi:.4g}], but the VAE takes images in [-1, 1]. Images in "
                "[0, 1]: dlcourse.data.to_model_range(x); in [0, 255]: dlcourse.data.to_model_range(x / 255). "
                "encode(x, check=False) skips this test (it synchronises with the device), e.g. in a training step."
            )


def check_vae_latents(z: Tensor, cfg: VAEConfig, device: torch.device) -> None:
    """VAE.decode takes float latents (B, c, h, w) of cfg.latent_shape on the VAE's device; images given instead
    are named as such. Metadata only: no host synchronisation (latents have no fixed range to check)."""
    check_tensor("VAE.decode", "z", z, f"latents (B, {', '.join(map(str, cfg.latent_shape))})")
    expected = cfg.latent_shape
    if not (z.ndim == 4 and tuple(z.shape[1:]) == expected):
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
    if not z.is_floating_point():
        raise ValueError(f"VAE.decode: z must be float latents, got dtype {z.dtype}.")
    check_on_device("VAE.decode", "z", z, device, "the VAE's weights are")


def check_diagonal_gaussian(mean: Any, logvar: Any) -> None:
    """DiagonalGaussian(mean, logvar): two float tensors of one shape (B, c, h, w)."""
    check_tensor("DiagonalGaussian", "mean", mean, "the posterior mean (B, c, h, w)", floating=True)
    check_tensor("DiagonalGaussian", "logvar", logvar, "the posterior log-variance (B, c, h, w)", floating=True)
    if mean.shape != logvar.shape or mean.device != logvar.device:
        raise ValueError(
            f"DiagonalGaussian: mean and logvar must have the same shape and device (one variance per latent "
            f"value); got mean {describe(mean)} and logvar {describe(logvar)}."
        )


def check_vae_loss(kl_weight: Any, reconstruction: Any) -> None:
    """VAELoss(kl_weight, reconstruction)."""
    check_number("VAELoss", "kl_weight", kl_weight, 0, fix="LDM uses 1e-6; 0 trains a plain autoencoder.")
    if reconstruction not in ("l1", "mse"):
        raise ValueError(f"VAELoss.reconstruction must be 'l1' or 'mse', got {reconstruction!r}.")


def check_vae_loss_call(model: Any, model_kwargs: Mapping[str, Any] | None) -> None:
    """VAELoss()(model, x0, ...): the model is the VAE (perhaps DDP-wrapped); no conditions, which it would ignore.
    Pure Python: it runs in every training step."""
    if not callable(model):
        raise TypeError(f"VAELoss: model must be the VAE being trained, got {describe(model)}.")
    if model_kwargs:
        raise ValueError(
            f"VAELoss trains an autoencoder, which takes no conditions, but the batch has {sorted(model_kwargs)}: "
            "pass train() the images as a tensor (N, C, H, W), not a mapping with conditions."
        )


def check_latent_space(vae: Any, scaling_factor: Any, vae_type: type) -> None:
    """LatentSpace(vae, scaling_factor): a VAE and a finite factor > 0 (1 / std of its latents)."""
    check_instance("LatentSpace", "vae", vae, vae_type, "a VAE", "Load one with dlcourse.pretrained.shapes_vae().vae.")
    check_number(
        "LatentSpace", "scaling_factor", scaling_factor, 0, above=True,
        fix="It is 1 / std of the VAE's latents: measure it with LatentSpace.fit(vae, images) or "
        "measure_scaling_factor(latents) (Stable Diffusion's is 0.18215); 1.0 leaves the latents unscaled.",
    )


def check_latents_for_scaling(latents: Any) -> None:
    """measure_scaling_factor's latents: float (N >= 2, c, h, w)."""
    check_tensor("measure_scaling_factor", "latents", latents, "unscaled latents (N, c, h, w)", floating=True,
                 fix="Encode them with encode_dataset(LatentSpace(vae, 1.0), images).")  # fmt: skip
    if latents.ndim != 4 or latents.shape[0] < 2:
        raise ValueError(f"measure_scaling_factor needs latents (N >= 2, c, h, w), got {tuple(latents.shape)}.")


def check_latent_std(std: float) -> None:
    if not std > 0 or std == float("inf"):  # NaN fails too
        raise ValueError(f"the latents' std is {std}: cannot scale them to unit variance (a collapsed or broken VAE?).")


def check_encode_dataset(space: Any, images: Any, batch_size: Any, space_type: type) -> None:
    """encode_dataset(space, images, batch_size) and LatentSpace.fit's images and batch_size."""
    caller = "encode_dataset"
    check_instance(caller, "space", space, space_type, "a LatentSpace", "Build one: LatentSpace(vae, scaling_factor).")
    check_tensor(caller, "images", images, "images (N, C, H, W) in [-1, 1]", ndim=4, floating=True)
    if images.shape[0] == 0:
        raise ValueError(f"{caller}: images is empty (N = 0): pass at least one image (N, C, H, W).")
    check_int(caller, "batch_size", batch_size, 1, fix="256 fits a small VAE on any device.")
