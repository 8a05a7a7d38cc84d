"""How well an autoencoder reconstructs its input: PSNR, per image.

    PSNR = 10 log10(MAX^2 / MSE)   in dB, with MAX the width of the value range

on images in [-1, 1] (MAX = 2, the same as [0, 1] images with MAX = 1). +6 dB halves the RMS error;
28 dB is an RMS error of about 4% of the range, 40 dB of about 1%.

Taught in notebooks/05_latent_diffusion.ipynb, section "Reconstructions".
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["psnr"]


def psnr(images: Tensor, reconstructions: Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Tensor:
    """PSNR in dB of each reconstruction against its image; images, reconstructions: (B, C, H, W) -> (B,).

    A perfect reconstruction gives inf.
    """
    if images.shape != reconstructions.shape:
        raise ValueError(
            f"psnr compares images with their reconstructions of the same shape; got {tuple(images.shape)} and "
            f"{tuple(reconstructions.shape)} (decode the latents first: vae.decode(z))."
        )
    peak = value_range[1] - value_range[0]
    mse = (images.float() - reconstructions.float()).pow(2).flatten(1).mean(dim=1)
    return 10 * torch.log10(peak**2 / mse)
