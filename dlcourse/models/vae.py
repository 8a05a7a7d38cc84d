"""A KL-regularised convolutional autoencoder: the "first stage" of latent diffusion (Rombach et al. 2022, Sec. 3).

    encoder:  x (B, C, H, W)  ->  mean, log-variance (B, c, H/f, W/f)     q(z | x) = N(mean, diag(exp(logvar)))
    sample:   z = mean + exp(logvar / 2) * eps,  eps ~ N(0, I)             the reparameterisation trick
    decoder:  z (B, c, H/f, W/f)  ->  x_hat (B, C, H, W)

f = 2 ** (len(channel_mults) - 1) is the downsampling factor (Stable Diffusion: f = 8, c = 4, so a 512x512x3
image becomes a 64x64x4 latent, 48x fewer numbers). The KL term to N(0, I) is weighted very lightly (LDM uses
1e-6), so the latent keeps the detail the decoder needs and diffusion models it instead. The blocks are the
U-Net's ResBlocks without a time input, GroupNorm-SiLU everywhere, one self-attention in the middle.

The training loss, :class:`VAELoss`, plugs into :func:`dlcourse.training.train` as its ``loss_fn``.

Taught in notebooks/05_latent_diffusion.ipynb, sections "The autoencoder" and "Training it".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlcourse.argument_checks import check_generator_on, check_instance
from dlcourse.models.blocks import Downsample, ResBlock, SelfAttention, Upsample
from dlcourse.models.checks import (
    check_diagonal_gaussian,
    check_vae_images,
    check_vae_latents,
    check_vae_loss,
    check_vae_loss_call,
)
from dlcourse.models.vae_config import VAEConfig

__all__ = ["VAE", "DiagonalGaussian", "VAELoss"]

_LOGVAR_RANGE = (-30.0, 20.0)  # clamped as in LDM, so exp(logvar) neither underflows nor overflows


@dataclass
class DiagonalGaussian:
    """q(z | x) = N(mean, diag(exp(logvar))); mean, logvar: (B, c, h, w)."""

    mean: Tensor
    logvar: Tensor

    def __post_init__(self) -> None:
        check_diagonal_gaussian(self.mean, self.logvar)

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """z = mean + std * eps (Kingma & Welling 2014, Sec. 2.4): differentiable in mean and logvar."""
        check_generator_on("DiagonalGaussian.sample", "generator", generator, self.mean.device)
        eps = torch.randn(self.mean.shape, device=self.mean.device, dtype=self.mean.dtype, generator=generator)
        return self.mean + self.std * eps

    def kl(self) -> Tensor:
        """KL(q(z | x) || N(0, I)) per example, (B,): 0.5 * sum(mean^2 + var - 1 - logvar) (Kingma & Welling,
        App. B); exactly 0 when mean = 0 and logvar = 0, positive otherwise."""
        return 0.5 * (self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(dim=1)


class _Stage(nn.Module):
    """ResBlocks (then an optional resampler) at one resolution."""

    def __init__(self, in_channels: int, out_channels: int, num_blocks: int, groups: int, resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(
            ResBlock(in_channels if i == 0 else out_channels, out_channels, None, groups=groups)
            for i in range(num_blocks)
        )
        self.resample = resample

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.resample is None else self.resample(x)


class _Middle(nn.Module):
    """ResBlock, self-attention (optional), ResBlock: global context at the lowest resolution."""

    def __init__(self, channels: int, attention: bool, groups: int):
        super().__init__()
        self.block1 = ResBlock(channels, channels, None, groups=groups)
        self.attention = SelfAttention(channels, num_heads=1, groups=groups) if attention else nn.Identity()
        self.block2 = ResBlock(channels, channels, None, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.block2(self.attention(self.block1(x)))


class VAE(nn.Module):
    """The autoencoder: :meth:`encode` gives q(z | x), :meth:`decode` maps z back to an image.

    Images (B, in_channels, resolution, resolution) in [-1, 1]; latents (B, latent_channels, r / f, r / f).
    Both methods check their input and say what was expected (images given where latents are expected, or the
    reverse, raise a ValueError naming both shapes).
    """

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        check_instance("VAE", "config", config, (VAEConfig, type(None)), "a VAEConfig or None", "VAEConfig(...)")
        self.config = config = config or VAEConfig()
        chans = config.level_channels
        levels = len(chans)
        # Encoder: conv_in, one stage per level (halving after every level but the last), middle, to 2c channels.
        self.conv_in = nn.Conv2d(config.in_channels, chans[0], 3, padding=1)
        self.down = nn.ModuleList(
            _Stage(chans[max(i - 1, 0)], chans[i], config.num_res_blocks, config.groups,
                   Downsample(chans[i]) if i < levels - 1 else None)
            for i in range(levels)
        )
        self.mid_enc = _Middle(chans[-1], config.mid_attention, config.groups)
        self.norm_enc = nn.GroupNorm(config.groups, chans[-1])
        self.conv_moments = nn.Conv2d(chans[-1], 2 * config.latent_channels, 3, padding=1)  # mean and logvar
        # Decoder: the mirror image, one more ResBlock per level (as in LDM), doubling after every level but the last.
        self.conv_z = nn.Conv2d(config.latent_channels, chans[-1], 3, padding=1)
        self.mid_dec = _Middle(chans[-1], config.mid_attention, config.groups)
        self.up = nn.ModuleList(
            _Stage(chans[min(i + 1, levels - 1)], chans[i], config.num_res_blocks + 1, config.groups,
                   Upsample(chans[i]) if i > 0 else None)
            for i in reversed(range(levels))
        )
        self.norm_dec = nn.GroupNorm(config.groups, chans[0])
        self.conv_out = nn.Conv2d(chans[0], config.in_channels, 3, padding=1)

    def encode(self, x: Tensor, *, check: bool = True) -> DiagonalGaussian:
        """q(z | x) for images x (B, C, H, W) in [-1, 1]: a :class:`DiagonalGaussian` over (B, c, H/f, W/f).

        check: also check that x is in [-1, 1] (one host synchronisation); pass False in a training step.
        """
        check_vae_images(x, self.config, self.conv_in.weight.device, check_range=check)
        h = self.conv_in(x)
        for stage in self.down:
            h = stage(h)
        h = self.conv_moments(F.silu(self.norm_enc(self.mid_enc(h))))
        mean, logvar = h.chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar.clamp(*_LOGVAR_RANGE))

    def decode(self, z: Tensor) -> Tensor:
        """Images (B, C, H, W) (about [-1, 1], not clamped) from latents z (B, c, H/f, W/f)."""
        check_vae_latents(z, self.config, self.conv_z.weight.device)
        h = self.mid_dec(self.conv_z(z))
        for stage in self.up:
            h = stage(h)
        return self.conv_out(F.silu(self.norm_dec(h)))

    def forward(
        self, x: Tensor, generator: torch.Generator | None = None, *, check: bool = True
    ) -> tuple[Tensor, DiagonalGaussian]:
        """Encode, sample z, decode: (x_hat (B, C, H, W), q(z | x)); check: as in :meth:`encode`."""
        posterior = self.encode(x, check=check)
        return self.decode(posterior.sample(generator)), posterior


@dataclass
class VAELoss:
    """The VAE's training loss, usable as :func:`~dlcourse.training.train`'s ``loss_fn``.

    loss = mean |x - x_hat| (or the MSE) + kl_weight * KL(q(z | x) || N(0, I)) / (C * H * W)

    This is LDM's objective (reconstruction summed over pixels + kl_weight * KL, both per image; kl_weight
    1e-6) divided by the number of pixel values C * H * W, so the reconstruction reads as a per-pixel error;
    Adam's steps do not change under this rescaling. (LDM adds a perceptual loss and a patch discriminator
    for sharp 256-px photos; on flat-coloured Shapes the pixel loss alone reaches the PSNR the course needs.)
    reconstruction: "l1" (LDM's choice; sharper edges) or "mse".
    """

    kl_weight: float = 1e-6
    reconstruction: str = "l1"

    def __post_init__(self) -> None:
        check_vae_loss(self.kl_weight, self.reconstruction)

    def __call__(
        self,
        model: VAE,
        x0: Tensor,
        schedule: Any = None,
        prediction_type: Any = None,
        *,
        generator: torch.Generator | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> Tensor:
        """The loss of a batch x0 (B, C, H, W); ``schedule`` and ``prediction_type`` (train()'s) are unused.

        x0's range is not checked here (train() checks the data once, before the first step).
        """
        check_vae_loss_call(model, model_kwargs)
        x_hat, posterior = model(x0, generator=generator, check=False)
        error = F.l1_loss if self.reconstruction == "l1" else F.mse_loss
        reconstruction = error(x_hat.float(), x0.float())  # mean over B * C * H * W values
        kl = DiagonalGaussian(posterior.mean.float(), posterior.logvar.float()).kl().mean() / x0[0].numel()
        return reconstruction + self.kl_weight * kl
