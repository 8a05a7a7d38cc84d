"""The building blocks of the U-Net: residual blocks with time injection, attention, down/up-sampling.

Taught in notebooks/02_unet.ipynb: "A residual block that knows the time" (ResBlock.forward written on the
page with a block's own weights and checked equal to it), "Self-attention over pixels", "Cross-attention:
looking at something else" (built and shape-checked there; written out and trained in
notebooks/06_classifier_free_guidance.ipynb, "Cross-attention, written out") and "Changing resolution".

Layout as in DDPM / ADM (Ho et al. 2020, App. B; Dhariwal & Nichol 2021): GroupNorm before every conv and
attention ("pre-norm"), SiLU activations, a residual connection around every block. Attention runs on the
(B, H*W, C) tokens of a feature map through F.scaled_dot_product_attention (the fused kernel on a GPU).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CrossAttention", "Downsample", "ResBlock", "SelfAttention", "Upsample"]


def _check_heads(channels: int, num_heads: int) -> None:
    if num_heads < 1 or channels % num_heads != 0:
        raise ValueError(
            f"channels={channels} must be divisible by num_heads={num_heads} (each head gets "
            f"channels // num_heads dimensions). Pick num_heads among the divisors of {channels}, "
            "e.g. 1, 2 or 4."
        )


def _multi_head_attention(
    q: Tensor, k: Tensor, v: Tensor, num_heads: int, mask: Tensor | None = None
) -> Tensor:
    """softmax(q k^T / sqrt(d)) v per head (Vaswani et al. 2017, Eq. (1) and Sec. 3.2.2).

    q: (B, N, C); k, v: (B, L, C); mask: (B, L) bool, True = attend to that key (None: attend to all).
    Returns (B, N, C).
    """
    q, k, v = (z.unflatten(-1, (num_heads, -1)).transpose(1, 2) for z in (q, k, v))  # (B, heads, N or L, d)
    attn_mask = (
        None if mask is None else mask[:, None, None, :]
    )  # (B, 1, 1, L), broadcast over heads and queries
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # Vaswani et al. 2017, Eq. (1)
    return out.transpose(1, 2).flatten(2)  # (B, N, C)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv, + time embedding, GroupNorm-SiLU-Dropout-Conv, + skip (a 1x1 conv if needed).

    x: (B, in_channels, H, W), temb: (B, temb_dim) -> (B, out_channels, H, W). The time embedding is added
    per channel after the first conv (Ho et al. 2020, App. B; the "ResnetBlock" of their code). With
    ``temb_dim=None`` the block has no time input (the VAE's blocks, :mod:`dlcourse.models.vae`).
    """

    def __init__(
        self, in_channels: int, out_channels: int, temb_dim: int | None, dropout: float = 0.0, groups: int = 8
    ):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.temb_proj = None if temb_dim is None else nn.Linear(temb_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.temb_proj is not None:
            h = h + self.temb_proj(F.silu(temb))[:, :, None, None]  # time injection: one shift per channel
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over the H*W positions of a feature map, with a residual connection.

    x: (B, C, H, W) -> (B, C, H, W). Cost grows with (H*W)^2, which is why the U-Net only attends at low
    resolutions (``UNetConfig.attention_resolutions``).
    """

    def __init__(self, channels: int, num_heads: int = 4, groups: int = 8):
        super().__init__()
        _check_heads(channels, num_heads)
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        q, k, v = self.qkv(tokens).chunk(3, dim=-1)
        out = self.proj_out(_multi_head_attention(q, k, v, self.num_heads))
        return x + out.transpose(1, 2).reshape(x.shape)


class CrossAttention(nn.Module):
    """Queries from the feature map, keys and values from a context sequence (e.g. text token embeddings).

    x: (B, C, H, W), context: (B, L, context_dim), context_mask: (B, L) bool or None (True = a real token,
    False = padding to ignore; every row needs at least one True) -> (B, C, H, W). This is how Stable
    Diffusion conditions on text (Rombach et al. 2022, Sec. 3.3).
    """

    def __init__(self, channels: int, context_dim: int, num_heads: int = 4, groups: int = 8):
        super().__init__()
        _check_heads(channels, num_heads)
        self.num_heads = num_heads
        self.context_dim = context_dim
        self.norm = nn.GroupNorm(groups, channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_kv = nn.Linear(context_dim, 2 * channels)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: Tensor, context: Tensor, context_mask: Tensor | None = None) -> Tensor:
        batch = x.shape[0]
        if context.ndim != 3 or context.shape[0] != batch or context.shape[2] != self.context_dim:
            raise ValueError(
                f"context must have shape (B, L, context_dim) = ({batch}, L, {self.context_dim}); "
                f"got {tuple(context.shape)}."
            )
        if context_mask is not None and context_mask.shape != context.shape[:2]:
            raise ValueError(
                f"context_mask must have shape (B, L) = {tuple(context.shape[:2])} (True = real token), "
                f"got {tuple(context_mask.shape)}."
            )
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, H*W, C)
        k, v = self.to_kv(context).chunk(2, dim=-1)  # (B, L, C) each
        out = self.proj_out(_multi_head_attention(self.to_q(tokens), k, v, self.num_heads, context_mask))
        return x + out.transpose(1, 2).reshape(x.shape)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 conv. x: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour x2, then a 3x3 conv. x: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
