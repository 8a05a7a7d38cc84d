"""The denoising U-Net of DDPM / ADM: eps_theta(x_t, t[, context]).

Taught in notebooks/02_unet.ipynb: "The U-Net", "The forward pass, written out" (UNet.forward written on the
page over this module's layers and checked equal to it), "A shape walk-through", "A network that starts at
zero".

Shape walk-through for the default config (resolution 32, base 32, channel_mults (1, 2, 2), one ResBlock per
level, attention at 8x8):

    x (B, 3, 32, 32) -conv_in-> (B, 32, 32, 32)
    down  level 0: ResBlock -> (B, 32, 32, 32), Downsample -> (B, 32, 16, 16)
          level 1: ResBlock -> (B, 64, 16, 16), Downsample -> (B, 64, 8, 8)
          level 2: ResBlock + SelfAttention -> (B, 64, 8, 8)
    mid   ResBlock + SelfAttention, ResBlock -> (B, 64, 8, 8)
    up    level 2: 2 x (concat skip, ResBlock + SelfAttention), Upsample -> (B, 64, 16, 16)
          level 1: 2 x (concat skip, ResBlock), Upsample -> (B, 64, 32, 32)
          level 0: 2 x (concat skip, ResBlock) -> (B, 32, 32, 32)
    out   GroupNorm, SiLU, conv_out -> (B, 3, 32, 32)

Every output on the way down (conv_in, each block, each Downsample) is kept and concatenated, in reverse
order, to the input of a block on the way up, so the up path has num_res_blocks + 1 blocks per level
(Ho et al. 2020, App. B; Dhariwal & Nichol 2021).

Initialisation: with ``zero_init=True`` (the default, as in DDPM and ADM) the output conv, the second conv of
every ResBlock and the output projection of every attention start at zero (weights and biases). So every
ResBlock starts as its skip path alone: the identity where its input and output channels are equal, and its
1x1 conv (randomly initialised, not zero) where they differ, i.e. every block on the way up (its input carries
a concatenated skip) and the first block of a level that widens. Every attention starts as the identity, and
the whole network outputs exactly 0 (the mean of eps) at initialisation, which makes early training stable.
The consequence to know: at initialisation the output does not depend on x, t or context, and only conv_out
receives gradients on the first step; everything moves after one optimiser step. Build with
``zero_init=False`` to inspect the outputs of a freshly built network.

The forward pass checks shapes only (pure Python, no host sync; dlcourse/models/checks.py), so it is safe to
CUDA-graph, and it works with torch.autocast (bf16/fp16) and channels_last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlcourse.models.blocks import CrossAttention, Downsample, ResBlock, SelfAttention, Upsample
from dlcourse.models.checks import check_unet_inputs
from dlcourse.models.config import UNetConfig
from dlcourse.models.embeddings import TimestepMLP

__all__ = ["UNet", "UNetBlock", "count_parameters"]


class UNetBlock(nn.Module):
    """A ResBlock, optionally followed by SelfAttention and then CrossAttention.

    x: (B, in_channels, H, W), temb: (B, temb_dim), context: (B, L, D) or None -> (B, out_channels, H, W).
    """

    def __init__(
        self, in_channels: int, out_channels: int, temb_dim: int, config: UNetConfig, attention: bool
    ):
        super().__init__()
        self.res = ResBlock(in_channels, out_channels, temb_dim, config.dropout, config.groups)
        self.attn = SelfAttention(out_channels, config.num_heads, config.groups) if attention else None
        self.cross_attn = (
            CrossAttention(out_channels, config.context_dim, config.num_heads, config.groups)
            if attention and config.context_dim is not None
            else None
        )

    def forward(
        self, x: Tensor, temb: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None
    ) -> Tensor:
        h = self.res(x, temb)
        if self.attn is not None:
            h = self.attn(h)
        if self.cross_attn is not None:
            h = self.cross_attn(h, context, context_mask)
        return h


class _Level(nn.Module):
    """The blocks at one resolution and the resampling after them (Downsample, Upsample or None)."""

    def __init__(self, blocks: list[UNetBlock], resample: nn.Module | None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.resample = resample


class UNet(nn.Module):
    """eps_theta(x_t, t, context): predicts the noise in x_t (or v, or x0: the head is the same).

    forward(x: (B, in_channels, R, R), t: (B,) long or float (or one number for the whole batch),
    context: (B, L, context_dim) or None, context_mask: (B, L) bool or None) -> (B, out_channels, R, R).
    """

    def __init__(self, config: UNetConfig | None = None):
        super().__init__()
        config = UNetConfig() if config is None else config
        config.validate()  # again, in case the config was edited after construction
        self.config = config
        self.out_channels = config.out_channels or config.in_channels
        base = config.base_channels
        temb_dim = 4 * base
        self.time_mlp = TimestepMLP(base, temb_dim)
        self.conv_in = nn.Conv2d(config.in_channels, base, 3, padding=1)

        # Down path; skip_channels records the channels of every tensor pushed on the skip stack.
        skip_channels = [base]
        ch = base
        self.down = nn.ModuleList()
        for i, (out_ch, res) in enumerate(zip(config.level_channels, config.level_resolutions, strict=True)):
            blocks = []
            for _ in range(config.num_res_blocks):
                blocks.append(UNetBlock(ch, out_ch, temb_dim, config, res in config.attention_resolutions))
                ch = out_ch
                skip_channels.append(ch)
            last = i == len(config.channel_mults) - 1
            self.down.append(_Level(blocks, None if last else Downsample(ch)))
            if not last:
                skip_channels.append(ch)

        self.mid = nn.ModuleList(
            [
                UNetBlock(ch, ch, temb_dim, config, attention=config.mid_attention),
                UNetBlock(ch, ch, temb_dim, config, attention=False),
            ]
        )

        # Up path: one more block per level than on the way down, each eating one skip.
        self.up = nn.ModuleList()
        for i in reversed(range(len(config.channel_mults))):
            out_ch, res = config.level_channels[i], config.level_resolutions[i]
            blocks = []
            for _ in range(config.num_res_blocks + 1):
                in_ch = ch + skip_channels.pop()
                blocks.append(UNetBlock(in_ch, out_ch, temb_dim, config, res in config.attention_resolutions))
                ch = out_ch
            self.up.append(_Level(blocks, Upsample(ch) if i > 0 else None))

        self.norm_out = nn.GroupNorm(config.groups, ch)
        self.conv_out = nn.Conv2d(ch, self.out_channels, 3, padding=1)
        if config.zero_init:
            self._zero_init()

    def _zero_init(self) -> None:
        for module in self.modules():
            if isinstance(module, ResBlock):
                nn.init.zeros_(module.conv2.weight)
                nn.init.zeros_(module.conv2.bias)
            elif isinstance(module, (SelfAttention, CrossAttention)):
                nn.init.zeros_(module.proj_out.weight)
                nn.init.zeros_(module.proj_out.bias)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self,
        x: Tensor,
        t: Tensor | float,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
    ) -> Tensor:
        t = check_unet_inputs(self.config, x, t, context, context_mask)
        temb = self.time_mlp(t)  # (B, 4 * base_channels)

        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for block in level.blocks:
                h = block(h, temb, context, context_mask)
                skips.append(h)
            if level.resample is not None:
                h = level.resample(h)
                skips.append(h)

        for block in self.mid:
            h = block(h, temb, context, context_mask)

        for level in self.up:
            for block in level.blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), temb, context, context_mask)  # skip connection
            if level.resample is not None:
                h = level.resample(h)

        return self.conv_out(F.silu(self.norm_out(h)))


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) in ``module``; with trainable_only, only those with requires_grad."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
