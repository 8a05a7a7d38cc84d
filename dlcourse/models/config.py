"""UNetConfig: the U-Net's hyper-parameters, checked when the config is built.

Taught in notebooks/02_unet.ipynb, "The U-Net" and "Configurations that cannot work are refused": a config
that cannot build a working network (a resolution that cannot be halved often enough, attention at a size
that never occurs, GroupNorm groups or heads that do not divide the channels) raises a ValueError that says
how to fix it, instead of a shape error deep inside a forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["UNetConfig"]


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
        (see dlcourse/models/unet.py).
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
