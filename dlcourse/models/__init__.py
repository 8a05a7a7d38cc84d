"""Neural networks of the course: time embeddings (embeddings.py), U-Net blocks (blocks.py), the U-Net's
config (config.py), the U-Net (unet.py) and its input checks (checks.py). Taught in notebooks/02_unet.ipynb.
"""

from dlcourse.models.blocks import CrossAttention, Downsample, ResBlock, SelfAttention, Upsample
from dlcourse.models.config import UNetConfig
from dlcourse.models.embeddings import TimestepMLP, timestep_embedding
from dlcourse.models.unet import UNet, UNetBlock, count_parameters

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
