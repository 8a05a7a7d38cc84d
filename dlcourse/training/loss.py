"""The DDPM training loss of one batch: Ho et al. 2020, Algorithm 1.

    x0 ~ q(x0)                                   a batch of training examples (images in [-1, 1], or latents)
    t ~ Uniform({1, ..., T})                     here 0-indexed: t in {0, ..., T-1}
    eps ~ N(0, I)
    gradient step on || eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t) ||^2

:func:`ddpm_loss` writes lines 3-5 out (and supports the v and x0 targets of :mod:`dlcourse.parameterization`);
:func:`dlcourse.training.train` draws the batch (line 2) and takes the gradient step.

Taught in notebooks/03_ddpm_training.ipynb, section "Algorithm 1: the loss".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlcourse.parameterization import check_prediction_type, training_target
from dlcourse.schedules import NoiseSchedule, extract

__all__ = ["ddpm_loss"]


def ddpm_loss(
    model: nn.Module,
    x0: Tensor,
    schedule: NoiseSchedule,
    prediction_type: str = "eps",
    *,
    t: Tensor | None = None,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Tensor:
    """The DDPM training loss of one batch, a scalar tensor.

    x0: (B, C, H, W) clean examples (not checked: no host sync); schedule on x0's device.
    t: (B,) long timesteps in [0, T-1], drawn uniformly if None; eps: (B, C, H, W), drawn from N(0, I) if None.
    generator: a torch.Generator on x0's device for t, then eps (None: torch's global RNG).
    model_kwargs: the batch's conditions, passed to the model as keyword arguments, e.g. ``{"class_labels": y}``.
    prediction_type: what the model predicts, "eps", "v" or "x0"; the loss is the MSE to that target.
    """
    check_prediction_type(prediction_type)
    batch = x0.shape[0]
    if t is None:
        # Algorithm 1, line 3: t ~ Uniform({0, ..., T-1}) (the paper's {1, ..., T}, 0-indexed)
        t = torch.randint(0, schedule.num_timesteps, (batch,), device=x0.device, generator=generator)
    if eps is None:
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)  # Algorithm 1, line 4
    x_t = schedule.q_sample(x0, t, eps, check=False)  # Ho et al. 2020, Eq. (4)
    target = training_target(x0, eps, extract(schedule.alpha_bar, t, x0), prediction_type)
    prediction = model(x_t, t, **(model_kwargs or {}))
    return F.mse_loss(prediction.float(), target.float())  # Algorithm 1, line 5 (the mean over all entries)
