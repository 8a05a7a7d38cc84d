"""The checks of how a :func:`~dlcourse.training.train` run is set up and how it goes: the fast path's device, a
run trained in pieces (``until``), the subset of parameters to train, the extra loss terms given, and the NaN check at
log points.

The checks of the data, the model's inputs and the loss are in :mod:`dlcourse.training.checks`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dlcourse import fast_path
from dlcourse.training.config import LossTerm, TrainConfig

__all__ = [
    "TrainingDiverged",
    "check_extra_terms",
    "check_fast",
    "check_finite",
    "check_train_only",
    "check_until",
    "checked_trainable",
]


def check_fast(device: torch.device, world_size: int) -> None:
    """``train(fast=True)`` captures the step in a CUDA graph: it needs a CUDA device and one process."""
    if device.type != fast_path.graphs.device_type:
        raise ValueError(
            f"fast=True captures the training step in a CUDA graph, which needs a CUDA device; this run is on "
            f"{device}. Use fast=False (the default) on a {device.type.upper()}."
        )
    if world_size > 1:
        raise ValueError(
            f"fast=True trains one process; this run has {world_size} (torchrun). DistributedDataParallel's "
            "gradient all-reduce is not captured here: use fast=False under torchrun."
        )


def check_until(until: Any, config: TrainConfig, checkpoint_path: str | Path | None) -> int:
    """``train(until=...)`` stops a run early at a step: a positive int, with a checkpoint to continue from.
    Returns the last step this call trains (config.steps when until is None)."""
    if until is None:
        return config.steps
    if isinstance(until, bool) or not isinstance(until, int) or until < 1:
        raise ValueError(f"until must be a positive step number (or None: all {config.steps} steps), got {until!r}.")
    if checkpoint_path is None:
        raise ValueError(
            f"until={until} trains a piece of a run, which a later call continues from its checkpoint: pass "
            "checkpoint_path too."
        )
    return min(until, config.steps)


def checked_trainable(model: nn.Module, trainable: Any) -> list[tuple[str, nn.Parameter]]:
    """train()'s ``trainable`` checked: (name, parameter) pairs of the parameters to train, in the model's order.

    trainable: parameters of ``model`` (e.g. ``[p for n, p in model.named_parameters() if "lora" in n]``);
    None: every parameter that requires a gradient.
    """
    named = list(model.named_parameters())
    if trainable is None:
        chosen = [(name, p) for name, p in named if p.requires_grad]
        if not chosen:
            raise ValueError(
                f"No parameter of the {type(model).__name__} requires a gradient, so there is nothing to train. "
                "Pass trainable=[...] with the parameters to train."
            )
        return chosen
    if isinstance(trainable, nn.Module):
        raise TypeError("trainable takes parameters, not a module: pass trainable=list(module.parameters()).")
    if isinstance(trainable, Tensor):
        raise TypeError(
            f"trainable must be a list of parameters, got a single {type(trainable).__name__} of shape "
            f"{tuple(trainable.shape)} (iterating it would give its rows): pass trainable=[parameter]."
        )
    if isinstance(trainable, str | Mapping) or not isinstance(trainable, Iterable):
        raise TypeError(
            f"trainable must be a list of the model's nn.Parameter objects or None, got {type(trainable).__name__}. "
            "Pass e.g. [p for name, p in model.named_parameters() if 'lora' in name]."
        )
    trainable = list(trainable)
    not_parameters = [type(p).__name__ for p in trainable if not isinstance(p, nn.Parameter)]
    if not_parameters:
        raise TypeError(
            f"trainable must hold nn.Parameter objects of the model, got {sorted(set(not_parameters))}. Pass e.g. "
            "[p for name, p in model.named_parameters() if 'lora' in name]."
        )
    ids = {id(p) for p in trainable}
    if not ids:
        raise ValueError("trainable is empty: pass the parameters to train, or None to train every parameter.")
    chosen = [(name, p) for name, p in named if id(p) in ids]
    if len(chosen) < len(ids):
        strangers = [tuple(p.shape) for p in trainable if id(p) not in {id(q) for _, q in chosen}]
        raise ValueError(
            f"{len(strangers)} parameter(s) in trainable (shapes {strangers[:5]}) are not parameters of the "
            f"{type(model).__name__} being trained. Register them in the model first (e.g. add the LoRA layers "
            "before calling train), and pass parameters of this model instance, not of a copy."
        )
    not_float = [name for name, p in chosen if not p.is_floating_point()]
    if not_float:
        raise ValueError(f"trainable holds integer parameters, {not_float[:3]}: only float ones take a gradient.")
    return chosen


def check_train_only(model: Any, parameters: Any) -> None:
    """train_only(model, parameters): a module and a list of its parameters."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"train_only: model must be an nn.Module, got {type(model).__name__}.")
    if not isinstance(parameters, list | tuple) or not all(isinstance(p, nn.Parameter) for p in parameters):
        raise TypeError(
            "train_only: parameters must be a list of the model's nn.Parameter objects, e.g. "
            f"[p for _, p in checked_trainable(model, trainable)]; got {type(parameters).__name__}."
        )


class TrainingDiverged(FloatingPointError):
    """The training loss became NaN or inf. step: the first step whose loss was not finite; finite_losses: the
    losses of the steps before it in the last stretch read back (the only ones the loop had seen)."""

    def __init__(self, message: str, step: int, finite_losses: list[float]):
        super().__init__(message)
        self.step, self.finite_losses = step, finite_losses


def check_finite(losses: list[float], first_step: int, checkpoint_path: str | Path | None) -> None:
    """Raise :class:`TrainingDiverged` (a FloatingPointError) at the first NaN/inf loss; ``losses[i]`` is the loss
    of step first_step + i + 1."""
    bad = next((i for i, value in enumerate(losses) if not math.isfinite(value)), None)
    if bad is None:
        return
    kept = ""
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        kept = f" The last checkpoint written before it is kept at {checkpoint_path}."
    raise TrainingDiverged(
        f"The training loss became {losses[bad]} at step {first_step + bad + 1}, so training stopped. Likely causes: "
        "the learning rate is too high (try TrainConfig(lr=1e-4) or more warmup_steps); fp16 without loss scaling "
        "(use select_precision(device), which pairs fp16 with a GradScaler, or bf16); data not in [-1, 1] (see "
        "data.aminmax(); dlcourse.data.to_model_range converts [0, 1] images); or a custom model that outputs "
        f"NaN/inf (check torch.isfinite(model(x_t, t)).all() on one batch).{kept}",
        step=first_step + bad + 1,
        finite_losses=losses[:bad],
    )


def check_extra_terms(extra_terms: Any) -> None:
    """``train(extra_terms=...)``: a list or tuple of LossTerm objects (possibly empty)."""
    if isinstance(extra_terms, LossTerm | Mapping | str) or not isinstance(extra_terms, Sequence):
        hint = " Wrap a single term in a list: extra_terms=[term]." if isinstance(extra_terms, LossTerm) else ""
        raise TypeError(
            f"extra_terms must be a list of LossTerm objects (empty for none), got {type(extra_terms).__name__}.{hint}"
        )
    for i, term in enumerate(extra_terms):
        if not isinstance(term, LossTerm):
            raise TypeError(
                f"extra_terms[{i}] must be a LossTerm, not {type(term).__name__}: LossTerm(data=..., weight=...)."
            )
