"""The denoising U-Net of DDPM / ADM: eps_theta(x_t, t[, context]).

Taught in notebooks/02_unet.ipynb.

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
every ResBlock and the output projection of every attention start at zero. Each block then starts as the
identity on its skip path and the whole network outputs exactly 0 (the mean of eps) at initialisation, which
makes early training stable. The consequence to know: at initialisation the output does not depend on x, t or
context, and only conv_out receives gradients on the first step; everything moves after one optimiser step.
Build with ``zero_init=False`` to inspect the outputs of a freshly built network.

The forward pass checks shapes only (pure Python, no host sync), so it is safe to CUDA-graph, and it works
with torch.autocast (bf16/fp16) and channels_last.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlcourse.models.blocks import CrossAttention, Downsample, ResBlock, SelfAttention, Upsample
from dlcourse.models.embeddings import TimestepMLP

__all__ = ["UNet", "UNetBlock", "UNetConfig", "count_parameters"]


@dataclass
class UNetConfig:
    """Hyper-parameters of the U-Net. The defaults run a small batch on a CPU in a fraction of a second.

    in_channels: image channels (1 for MNIST, 3 for RGB, 4 for Stable Diffusion latents).
    out_channels: predicted channels; None means in_channels (predict eps of the same shape as x).
    resolution: H = W of the inputs; must be divisible by 2 ** (len(channel_mults) - 1).
    base_channels: channels after conv_in; level i has base_channels * channel_mults[i] channels.
    channel_mults: one entry per resolution level; each level after the first halves H and W.
    num_res_blocks: ResBlocks per level on the way down (the way up has one more per level).
    attention_resolutions: feature-map sizes (e.g. 8 for 8x8) at which self-attention follows each ResBlock.
    num_heads: attention heads; must divide the channels of every level that attends.
    dropout: dropout inside the ResBlocks (0.1 in DDPM's CIFAR-10 model).
    context_dim: if set, a CrossAttention over a context (B, L, context_dim) follows each self-attention
        (at attention_resolutions and in the middle); the model then requires a context.
    groups: GroupNorm groups; must divide every level's channels.
    mid_attention: self-attention (and cross-attention) in the middle block, as in DDPM / ADM.
    zero_init: start the output conv, the second conv of each ResBlock and the attention outputs at zero
        (see the module docstring).

    Taught in notebooks/02_unet.ipynb.
    """

    in_channels: int = 3
    out_channels: int | None = None
    resolution: int = 32
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (8,)
    num_heads: int = 4
    dropout: float = 0.0
    context_dim: int | None = None
    groups: int = 8
    mid_attention: bool = True
    zero_init: bool = True

    def __post_init__(self) -> None:
        self.channel_mults = tuple(self.channel_mults)  # lists (e.g. from JSON) become tuples
        self.attention_resolutions = tuple(self.attention_resolutions)
        self.validate()

    @property
    def level_resolutions(self) -> tuple[int, ...]:
        """The feature-map size H (= W) at each level, e.g. (32, 16, 8) for the defaults."""
        return tuple(self.resolution // 2**i for i in range(len(self.channel_mults)))

    @property
    def level_channels(self) -> tuple[int, ...]:
        """The channel count at each level, base_channels * channel_mults[i]."""
        return tuple(self.base_channels * m for m in self.channel_mults)

    def validate(self) -> None:
        """Raise a ValueError that says how to fix the first problem found; called at construction."""
        for name in ("in_channels", "resolution", "base_channels", "num_res_blocks", "num_heads", "groups"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UNetConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("out_channels", "context_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"UNetConfig.{name} must be None or a positive integer, got {value!r}.")
        if not self.channel_mults or any(not isinstance(m, int) or m < 1 for m in self.channel_mults):
            raise ValueError(
                f"UNetConfig.channel_mults must be a non-empty tuple of positive integers (one per level), "
                f"got {self.channel_mults!r}."
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNetConfig.dropout must be in [0, 1), got {self.dropout!r}.")

        levels = len(self.channel_mults)
        factor = 2 ** (levels - 1)
        if self.resolution % factor != 0:
            max_levels = 1
            while self.resolution % 2**max_levels == 0:
                max_levels += 1
            raise ValueError(
                f"resolution={self.resolution} cannot be halved {levels - 1} times: channel_mults "
                f"{self.channel_mults} has {levels} levels, so the resolution must be divisible by {factor}. "
                f"{self.resolution} allows at most {max_levels} level(s); use a channel_mults with at most "
                f"{max_levels} entries, or a resolution that is a multiple of {factor} (e.g. "
                f"{(self.resolution // factor + 1) * factor})."
            )

        missing = [r for r in self.attention_resolutions if r not in self.level_resolutions]
        if missing:
            raise ValueError(
                f"attention_resolutions {missing} never occur: with resolution={self.resolution} and "
                f"channel_mults={self.channel_mults} the feature maps are "
                f"{list(self.level_resolutions)} pixels wide. Pick attention_resolutions from those "
                "(or () for no attention in the levels)."
            )

        channels = (self.base_channels, *self.level_channels)
        if any(c % self.groups for c in channels):
            raise ValueError(
                f"GroupNorm needs channels divisible by groups={self.groups}, but base_channels and "
                f"base_channels * channel_mults give channels {sorted(set(channels))}. Use a base_channels "
                f"that is a multiple of {self.groups}, or a groups value that divides {self.base_channels}."
            )

        levels_and_channels = zip(self.level_resolutions, self.level_channels, strict=True)
        attending = [c for r, c in levels_and_channels if r in self.attention_resolutions]
        if self.mid_attention:
            attending.append(self.level_channels[-1])
        bad = sorted({c for c in attending if c % self.num_heads})
        if bad:
            raise ValueError(
                f"num_heads={self.num_heads} must divide the channels of every level with attention, but "
                f"{bad} are not divisible by it. Use num_heads 1, 2 or 4 with channel counts that are "
                f"multiples of 8, or change base_channels."
            )
        if self.context_dim is not None and not attending:
            raise ValueError(
                f"context_dim={self.context_dim} adds cross-attention after self-attention, but this config "
                f"has none (attention_resolutions=() and mid_attention=False), so the context would be "
                "ignored. "
                f"Add an attention resolution from {list(self.level_resolutions)} or set mid_attention=True."
            )


class UNetBlock(nn.Module):
    """A ResBlock, optionally followed by SelfAttention and then CrossAttention.

    x: (B, in_channels, H, W), temb: (B, temb_dim), context: (B, L, D) or None -> (B, out_channels, H, W).

    Taught in notebooks/02_unet.ipynb.
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

    Taught in notebooks/02_unet.ipynb.
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
        t = self._check_inputs(x, t, context, context_mask)
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

    def _check_inputs(
        self, x: Tensor, t: Tensor | float, context: Tensor | None, context_mask: Tensor | None
    ) -> Tensor:
        """Shape checks only (no host sync). Returns t as a (B,) tensor on x's device."""
        cfg = self.config
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


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements) in ``module``; with trainable_only, only those with requires_grad.

    Taught in notebooks/02_unet.ipynb (and used to compare fine-tuning methods in
    notebooks/07_lora_dreambooth.ipynb).
    """
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
