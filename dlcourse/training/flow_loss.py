"""The flow matching (rectified flow) training loss of one batch: Lipman et al. 2023; Liu et al. 2023.

    x0 ~ q(x0)                              a batch of training examples (images in [-1, 1], or latents)
    t ~ U[0, 1]  (or logit-normal)          t = 0 is the clean example, t = 1 pure noise
    eps ~ N(0, I)
    x_t = (1 - t) x0 + t eps                the straight path from the example to its noise
    gradient step on || (eps - x0) - v_theta(x_t, t) ||^2

The network learns the velocity v = dx_t/dt = eps - x0 of the straight path. This is Lipman et al.'s
optimal-transport path with sigma_min = 0 and Liu et al.'s rectified flow, in SD3's convention (Esser et al. 2024,
Sec. 3.1), which diffusers' ``FlowMatchEulerDiscreteScheduler`` follows: t runs from data (0) to noise (1), and the
network sees t as the float timestep 1000 t (:data:`TIMESTEP_SCALE`).

:class:`FlowMatchingLoss` is a ``loss_fn`` for :func:`dlcourse.training.train` (with ``schedule=None``), as
:class:`~dlcourse.models.VAELoss` is: the one loop trains flow models too. Reflow (Liu et al. 2023, 2-rectified
flow) trains on fixed (noise, sample) pairs drawn from a trained flow model instead of independent ones; the pairs
reach the loss through train()'s data: ``data={"x0": samples, "noise": noise}`` with
``FlowMatchingLoss(paired_noise="noise")``. train() draws each batch's samples and their noise with the same random
indices (as it does for any condition); the loss takes eps from the batch's "noise" entry instead of drawing it,
and does not pass that entry to the model.

Taught in notebooks/10_flow_matching.ipynb.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlcourse.training.flow_checks import check_flow_loss_call, check_flow_matching_loss

__all__ = ["TIMESTEP_SCALE", "T_DISTRIBUTIONS", "FlowMatchingLoss"]

TIMESTEP_SCALE = 1000  # the network sees t in [0, 1] as the float timestep 1000 t (SD3; diffusers' num_train_timesteps)
T_DISTRIBUTIONS = ("uniform", "logit_normal")


@dataclass
class FlowMatchingLoss:
    """The flow matching loss, usable as :func:`~dlcourse.training.train`'s ``loss_fn`` (with ``schedule=None``).

    loss = mean over the batch and its entries of ((eps - x0) - model(x_t, 1000 t))^2, x_t = (1 - t) x0 + t eps.

    t_distribution: how t is drawn: "uniform", t ~ U[0, 1] (Liu et al. 2023), or "logit_normal", t = sigmoid(n),
        n ~ N(logit_mean, logit_std^2) (Esser et al. 2024, Sec. 3.1: SD3 trains with m = 0, s = 1), which spends
        more of the training on the middle of the path, where the velocity is hardest to predict.
    paired_noise: None (a fresh eps for every example at every step), or the name of the data entry that holds
        each example's own noise (reflow: ``data={"x0": samples, "noise": noise}``, ``paired_noise="noise"``);
        that entry is taken out of the conditions the model gets.
    """

    t_distribution: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    paired_noise: str | None = None

    def __post_init__(self) -> None:
        check_flow_matching_loss(
            self.t_distribution, self.logit_mean, self.logit_std, self.paired_noise, T_DISTRIBUTIONS
        )

    def sample_t(self, batch: int, device: torch.device | str, generator: torch.Generator | None = None) -> Tensor:
        """t (batch,) float32 in [0, 1] from ``t_distribution``, drawn from ``generator`` (None: torch's global RNG)."""
        if self.t_distribution == "uniform":
            return torch.rand(batch, device=device, generator=generator)
        n = torch.randn(batch, device=device, generator=generator)
        return torch.sigmoid(self.logit_mean + self.logit_std * n)  # Esser et al. 2024, Sec. 3.1: logit-normal

    def __call__(
        self,
        model: nn.Module,
        x0: Tensor,
        schedule: Any = None,
        prediction_type: Any = None,
        *,
        t: Tensor | None = None,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> Tensor:
        """The loss of a batch, a scalar tensor; :func:`~dlcourse.training.ddpm_loss`'s signature.

        model: called as model(x_t (B, C, H, W), 1000 t (B,) float, **conditions) -> velocity (B, C, H, W).
        x0: (B, C, H, W) clean examples (their range is not checked here: train() checks the data once).
        schedule: must be None (flow matching has no noise schedule); prediction_type: unused (train() passes
            its config's; a flow model always predicts the velocity eps - x0).
        t: (B,) float times in [0, 1] (checked: one host sync), drawn from ``t_distribution`` if None;
        eps: (B, C, H, W), drawn from N(0, I) if None (and taken from the batch with ``paired_noise``).
        generator: a torch.Generator on x0's device for t, then eps (None: torch's global RNG).
        model_kwargs: the batch's conditions, passed to the model by name (all but the paired noise).
        """
        check_flow_loss_call(schedule, x0, t, eps, model_kwargs, self.paired_noise)
        conditions = dict(model_kwargs or {})
        if self.paired_noise is not None:
            eps = conditions.pop(self.paired_noise)  # reflow: the noise this sample came from
        if t is None:
            t = self.sample_t(x0.shape[0], x0.device, generator)
        if eps is None:
            eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        t_ = t.to(x0.dtype).view(-1, 1, 1, 1)
        x_t = (1 - t_) * x0 + t_ * eps  # the straight path (Liu et al. 2023, Eq. (1): X_t, with time reversed)
        target = eps - x0  # its velocity dx_t/dt
        prediction = model(x_t, TIMESTEP_SCALE * t, **conditions)
        return F.mse_loss(prediction.float(), target.float())  # Liu et al. 2023, Eq. (1) (the mean over all entries)
