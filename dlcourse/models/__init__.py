"""Neural networks of the course: time embeddings (embeddings.py), U-Net blocks (blocks.py), the U-Net's
config (config.py), the U-Net (unet.py) and its input checks (checks.py), taught in notebooks/02_unet.ipynb; the
KL autoencoder of latent diffusion (vae.py, vae_config.py), taught in notebooks/05_latent_diffusion.ipynb; the
tokenizer and text encoder of text conditioning (text.py).
"""

from dlcourse.models.blocks import CrossAttention, Downsample, ResBlock, SelfAttention, Upsample
from dlcourse.models.config import UNetConfig
from dlcourse.models.embeddings import TimestepMLP, timestep_embedding
from dlcourse.models.text import TextConditionedUNet, TextEncoder, Tokenizer
from dlcourse.models.unet import UNet, UNetBlock, count_parameters
from dlcourse.models.vae import VAE, DiagonalGaussian, VAELoss
from dlcourse.models.vae_config import VAEConfig

__all__ = [
    "VAE",
    "CrossAttention",
    "DiagonalGaussian",
    "Downsample",
    "ResBlock",
    "SelfAttention",
    "TextConditionedUNet",
    "TextEncoder",
    "TimestepMLP",
    "Tokenizer",
    "UNet",
    "UNetBlock",
    "UNetConfig",
    "Upsample",
    "VAEConfig",
    "VAELoss",
    "count_parameters",
    "timestep_embedding",
]
