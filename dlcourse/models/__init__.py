"""Neural networks of the course: time embeddings, U-Net blocks and the U-Net.

Taught in notebooks/02_unet.ipynb.
"""

from dlcourse.models.blocks import CrossAttention, Downsample, ResBlock, SelfAttention, Upsample
from dlcourse.models.embeddings import TimestepMLP, timestep_embedding
from dlcourse.models.unet import UNet, UNetBlock, UNetConfig, count_parameters

__all__ = [
    "CrossAttention",
    "Downsample",
    "ResBlock",
    "SelfAttention",
    "TimestepMLP",
    "UNet",
    "UNetBlock",
    "UNetConfig",
    "Upsample",
    "count_parameters",
    "timestep_embedding",
]
