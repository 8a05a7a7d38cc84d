"""Sinusoidal timestep embeddings: how the U-Net is told which noise level it is looking at.

Taught in notebooks/02_unet.ipynb, "Telling the network the time step" (the embedding written out and checked
against timestep_embedding).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["TimestepMLP", "timestep_embedding"]


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000) -> Tensor:
    """Sinusoidal embedding of timesteps (Vaswani et al. 2017, Sec. 3.5; used for t by Ho et al. 2020).

    t: (B,) long or float (fractional timesteps are fine). Returns (B, dim) float32:
    [cos(t * w_0), ..., cos(t * w_{h-1}), sin(t * w_0), ..., sin(t * w_{h-1})] with h = dim // 2 and
    frequencies w_i = max_period ** (-i / h), from 1 down to almost 1 / max_period; an odd dim gets one zero
    column at the end. This is openai/improved-diffusion's layout, i.e. diffusers'
    ``get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)`` (Stable Diffusion's).
    """
    if t.ndim != 1:
        raise ValueError(f"t must be a 1-D tensor (B,) of timesteps, got shape {tuple(t.shape)}.")
    if dim < 2:
        raise ValueError(f"dim must be at least 2 (one cosine and one sine), got {dim}.")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # Vaswani et al. 2017, Sec. 3.5
    if dim % 2 == 1:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


class TimestepMLP(nn.Module):
    """t (B,) -> sinusoidal embedding (B, embedding_dim) -> Linear -> SiLU -> Linear -> (B, out_dim).

    The U-Net uses embedding_dim = base_channels and out_dim = 4 * base_channels (as DDPM / ADM do); every
    ResBlock then projects this vector to its own channel count.
    """

    def __init__(self, embedding_dim: int, out_dim: int, max_period: float = 10_000):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.max_period = max_period
        self.mlp = nn.Sequential(nn.Linear(embedding_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, t: Tensor) -> Tensor:
        """t: (B,) long or float. Returns (B, out_dim)."""
        return self.mlp(timestep_embedding(t, self.embedding_dim, self.max_period))
