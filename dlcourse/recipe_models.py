"""What a recipe builds: the U-Net, autoencoder and text model of a recipe in :data:`dlcourse.recipes.RECIPES`,
its training settings and where its training run keeps its checkpoint.

:mod:`dlcourse.pretrained` trains and loads the shared models from these; notebook 03 builds its own model from the
same functions (section "`train()`: the same loop plus engineering"), so the page and the package train one model.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dlcourse.checkpoints import cache_path
from dlcourse.models import TextConditionedUNet, TextEncoder, Tokenizer, UNetConfig, VAEConfig
from dlcourse.modes import Settings
from dlcourse.training import TrainConfig

__all__ = ["ddpm_checkpoint_path", "ddpm_train_config", "ddpm_unet_config", "text_model", "vae_config"]


def ddpm_unet_config(recipe: Settings) -> UNetConfig:
    """The U-Net of a DDPM recipe (e.g. ``settings("ddpm_shapes")``)."""
    return UNetConfig(
        in_channels=3,
        resolution=recipe.resolution,
        base_channels=recipe.base_channels,
        channel_mults=recipe.channel_mults,
        num_res_blocks=recipe.num_res_blocks,
        attention_resolutions=recipe.attention_resolutions,
    )


def ddpm_train_config(recipe: Settings) -> TrainConfig:
    """The training settings of a recipe (a DDPM's, the VAE's, which has no prediction_type, or the text model's,
    which adds p_uncond); checkpoints every tenth of the run (resumable on Colab)."""
    return TrainConfig(
        steps=recipe.steps,
        batch_size=recipe.batch_size,
        lr=recipe.lr,
        betas=tuple(recipe.get("betas", TrainConfig.betas)),  # a list from an override becomes a tuple
        warmup_steps=recipe.warmup_steps,
        lr_decay=recipe.lr_decay,
        ema_decay=recipe.ema_decay,
        prediction_type=recipe.get("prediction_type", "eps"),
        p_uncond=recipe.get("p_uncond", 0.0),
        checkpoint_every=max(1, recipe.steps // 10),
        seed=recipe.seed,
    )


def ddpm_checkpoint_path(name: str, recipe: Settings) -> Path:
    """Where the training run of recipe ``name`` keeps its checkpoint: one file per mode and recipe values."""
    return cache_path(name, dict(recipe))


def vae_config(recipe: Settings) -> VAEConfig:
    """The autoencoder of a VAE recipe (e.g. ``settings("vae_shapes")``)."""
    return VAEConfig(
        resolution=recipe.resolution,
        latent_channels=recipe.latent_channels,
        base_channels=recipe.base_channels,
        channel_mults=recipe.channel_mults,
        num_res_blocks=recipe.num_res_blocks,
    )


def text_model(recipe: Settings, base: nn.Module) -> tuple[Tokenizer, TextConditionedUNet]:
    """The tokenizer and the text-conditioned U-Net of ``recipe`` around ``base`` (its cross-attention at zero)."""
    tokenizer = Tokenizer.for_shapes(recipe.max_length)
    text_encoder = TextEncoder(len(tokenizer), recipe.max_length, recipe.text_dim, recipe.text_depth, recipe.text_heads)
    return tokenizer, TextConditionedUNet.from_unconditional(base, text_encoder)
