"""The flow models of notebook 10: notebook 03's U-Net recipe trained by flow matching, and its reflowed successor;
released, loaded from the cache, or trained now, as :mod:`dlcourse.pretrained` does for the DDPMs.

- :func:`shapes_flow` (recipe ``"flow_shapes"``): the U-Net, steps and optimiser of ``"ddpm_shapes"`` in the same
  mode, trained by the one loop with :class:`~dlcourse.training.FlowMatchingLoss` (no noise schedule);
- :func:`shapes_reflow` (recipe ``"reflow_shapes"``): the 2-rectified flow of Liu et al. 2023: ``n_pairs`` noises
  taken to images by that flow model (:func:`~dlcourse.sampling.reflow_pairs`, cached in ``data/checkpoints/``), then
  the flow model trained further on the fixed pairs.

In cpu mode both load the released weights (``dlcourse/weights/``, :mod:`dlcourse.releases`) where the recipe asked
for is a release's; ``released=False`` trains. Taught in notebooks/10_flow_matching.ipynb.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dlcourse.checkpoints import cache_path, load_checkpoint, save_checkpoint
from dlcourse.data import Shapes
from dlcourse.models import UNet
from dlcourse.modes import Settings, settings
from dlcourse.pretrained import _loaded, _result
from dlcourse.recipe_models import ddpm_train_config, ddpm_unet_config
from dlcourse.releases import load_release, release_for, release_recipe
from dlcourse.runtime import get_device
from dlcourse.sampling.flow_paths import reflow_pairs
from dlcourse.training import FlowMatchingLoss, TrainResult, train

__all__ = ["TrainedFlow", "released_flow", "shapes_flow", "shapes_reflow", "train_flow", "train_reflow"]

PAIR_BATCH = 500  # images per sampler call when drawing reflow's pairs (bounds the memory, not the result)


@dataclass
class TrainedFlow:
    """A trained flow model: model (the EMA weights, eval mode; called as model(x_t, 1000 t) -> velocity), raw_model
    (the raw weights; None for a release that ships only its EMA weights), result (loss history, speed), recipe."""

    model: nn.Module
    raw_model: nn.Module | None
    result: TrainResult
    recipe: Settings


def shapes_flow(
    mode: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    released: bool | None = None,
    **overrides: Any,
) -> TrainedFlow:
    """The flow model of notebook 10 (recipe ``"flow_shapes"``, e.g. ``t_distribution="logit_normal"``): released in
    cpu mode, else loaded from ``data/checkpoints/flow_shapes-*.pt`` or trained now. released: as for
    :func:`dlcourse.pretrained.shapes_ddpm`."""
    recipe = settings("flow_shapes", mode, **overrides)
    name = release_for("flow_shapes", recipe, released)
    if name is not None:
        return released_flow(name, device)
    return train_flow(recipe, device, progress)


def train_flow(
    recipe: Settings, device: str | torch.device | None = None, progress: bool = True, until: int | None = None
) -> TrainedFlow:
    """Train (or load, or continue) the flow model of ``recipe`` on Shapes; until: stop after this step."""
    device = get_device(device)
    data = Shapes(resolution=recipe.resolution, seed=recipe.seed, device=device).batch(0, recipe.n_train).images
    result = train(
        UNet(ddpm_unet_config(recipe)),
        data,
        None,  # flow matching has no noise schedule
        ddpm_train_config(recipe),
        loss_fn=FlowMatchingLoss(t_distribution=recipe.t_distribution),
        checkpoint_path=cache_path("flow_shapes", dict(recipe)),
        until=until,
        device=device,
        progress=progress,
    )
    return TrainedFlow(result.ema_model, result.model, result, recipe)


def shapes_reflow(
    mode: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    *,
    released: bool | None = None,
    **overrides: Any,
) -> TrainedFlow:
    """The reflowed model of notebook 10 (recipe ``"reflow_shapes"``) from :func:`shapes_flow` of the same mode:
    released in cpu mode, else loaded from the cache or trained now (drawing the pairs first). released: as for
    :func:`shapes_flow` (False also trains the flow model it starts from)."""
    recipe = settings("reflow_shapes", mode, **overrides)
    name = release_for("reflow_shapes", recipe, released)
    if name is not None:
        return released_flow(name, device)
    return train_reflow(recipe, shapes_flow(mode, device, progress, released=released), device, progress)


def train_reflow(
    recipe: Settings,
    base: TrainedFlow,
    device: str | torch.device | None = None,
    progress: bool = True,
    until: int | None = None,
) -> TrainedFlow:
    """Train (or load, or continue) the reflowed model of ``recipe``: ``base``'s EMA weights trained on the
    (noise, sample) pairs of ``base`` (Liu et al. 2023, Algorithm 1 with k = 1: the 2-rectified flow)."""
    device = get_device(device)
    key = dict(recipe) | {"base": dict(base.recipe), "base_weights": _digest(base.model)}
    pairs = _pairs(recipe, base, key, device, progress)
    config = ddpm_train_config(recipe)
    result = train(
        copy.deepcopy(base.model).requires_grad_(True),  # the EMA weights (frozen as loaded), trained further
        {"x0": pairs["samples"], "noise": pairs["noise"]},
        None,
        config,
        loss_fn=FlowMatchingLoss(t_distribution=base.recipe.t_distribution, paired_noise="noise"),
        data_range=None,  # a model's samples may overshoot [-1, 1] a little
        checkpoint_path=cache_path("reflow_shapes", key),
        until=until,
        device=device,
        progress=progress,
    )
    return TrainedFlow(result.ema_model, result.model, result, recipe)


def _pairs(
    recipe: Settings, base: TrainedFlow, key: dict[str, Any], device: torch.device, progress: bool
) -> dict[str, torch.Tensor]:
    """reflow's training data, on the CPU: n_pairs noises (seeded) and the images base's ODE takes them to; drawn once,
    then loaded from ``data/checkpoints/reflow_pairs-*.pt`` (a run that resumes must see the same pairs)."""
    path = cache_path("reflow_pairs", key)
    if path.is_file():
        return load_checkpoint(path)
    resolution = base.recipe.resolution
    noise = torch.randn(recipe.n_pairs, 3, resolution, resolution, generator=torch.Generator().manual_seed(recipe.seed))
    samples = [
        reflow_pairs(base.model, chunk.to(device), num_steps=recipe.pair_steps, spacing=recipe.pair_spacing,
                     solver=recipe.pair_solver, progress=progress).samples.cpu()
        for chunk in noise.split(PAIR_BATCH)
    ]
    save_checkpoint({"noise": noise, "samples": torch.cat(samples)}, path)
    return load_checkpoint(path)


def _digest(model: nn.Module) -> str:
    """sha256 of a model's weights: the pairs and the reflow run belong to these weights (a release's float16 ones
    and a locally trained model's differ), not just to the recipe that made them."""
    digest = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(value.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def released_flow(name: str = "flow_shapes", device: str | torch.device | None = None) -> TrainedFlow:
    """A released flow model (:data:`dlcourse.recipes.RELEASES`) from the weights shipped with dlcourse."""
    recipe = release_recipe(name)
    release = load_release(name)
    unet = ddpm_unet_config(release_recipe(release.entry.get("base_release", name)))
    model, raw = (_loaded(lambda: UNet(unet), w, name, device) for w in (release.ema, release.raw))
    return TrainedFlow(model, raw, _result(raw, release), recipe)
