"""The settings of a training run (:class:`TrainConfig`), an added loss term (:class:`LossTerm`), the
learning-rate warm-up (:func:`learning_rate`) and what :func:`~dlcourse.training.train` returns
(:class:`TrainResult`).

Taught in notebooks/03_ddpm_training.ipynb, sections "Algorithm 1, the whole loop" and
"`train()`: the same loop plus engineering".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from dlcourse.ema import EMA
from dlcourse.parameterization import check_prediction_type

__all__ = ["LR_DECAYS", "LossTerm", "TrainConfig", "TrainResult", "learning_rate"]

LR_DECAYS = ("constant", "cosine")


@dataclass
class TrainConfig:
    """Settings of :func:`~dlcourse.training.train`. The defaults train the default UNet on a CPU in minutes.

    steps: optimiser steps in total (a resumed run continues up to this number).
    batch_size: examples per step and process.
    lr, weight_decay, betas: AdamW's (DDPM: 2e-4, no weight decay, Adam's default betas (0.9, 0.999)); a lower
        beta2 forgets old gradient scales sooner (the cpu recipe of notebook 03 uses 0.99, see dlcourse.recipes).
    warmup_steps: the learning rate grows linearly over these steps (DDPM: 5,000), see :func:`learning_rate`.
    lr_decay: after the warm-up, "constant" (DDPM) or "cosine": down to 0 at the last step along half a cosine
        (Loshchilov & Hutter 2017), what a long run needs to settle (the released models, dlcourse.releases).
    grad_clip: clip the gradient norm to this (DDPM: 1.0); None for no clipping.
    ema_decay, ema_warmup: the EMA of the weights (see :mod:`dlcourse.ema`); warm-up matters for short runs.
    prediction_type: "eps" (DDPM), "v" or "x0".
    p_uncond: condition dropout for classifier-free guidance: each example's conditions are replaced by the
        null condition with this probability (Ho & Salimans 2022 use 0.1 to 0.2); 0 draws no random numbers.
    checkpoint_every: steps between checkpoints (when train() gets a checkpoint_path).
    log_every: steps between reads of the loss (progress bar, loss history, NaN check): the only host syncs.
    seed: seeds the batches, timesteps and noise (and dropout), offset by the process rank under DDP.
    """

    steps: int = 500
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    lr_decay: str = "constant"
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    prediction_type: str = "eps"
    p_uncond: float = 0.0
    checkpoint_every: int = 500
    log_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first bad setting; called at construction and by train()."""
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("warmup_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}.")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0 (DDPM uses 2e-4), got {self.lr!r}.")
        if self.lr_decay not in LR_DECAYS:
            raise ValueError(f"TrainConfig.lr_decay must be one of {LR_DECAYS}, got {self.lr_decay!r}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}.")
        betas = self.betas
        pair = isinstance(betas, tuple) and len(betas) == 2
        if not (pair and all(isinstance(b, float) and 0 <= b < 1 for b in betas)):
            raise ValueError(f"TrainConfig.betas must be two floats in [0, 1) (Adam's: (0.9, 0.999)), got {betas!r}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None (no clipping), got {self.grad_clip!r}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1) (e.g. 0.999), got {self.ema_decay!r}.")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ValueError(
                f"TrainConfig.p_uncond must be in [0, 1) (0: no condition dropout; classifier-free guidance uses "
                f"0.1 to 0.2), got {self.p_uncond!r}."
            )
        check_prediction_type(self.prediction_type)


@dataclass
class LossTerm:
    """A loss term added to the main one, on batches of its own: loss = loss + weight * (this term's loss).

    DreamBooth's prior preservation (Ruiz et al. 2023, Eq. (2)) is one: ``LossTerm(data=class_images,
    weight=1.0)`` trains on generated images of the subject's class beside the few images of the subject.
    Each term draws its batch, t and eps from a generator of its own, so ``weight=0`` trains exactly as the
    run without the term (bit-for-bit, for a model without dropout).

    data: like train()'s data: a tensor (N, C, H, W), or a mapping with "x0" and per-example conditions.
    weight: the term's weight (>= 0).
    batch_size: examples per step for this term (None: TrainConfig.batch_size).
    """

    data: Tensor | Mapping[str, Tensor]
    weight: float = 1.0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not self.weight >= 0:
            raise ValueError(f"LossTerm.weight must be a number >= 0, got {self.weight!r}.")
        if not math.isfinite(self.weight):
            raise ValueError(f"LossTerm.weight must be finite, got {self.weight!r}.")
        size = self.batch_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"LossTerm.batch_size must be a positive integer or None, got {size!r}.")


@dataclass
class TrainResult:
    """What :func:`~dlcourse.training.train` returns.

    model: the trained model (raw weights, unwrapped from DDP), in eval mode.
    ema: the :class:`~dlcourse.ema.EMA` of the trained parameters (``ema.model`` samples best); None on DDP
        ranks > 0.
    loss_history: one float per step since step 1, the batch-mean loss with its terms (the mean over processes
        under DDP).
    steps: steps done in total (config.steps, or train()'s until); start_step: where this call started (0, or a
        checkpoint's step).
    seconds: wall time of this call's steps; images_per_second: examples (of every term) trained on by all
        processes per second.
    """

    model: nn.Module
    ema: EMA | None
    loss_history: list[float]
    steps: int
    start_step: int
    seconds: float
    images_per_second: float

    @property
    def ema_model(self) -> nn.Module | None:
        """The averaged model, in eval mode (None on DDP ranks > 0)."""
        return None if self.ema is None else self.ema.model

    def summary(self) -> dict[str, Any]:
        """Plain values (loss history, steps, speed) to keep beside cached weights (``load_or_train``'s extra)."""
        return {
            "loss_history": list(self.loss_history),
            "steps": self.steps,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
        }


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of step ``step`` (1-based): linear warm-up to ``config.lr``, then constant or cosine decay.

    warm-up: lr_step = lr * min(1, step / warmup_steps) (Ho et al. 2020, App. B: 5,000 warm-up steps);
    cosine decay after it: lr_step = lr * (1 + cos(pi * (step - warmup_steps) / (steps - warmup_steps))) / 2
    (Loshchilov & Hutter 2017, Eq. 5 with eta_min = 0), which reaches 0 at the last step.
    """
    if step < config.warmup_steps:
        return config.lr * step / config.warmup_steps
    if config.lr_decay == "constant" or config.steps <= config.warmup_steps:
        return config.lr
    progress = (step - config.warmup_steps) / (config.steps - config.warmup_steps)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
