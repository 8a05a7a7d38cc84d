"""Latent space: images in and out through a trained VAE, latents scaled to unit variance, cached once.

Latent diffusion (Rombach et al. 2022) trains and samples the same DDPM, on z = scale * E(x) instead of x:

    z0 = scaling_factor * z,  z ~ q(z | x0)     encode: a sample of the posterior (once per image: encode_dataset)
    ... diffusion on z0, exactly as on images (no clipping: latents have no fixed range) ...
    x0 = D(z0 / scaling_factor)                 decode the sample

The forward process assumes data of about unit variance: x_T = sqrt(alpha_bar_T) z0 + sqrt(1 - alpha_bar_T) eps
is "pure noise" only if z0 is small next to eps, and the schedule's SNR, alpha_bar / (1 - alpha_bar), is the
signal-to-noise ratio only when Var(z0) = 1. A VAE's latents have whatever spread training gave them, so LDM
divides by their standard deviation, measured on data: scaling_factor = 1 / std(z). Stable Diffusion's 0.18215
was measured that way (its latents have std about 5.5).

The encoding is a sample of q(z | x), not its mean, as LDM does (its get_first_stage_encoding returns
posterior.sample(), and scale_by_std measures the factor on those samples), as diffusers' training scripts do
(latent_dist.sample()) and as :func:`dlcourse.sd.encode_images` does for Stable Diffusion: the decoder was
trained on samples, and the factor is measured on what the diffusion model is trained on.
What the choice changes here, measured on the cpu-mode VAE over 5000 Shapes images: the posterior's sigma averages
0.05 against latents of std 1.40, so samples move the factor by 0.13% (0.7193 from samples, 0.7202 from the means);
notebook 05's scaled latent model under Stable Diffusion's schedule (300 steps, seed 0, n = 200) scored FID 55.1
trained on samples and 53.6 trained on the means.

Taught in notebooks/05_latent_diffusion.ipynb, sections "The scaling factor" and "Diffusion in latent space".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dlcourse.argument_checks import check_tensor
from dlcourse.models.checks import check_encode_dataset, check_latent_space, check_latent_std, check_latents_for_scaling
from dlcourse.models.vae import VAE

__all__ = ["LatentSpace", "encode_dataset", "measure_scaling_factor"]


def measure_scaling_factor(latents: Tensor) -> float:
    """1 / std of unscaled latents (N, c, h, w), over all their values: the factor that gives them unit variance."""
    check_latents_for_scaling(latents)
    std = latents.double().std().item()  # one host sync, once per dataset
    check_latent_std(std)
    return 1.0 / std


@dataclass
class LatentSpace:
    """A trained VAE and the factor that scales its latents to unit variance.

    encode: images (B, C, H, W) in [-1, 1] -> scaled latents (B, c, H/f, W/f), a sample of the posterior
    q(z | x) times the factor (as LDM and Stable Diffusion encode; pass a ``generator`` for the same draw again).
    decode: scaled latents -> images (B, C, H, W), clamped to [-1, 1]. Both run under no_grad; the VAE has no
    dropout or batch norm, so its train/eval mode does not change them.
    """

    vae: VAE
    scaling_factor: float

    def __post_init__(self) -> None:
        check_latent_space(self.vae, self.scaling_factor, VAE)

    @classmethod
    def fit(
        cls, vae: VAE, images: Tensor, batch_size: int = 256, generator: torch.Generator | None = None
    ) -> LatentSpace:
        """Measure the scaling factor on samples of the latents of ``images`` (N, C, H, W) (a few hundred are
        plenty), drawn from ``generator``."""
        return cls(vae, measure_scaling_factor(encode_dataset(cls(vae, 1.0), images, batch_size, generator)))

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of one latent."""
        return self.vae.config.latent_shape

    @torch.no_grad()
    def encode(self, images: Tensor, generator: torch.Generator | None = None, *, check: bool = True) -> Tensor:
        """check: also check that images are in [-1, 1] (one host synchronisation); False in a training step."""
        return self.scaling_factor * self.vae.encode(images, check=check).sample(generator)  # z = mean + std * eps

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        channels = self.vae.config.latent_channels
        check_tensor("LatentSpace.decode", "latents", latents, f"scaled latents (B, {channels}, h, w)")
        return self.vae.decode(latents / self.scaling_factor).clamp(-1.0, 1.0)


def encode_dataset(
    space: LatentSpace, images: Tensor, batch_size: int = 256, generator: torch.Generator | None = None
) -> Tensor:
    """All of ``images`` (N, C, H, W) encoded once, in batches: (N, c, h, w) scaled latents on the VAE's device,
    one posterior sample per image drawn from ``generator`` (on that device).

    Diffusion training then reads latents from this tensor instead of running the encoder on every batch (one
    sample per image, drawn once, as diffusers' SDXL training script caches them; LDM draws a new one every step).
    """
    check_encode_dataset(space, images, batch_size, LatentSpace)
    device = next(space.vae.parameters()).device
    batches = (images[i : i + batch_size].to(device) for i in range(0, len(images), batch_size))
    return torch.cat([space.encode(batch, generator) for batch in batches])
