"""One reverse step as a pure function: (model output, x_t) -> (x_prev, x0_pred), for DDPM and for DDIM.

Taught in notebooks/03_ddpm_training.ipynb ("Algorithm 2: one reverse step", :func:`ddpm_step`) and
notebooks/04_ddim_sampling.ipynb ("The DDIM update", :func:`ddim_step`). Their numbers equal diffusers'
``DDPMScheduler.step`` and ``DDIMScheduler.step`` (tests/test_sampling.py checks it).

``prev_t`` is the timestep a step lands on; ``prev_t < 0`` means "the clean image", where alpha_bar is
:data:`FINAL_ALPHA_BAR` = 1 (diffusers' DDPMScheduler always, and DDIMScheduler's default
``set_alpha_to_one=True``), so the last step returns x0_pred itself. A strided step t -> prev_t uses the alpha of
that jump, alpha = alpha_bar_t / alpha_bar_prev, as diffusers does; at full steps it is ``schedule.alphas[t]``.
The steps take their noise as an argument, so a caller (or a test) decides where the random numbers come from.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dlcourse.parameterization import predicted_x0_and_eps
from dlcourse.sampling.checks import check_ddim_step, check_ddpm_step
from dlcourse.schedules import NoiseSchedule, extract

__all__ = ["FINAL_ALPHA_BAR", "StepOutput", "ddim_step", "ddpm_step"]

FINAL_ALPHA_BAR = 1.0  # alpha_bar "after" the last step (prev_t < 0): the clean image, no noise left

Timestep = int | Tensor


class StepOutput(NamedTuple):
    """One reverse step's result; unpack it as ``x_prev, x0_pred = ddim_step(...)``.

    x_prev: (B, C, H, W), the sample at prev_t. x0_pred: (B, C, H, W), the model's estimate of the clean image
    from x_t (clipped to clip_x0 when given), what a denoising strip shows.
    """

    x_prev: Tensor
    x0_pred: Tensor


def _alpha_bar_at(schedule: NoiseSchedule, t: Timestep, x: Tensor) -> Tensor:
    """alpha_bar_t ready to broadcast against x: a 0-d tensor for an int t, (B, 1, ..., 1) for a tensor t.

    t < 0 gives FINAL_ALPHA_BAR. A tensor t gathers on x's device (keep the schedule there:
    ``schedule.to(device)``, else each call copies it). An int t leaves a CPU schedule on the CPU: its 0-d
    values enter GPU kernels as plain numbers, with no copy and no host synchronisation.
    """
    alpha_bar = schedule.alpha_bar
    if isinstance(t, Tensor):
        t = t.to(x.device).expand(x.shape[0])
        values = extract(alpha_bar, t.clamp(min=0), x)
        return torch.where(t.reshape(values.shape) >= 0, values, FINAL_ALPHA_BAR)
    if alpha_bar.device.type != "cpu":
        alpha_bar = alpha_bar.to(x.device)
    return alpha_bar.new_full((), FINAL_ALPHA_BAR) if t < 0 else alpha_bar[t]


def ddpm_step(
    model_output: Tensor,
    t: Timestep,
    prev_t: Timestep,
    x_t: Tensor,
    schedule: NoiseSchedule,
    prediction_type: str = "eps",
    noise: Tensor | None = None,
    clip_x0: tuple[float, float] | None = None,
) -> StepOutput:
    """One ancestral step x_t -> x_prev, a sample of p(x_prev | x_t) (Ho et al. 2020, Algorithm 2, line 4).

    model_output, x_t, noise: (B, C, H, W); t, prev_t: ints or LongTensors (B,) (prev_t < 0: the final step).
    The mean is the posterior mean of q(x_prev | x_t, x0) with x0 <- x0_pred (Eq. (7)), and the variance is
    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t (diffusers' variance_type="fixed_small").
    Strided steps (prev_t < t - 1) use beta_t = 1 - alpha_bar_t / alpha_bar_prev, as DDPMScheduler does.
    clip_x0: None (no clipping) or a (low, high) range for x0_pred, (-1, 1) for images.

    noise ~ N(0, I) is required unless prev_t is an int < 0 (the final step adds none); we raise rather than
    silently return the mean. Returns StepOutput(x_prev, x0_pred) in x_t's dtype. Equals
    ``DDPMScheduler.step`` given the same noise (clip_x0=(-r, r): clip_sample=True, clip_sample_range=r).
    """
    check_ddpm_step(model_output, t, prev_t, x_t, schedule, prediction_type, noise, clip_x0)
    alpha_bar_t = _alpha_bar_at(schedule, t, x_t)
    alpha_bar_prev = _alpha_bar_at(schedule, prev_t, x_t)
    alpha_t = alpha_bar_t / alpha_bar_prev  # alpha of the jump t -> prev_t; = schedule.alphas[t] at full steps
    beta_t = 1 - alpha_t

    x0_pred, _ = predicted_x0_and_eps(model_output.to(x_t.dtype), x_t, alpha_bar_t, prediction_type)
    if clip_x0 is not None:
        x0_pred = x0_pred.clamp(*clip_x0)

    x0_coef = alpha_bar_prev.sqrt() * beta_t / (1 - alpha_bar_t)  # Ho et al. 2020, Eq. (7)
    xt_coef = alpha_t.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar_t)  # Ho et al. 2020, Eq. (7)
    mean = x0_coef * x0_pred + xt_coef * x_t  # posterior mean mu_tilde(x_t, x0_pred), Eq. (7)
    if noise is None:  # the final step: prev_t < 0
        return StepOutput(mean, x0_pred)
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t  # beta_tilde, Eq. (7); sigma_t^2 of Sec. 3.2
    return StepOutput(mean + variance.sqrt() * noise, x0_pred)  # Algorithm 2, line 4


def ddim_step(
    model_output: Tensor,
    t: Timestep,
    prev_t: Timestep,
    x_t: Tensor,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    prediction_type: str = "eps",
    noise: Tensor | None = None,
    clip_x0: tuple[float, float] | None = None,
) -> StepOutput:
    """One DDIM step x_t -> x_prev (Song et al. 2021, Eq. (12), with sigma_t(eta) from Eq. (16)).

    model_output, x_t, noise: (B, C, H, W); t, prev_t: ints or LongTensors (B,) (prev_t < 0: the final step).
    x_prev = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps_pred + sigma noise, with
    sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev).
    eta = 0 is deterministic (noise may be None); eta = 1 gives sigma^2 = DDPM's beta_tilde, and then the step
    equals :func:`ddpm_step`. noise is required when eta > 0, except on the final step.

    clip_x0: None (no clipping) or a (low, high) range, (-1, 1) for images. When clipping, eps_pred is
    recomputed from the clipped x0_pred (Eq. (4) solved for eps), as in improved-diffusion and GLIDE, so x0_pred
    and eps_pred stay consistent with x_t. This equals ``DDIMScheduler.step(..., use_clipped_model_output=True)``
    with clip_sample=True (and plain ``DDIMScheduler.step`` without clipping).

    prev_t > t (with eta = 0) runs the step upwards in time: DDIM inversion, image -> noise.
    Returns StepOutput(x_prev, x0_pred) in x_t's dtype.
    """
    check_ddim_step(model_output, t, prev_t, x_t, schedule, eta, prediction_type, noise, clip_x0)
    alpha_bar_t = _alpha_bar_at(schedule, t, x_t)
    alpha_bar_prev = _alpha_bar_at(schedule, prev_t, x_t)

    x0_pred, eps_pred = predicted_x0_and_eps(model_output.to(x_t.dtype), x_t, alpha_bar_t, prediction_type)
    if clip_x0 is not None:
        x0_pred = x0_pred.clamp(*clip_x0)
        eps_pred = (x_t - alpha_bar_t.sqrt() * x0_pred) / (1 - alpha_bar_t).sqrt()  # Ho et al. 2020, Eq. (4)

    # sigma_t(eta), Song et al. 2021, Eq. (16). The clamp only removes round-off (and keeps inversion finite).
    variance = ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)).clamp(min=0)
    sigma = eta * variance.sqrt()
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps_pred  # "direction pointing to x_t", Eq. (12)
    x_prev = alpha_bar_prev.sqrt() * x0_pred + direction  # "predicted x0" term + direction, Eq. (12)
    if eta > 0 and noise is not None:
        x_prev = x_prev + sigma * noise  # "random noise" term, Eq. (12)
    return StepOutput(x_prev, x0_pred)
