"""VAEConfig: the autoencoder's hyper-parameters, checked when the config is built.

Taught in notebooks/05_latent_diffusion.ipynb, section "The autoencoder".
"""

from __future__ import annotations

from dataclasses import dataclass

from dlcourse.models.checks import check_channel_mults, check_vae_config

__all__ = ["VAEConfig"]


@dataclass
class VAEConfig:
    """Hyper-parameters of the :class:`~dlcourse.models.VAE`.

    in_channels: image channels (3 for RGB). resolution: H = W of the images.
    latent_channels: c, the channels of a latent (4, as in Stable Diffusion).
    base_channels, channel_mults: level i has base_channels * channel_mults[i] channels; each level after the
        first halves H and W, so the downsampling factor is f = 2 ** (len(channel_mults) - 1):
        (1, 2, 2) gives f = 4, (1, 2, 4, 4) gives f = 8 (Stable Diffusion's).
    num_res_blocks: ResBlocks per level in the encoder (the decoder has one more, as in LDM).
    mid_attention: a self-attention between the two middle ResBlocks of encoder and decoder (LDM has one).
    groups: GroupNorm groups; must divide every level's channels.
    """

    in_channels: int = 3
    resolution: int = 64
    latent_channels: int = 4
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    mid_attention: bool = True
    groups: int = 8

    def __post_init__(self) -> None:
        check_channel_mults(self.channel_mults)
        self.channel_mults = tuple(self.channel_mults)  # lists (e.g. from JSON) become tuples
        self.validate()

    @property
    def downsampling_factor(self) -> int:
        """f: how many pixels one latent position covers along each side."""
        return 2 ** (len(self.channel_mults) - 1)

    @property
    def latent_resolution(self) -> int:
        """h = w of a latent: resolution / f."""
        return self.resolution // self.downsampling_factor

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(c, h, w) of one image's latent."""
        return (self.latent_channels, self.latent_resolution, self.latent_resolution)

    @property
    def level_channels(self) -> tuple[int, ...]:
        return tuple(self.base_channels * m for m in self.channel_mults)

    def validate(self) -> None:
        """Raise a ValueError that says how to fix the first problem found; called at construction."""
        check_vae_config(self)
