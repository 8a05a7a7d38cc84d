"""Models that one notebook trains and later notebooks reuse: trained on first use, then loaded from the cache.

Every later notebook must run on its own in a fresh runtime, so it cannot rely on an earlier notebook having
run. Each function here rebuilds exactly what the teaching notebook builds, from the same recipe
(:data:`dlcourse.modes.RECIPES`), and calls the same :func:`~dlcourse.training.train` with a checkpoint in
``data/checkpoints/``. Because :func:`~dlcourse.training.train` resumes from its checkpoint, a finished run
is simply loaded (no step is repeated), an interrupted one continues, and a missing one is trained.

Taught in notebooks/03_ddpm_training.ipynb, section "One model, cached"; used from notebook 04 on. The
autoencoder of notebooks/05_latent_diffusion.ipynb and the text-to-image model of
notebooks/06_classifier_free_guidance.ipynb are cached the same way.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlcourse.checkpoints import cache_path, load_weights
from dlcourse.data import Shapes, parse_caption, partial_captions
from dlcourse.models import VAE, TextConditionedUNet, Tokenizer, UNet, VAELoss
from dlcourse.modes import Settings, settings
from dlcourse.recipe_models import (
    ddpm_checkpoint_path,
    ddpm_train_config,
    ddpm_unet_config,
    text_model,
    vae_config,
)
from dlcourse.releases import load_release, release_for, release_recipe
from dlcourse.runtime import get_device
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainResult, train

__all__ = [
    "TrainedDDPM",
    "TrainedText2Image",
    "TrainedVAE",
    "ddpm_checkpoint_path",
    "ddpm_train_config",
    "ddpm_unet_config",
    "released_ddpm",
    "released_text2img",
    "shapes_ddpm",
    "shapes_text2img",
    "shapes_vae",
    "train_ddpm",
    "train_text2img",
    "train_vae",
    "vae_config",
]


@dataclass
class TrainedDDPM:
    """A trained denoiser and everything needed to sample from it.

    model: the EMA weights (what you sample with), eval mode; raw_model: the raw weights, eval mode (None for a
    release that ships only its EMA weights: dlcourse.recipes.RELEASES, "ship_raw");
    schedule: the noise schedule it was trained with; prediction_type: "eps", "v" or "x0";
    result: the :class:`~dlcourse.training.TrainResult` (loss history, speed); recipe: the settings used.
    """

    model: nn.Module
    raw_model: nn.Module | None
    schedule: NoiseSchedule
    prediction_type: str
    result: TrainResult
    recipe: Settings


def shapes_ddpm(
    mode: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    released: bool | None = None,
    **overrides: Any,
) -> TrainedDDPM:
    """The unconditional DDPM on Shapes of notebook 03 (recipe ``"ddpm_shapes"``): released, loaded, or trained now.

    mode: whose sizes to use (default: the current run mode). overrides: recipe entries to replace, e.g.
    ``shapes_ddpm(prediction_type="eps", schedule="linear")`` for the eps model on DDPM's own schedule; an
    unknown name raises a ValueError listing the recipe's entries. Each combination trains and caches its own
    checkpoint (the file name hashes the whole recipe), so a comparison never loads the wrong model.
    released: None (default) uses the released weights shipped with dlcourse (:mod:`dlcourse.releases`, the same
    recipe trained longer) where one stands in for the recipe asked for, which happens in cpu mode only; False
    trains (or loads the cached run of) the recipe itself; True insists on a release (a ValueError if none fits).
    Training takes minutes on a GPU the first time; afterwards this loads ``data/checkpoints/ddpm_shapes-*.pt``.
    A corrupt checkpoint or one from another run raises :class:`~dlcourse.checkpoints.CheckpointError`, never
    a silently different model.
    """
    recipe = settings("ddpm_shapes", mode, **overrides)
    name = release_for("ddpm_shapes", recipe, released)
    if name is not None:
        return released_ddpm(name, device)
    return train_ddpm(recipe, device, progress)


def train_ddpm(
    recipe: Settings, device: str | torch.device | None = None, progress: bool = True, until: int | None = None
) -> TrainedDDPM:
    """Train (or load, or continue) the DDPM of ``recipe`` with its checkpoint in ``data/checkpoints/``.
    until: stop after this step (a piece of a long run, see :func:`~dlcourse.training.train`)."""
    device = get_device(device)
    schedule = NoiseSchedule.from_name(recipe.schedule, recipe.num_timesteps)
    data = Shapes(resolution=recipe.resolution, seed=recipe.seed, device=device).batch(0, recipe.n_train).images
    model = UNet(ddpm_unet_config(recipe))
    result = train(
        model,
        data,
        schedule,
        ddpm_train_config(recipe),
        checkpoint_path=ddpm_checkpoint_path("ddpm_shapes", recipe),
        until=until,
        device=device,
        progress=progress,
    )
    return TrainedDDPM(result.ema_model, result.model, schedule, recipe.prediction_type, result, recipe)


def released_ddpm(name: str = "ddpm_shapes", device: str | torch.device | None = None) -> TrainedDDPM:
    """A released DDPM (:data:`dlcourse.recipes.RELEASES`) from the weights shipped with dlcourse."""
    recipe = release_recipe(name)
    release = load_release(name)
    model, raw = (_loaded(lambda: UNet(ddpm_unet_config(recipe)), w, name, device) for w in (release.ema, release.raw))
    schedule = NoiseSchedule.from_name(recipe.schedule, recipe.num_timesteps)
    return TrainedDDPM(model, raw, schedule, recipe.prediction_type, _result(raw, release), recipe)


@dataclass
class TrainedVAE:
    """A trained autoencoder: vae (the EMA weights, eval mode), result (loss history, speed), recipe."""

    vae: VAE
    result: TrainResult
    recipe: Settings


def shapes_vae(
    mode: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    released: bool | None = None,
    **overrides: Any,
) -> TrainedVAE:
    """The KL autoencoder of notebook 05 (recipe ``"vae_shapes"``), trained on Shapes by the course's loop with
    :class:`~dlcourse.models.VAELoss` (no noise schedule): the released weights in cpu mode (``released`` as for
    :func:`shapes_ddpm`), else loaded from ``data/checkpoints/vae_shapes-*.pt``, or trained now. A checkpoint of
    another recipe is refused with the settings that differ, never loaded."""
    recipe = settings("vae_shapes", mode, **overrides)
    name = release_for("vae_shapes", recipe, released)
    if name is not None:
        release = load_release(name)
        recipe = release_recipe(name)
        vae, raw = (_loaded(lambda: VAE(vae_config(recipe)), w, name, device) for w in (release.ema, release.raw))
        return TrainedVAE(vae, _result(raw, release), recipe)
    return train_vae(recipe, device, progress)


def train_vae(
    recipe: Settings, device: str | torch.device | None = None, progress: bool = True, until: int | None = None
) -> TrainedVAE:
    """Train (or load, or continue) the autoencoder of ``recipe``; until: as for :func:`train_ddpm`."""
    device = get_device(device)
    data = Shapes(resolution=recipe.resolution, seed=recipe.seed, device=device).batch(0, recipe.n_train).images
    result = train(
        VAE(vae_config(recipe)),
        data,
        None,
        ddpm_train_config(recipe),
        loss_fn=VAELoss(kl_weight=recipe.kl_weight, reconstruction=recipe.reconstruction),
        checkpoint_path=ddpm_checkpoint_path("vae_shapes", recipe),
        until=until,
        device=device,
        progress=progress,
    )
    return TrainedVAE(result.ema_model, result, recipe)


@dataclass
class TrainedText2Image:
    """A text-to-image model and what it takes to prompt it.

    model: the EMA weights, a :class:`~dlcourse.models.TextConditionedUNet` in eval mode (``model.unet`` takes
    the context that ``model.encode_prompts`` makes); raw_model: the raw weights (None for a release without
    them, as for :class:`TrainedDDPM`); tokenizer: prompts -> ids, mask;
    schedule, prediction_type: as for :class:`TrainedDDPM`; holdout: the colour-shape pairs no training caption
    named, as Shapes holdout rules; result, recipe: the run and its settings.
    """

    model: TextConditionedUNet
    raw_model: TextConditionedUNet | None
    tokenizer: Tokenizer
    schedule: NoiseSchedule
    prediction_type: str
    holdout: list[dict[str, str]]
    result: TrainResult
    recipe: Settings


def shapes_text2img(
    mode: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    released: bool | None = None,
    **overrides: Any,
) -> TrainedText2Image:
    """The text-conditioned model of notebook 06 (recipe ``"text_shapes"``): released, loaded, or trained now.

    It starts from notebook 03's unconditional model (:func:`shapes_ddpm`, the released one in cpu mode) with
    cross-attention added at zero (:meth:`~dlcourse.models.TextConditionedUNet.from_unconditional`) and a new
    text encoder, and trains on captions of Shapes images (each names size, colour and position with probability
    ``p_name``; held-out colour-shape pairs are left out), with prompt dropout (``p_uncond``) so that one network
    also predicts for the empty prompt. The checkpoint's name hashes both recipes, so another starting model
    trains its own text model. released: as for :func:`shapes_ddpm` (False also trains the starting model).
    """
    recipe = settings("text_shapes", mode, **overrides)
    name = release_for("text_shapes", recipe, released)
    if name is not None:
        return released_text2img(name, device)
    return train_text2img(recipe, shapes_ddpm(mode, device, progress, released=released), device, progress)


def train_text2img(
    recipe: Settings,
    base: TrainedDDPM,
    device: str | torch.device | None = None,
    progress: bool = True,
    until: int | None = None,
) -> TrainedText2Image:
    """Train (or load, or continue) the text model of ``recipe`` from ``base`` (its EMA weights); until: as for
    :func:`train_ddpm`."""
    device = get_device(device)
    holdout = [parse_caption(pair) for pair in recipe.holdout]
    batch = Shapes(resolution=base.recipe.resolution, seed=recipe.seed, holdout=holdout, device=device)
    batch = batch.batch(0, recipe.n_train)
    tokenizer, model = text_model(recipe, base.model)
    captions = partial_captions(batch.attributes, recipe.p_name, torch.Generator().manual_seed(recipe.seed))
    ids, mask = tokenizer.encode(captions, device)
    null_ids, null_mask = tokenizer.encode("", device)  # the empty prompt: the unconditional input
    result = train(
        model,
        {"x0": batch.images, "ids": ids, "mask": mask},
        base.schedule,
        dataclasses.replace(ddpm_train_config(recipe), prediction_type=base.prediction_type),
        null_condition={"ids": null_ids[0], "mask": null_mask[0]},
        checkpoint_path=cache_path("text_shapes", dict(recipe) | {"base": dict(base.recipe)}),
        until=until,
        device=device,
        progress=progress,
    )
    return TrainedText2Image(
        result.ema_model, result.model, tokenizer, base.schedule, base.prediction_type, holdout, result, recipe
    )


def released_text2img(name: str = "text_shapes", device: str | torch.device | None = None) -> TrainedText2Image:
    """A released text model from the weights shipped with dlcourse; its base is the release its manifest names."""
    recipe = release_recipe(name)
    release = load_release(name)
    base = released_ddpm(release.entry["base_release"], device)
    models = [_loaded(lambda: text_model(recipe, copy.deepcopy(base.model))[1], w, name, device)
              for w in (release.ema, release.raw)]
    holdout = [parse_caption(pair) for pair in recipe.holdout]
    tokenizer = Tokenizer.for_shapes(recipe.max_length)
    result = _result(models[1], release)
    return TrainedText2Image(
        models[0], models[1], tokenizer, base.schedule, base.prediction_type, holdout, result, recipe
    )


def _loaded(build: Any, weights: dict[str, torch.Tensor], name: str, device: Any) -> nn.Module | None:
    """``build()`` with a release's weights (float16 on disk, the model's dtype here), on the device, in eval mode;
    None where the release ships no such weights (its raw ones, say)."""
    if not weights:
        return None
    model = build()
    load_weights(model, weights, source=f"release {name!r}")
    return model.to(get_device(device)).eval()


def _result(raw: nn.Module | None, release: Any) -> TrainResult:
    """What train() would return on loading a finished run: its steps and loss history, no time spent here (model:
    the raw weights, None where the release does not ship them)."""
    steps = release.entry["steps"]
    return TrainResult(raw, None, release.loss_history, steps, steps, 0.0, 0.0)
