"""One step of an ODE solver as a pure function: (model output, x at sigma) -> (x at sigma_next, x0_pred).

Used by :mod:`dlcourse.sampling.solvers` (notebooks/04_ddim_sampling.ipynb, "Steps x sampler x spacing, measured").
Their numbers equal diffusers' ``EulerDiscreteScheduler.step``, ``HeunDiscreteScheduler.step`` and
``DPMSolverMultistepScheduler.step`` (tests/test_solvers.py checks it).

Coordinates. The steps move x = x_sigma = x_t / sqrt(alpha_bar) = x0 + sigma eps, the VE form of the course's process
(:mod:`dlcourse.sampling.sigmas`), along the probability-flow ODE, which in these coordinates is

    dx / dsigma = (x - D(x; sigma)) / sigma

(Karras et al. 2022, Eq. (1) with Eq. (3) and sigma(t) = t, s(t) = 1), D the denoiser's estimate of x0. The network is
the course's usual one: it sees x_t = x / sqrt(1 + sigma^2) (:func:`~dlcourse.sampling.sigmas.to_vp`) and predicts
eps, v or x0 there, which :func:`dlcourse.parameterization.predicted_x0_and_eps` turns into D = x0_pred at
alpha_bar = 1 / (1 + sigma^2). sigma and sigma_next are Python floats; a step to sigma_next = 0 lands on the clean
image.

Arithmetic. Algorithm 1's Euler update x + (sigma_next - sigma) d is computed as x0_pred + sigma_next d, the same
number (x - sigma d = x0_pred), and Heun's average-slope update as the Euler point plus
(sigma_next - sigma)(d' - d) / 2; diffusers computes the paper's form. On the course's cosine schedule the first step
starts at sigma = 2e4, where x + (sigma_next - sigma) d subtracts two numbers of size 2e4 to get one of size
sigma_next: float32 keeps it to about 1e-3. Heun's correction magnifies that by sigma / sigma_next, and with
diffusers' default sigmas (2e4 to 5.7) its final images move by a few 1e-2. Written our way, the first step keeps
float32's precision (tests/test_solvers.py measures both against a float64 run).

DDIM is Euler. For an eps model, (x - D) / sigma is the predicted eps itself, so an Euler step from sigma to sigma_next
gives x0_pred + sigma_next eps_pred: DDIM's eta = 0 update (Song et al. 2021, Eq. (12)) divided by sqrt(alpha_bar_prev)
(their Sec. 4.3 writes DDIM this way). :func:`probability_flow_euler_step` is that Euler step with ``ddim_step``'s
arguments; it equals ``ddim_step`` (tests/test_solvers.py checks it).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from dlcourse.parameterization import predicted_x0_and_eps
from dlcourse.sampling.checks import check_ddim_step
from dlcourse.sampling.sigmas import to_ve, to_vp, vp_sigmas
from dlcourse.sampling.solver_checks import (
    check_dpm_solver_step,
    check_heun_step,
    check_solver_step,
    check_timestep_pair,
)
from dlcourse.sampling.steps import FINAL_ALPHA_BAR, StepOutput
from dlcourse.schedules import NoiseSchedule

__all__ = ["denoised", "dpm_solver_2m_step", "euler_step", "heun_step", "probability_flow_euler_step"]


def denoised(
    model_output: Tensor,
    sigma: float,
    x: Tensor,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
) -> Tensor:
    """D(x; sigma): the network's estimate of x0 from its output at x_t = x / sqrt(1 + sigma^2). (B, C, H, W).

    model_output, x: (B, C, H, W), x in VE coordinates; clip_x0: None or a (low, high) range for the estimate.
    """
    alpha_bar = torch.tensor(1 / (1 + sigma**2), dtype=torch.float64)  # Karras et al. 2022, Table 1 ("VP")
    x0_pred, _ = predicted_x0_and_eps(model_output.to(x.dtype), to_vp(x, sigma), alpha_bar, prediction_type)
    return x0_pred if clip_x0 is None else x0_pred.clamp(*clip_x0)


def euler_step(
    model_output: Tensor,
    sigma: float,
    sigma_next: float,
    x: Tensor,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
) -> StepOutput:
    """One Euler step of the probability-flow ODE, sigma -> sigma_next (Karras et al. 2022, Algorithm 1, lines 4-5).

    model_output: (B, C, H, W), the network's output at (x_t = x / sqrt(1 + sigma^2), the timestep of sigma); x:
    (B, C, H, W) in VE coordinates (see the module docstring). clip_x0: None or a (low, high) range for x0_pred.
    sigma_next may be 0 (the clean image) or above sigma (inversion). Returns StepOutput(x_next, x0_pred): x_next at
    sigma_next (VE), x0_pred the D(x; sigma) it used. Equals ``EulerDiscreteScheduler.step`` (no churn).
    """
    check_solver_step(model_output, sigma, sigma_next, x, prediction_type, clip_x0)
    x0_pred = denoised(model_output, sigma, x, prediction_type, clip_x0)
    d = (x - x0_pred) / sigma  # dx/dsigma, Algorithm 1, line 4
    return StepOutput(x0_pred + sigma_next * d, x0_pred)  # Algorithm 1, line 5: x + (sigma_next - sigma) d


def heun_step(
    model_output: Tensor,
    model_output_next: Tensor,
    sigma: float,
    sigma_next: float,
    x: Tensor,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
) -> StepOutput:
    """One Heun step, sigma -> sigma_next > 0 (Karras et al. 2022, Algorithm 1, lines 4-8): Euler, then corrected.

    model_output: the network's output at (x, sigma), as for :func:`euler_step`; model_output_next: its output at
    Euler's x_next = ``euler_step(model_output, sigma, sigma_next, x, ...).x_prev``, at sigma_next. The step averages
    the slopes at both ends. Returns StepOutput(x_next, x0_pred), x0_pred = D(x; sigma). Two network evaluations a
    step; the step to sigma = 0 is an Euler step (line 6). Equals two calls of ``HeunDiscreteScheduler.step``.
    """
    check_solver_step(model_output, sigma, sigma_next, x, prediction_type, clip_x0)
    check_heun_step(model_output_next, x, sigma_next)
    x0_pred = denoised(model_output, sigma, x, prediction_type, clip_x0)
    d = (x - x0_pred) / sigma  # Algorithm 1, line 4
    x_euler = x0_pred + sigma_next * d  # line 5, as in euler_step
    d_next = (x_euler - denoised(model_output_next, sigma_next, x_euler, prediction_type, clip_x0)) / sigma_next  # 7
    return StepOutput(x_euler + (sigma_next - sigma) * (d_next - d) / 2, x0_pred)  # line 8: x + (s' - s)(d + d') / 2


def dpm_solver_2m_step(
    model_output: Tensor,
    sigma: float,
    sigma_next: float,
    x: Tensor,
    last_x0_pred: Tensor | None = None,
    last_sigma: float | None = None,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
) -> StepOutput:
    """One DPM-Solver++(2M) step, sigma -> sigma_next < sigma (Lu et al. 2022, "DPM-Solver++", Algorithm 2).

    model_output, x: as for :func:`euler_step`. last_x0_pred, last_sigma: the previous step's x0_pred and its sigma
    (the multistep history): with them the step is second order, without them first order (Algorithm 2's first step,
    and diffusers' last step to sigma = 0). Returns StepOutput(x_next, x0_pred); keep x0_pred for the next step.

    Algorithm 2 is written for x_t; divided by alpha_{t_i} = sqrt(alpha_bar) it reads, in VE coordinates,
    x_next = e^{-h} x - (e^{-h} - 1) D with e^{-h} = sigma_next / sigma (h: the step in lambda = -log sigma, half
    the log-SNR). With D = x0_pred (first order) this is the Euler step, so DPM-Solver++(1) = DDIM.
    Equals ``DPMSolverMultistepScheduler.step`` (solver_order=2, algorithm_type="dpmsolver++", solver_type="midpoint").
    """
    check_solver_step(model_output, sigma, sigma_next, x, prediction_type, clip_x0)
    check_dpm_solver_step(sigma, sigma_next, last_x0_pred, last_sigma, x)
    x0_pred = denoised(model_output, sigma, x, prediction_type, clip_x0)
    D = x0_pred  # first order: Algorithm 2's first step
    if last_x0_pred is not None:
        h = math.log(sigma / sigma_next)  # h_i = lambda_{t_i} - lambda_{t_{i-1}}, lambda = -log sigma
        h_last = math.log(last_sigma / sigma)  # h_{i-1}
        r = h_last / h  # Algorithm 2: r_i = h_{i-1} / h_i
        D = (1 + 1 / (2 * r)) * x0_pred - 1 / (2 * r) * last_x0_pred  # Algorithm 2: D_i
    ratio = sigma_next / sigma  # e^{-h_i} = sigma_{t_i} / sigma_{t_{i-1}} in VE
    return StepOutput(ratio * x - (ratio - 1) * D, x0_pred)  # Algorithm 2's update, divided by alpha_{t_i}


def probability_flow_euler_step(
    model_output: Tensor,
    t: int,
    prev_t: int,
    x_t: Tensor,
    schedule: NoiseSchedule,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
) -> StepOutput:
    """DDIM with eta = 0, computed as an Euler step of the probability-flow ODE in (sigma, x / sqrt(alpha_bar)).

    The arguments and result of ``ddim_step(model_output, t, prev_t, x_t, schedule, 0.0, prediction_type, None,
    clip_x0)`` (int timesteps, prev_t < 0 the clean image), and the same numbers: move x_t to VE coordinates at
    sigma_t, take :func:`euler_step` to sigma_prev, move back (Song et al. 2021, Sec. 4.3, Eqs. (13)-(14)). Returns
    StepOutput(x_prev, x0_pred), x_prev (B, C, H, W) at prev_t in VP coordinates. It reads two schedule values on
    the host: a function to show the equality on a page, not one for a sampling loop.
    """
    check_timestep_pair(t, prev_t)
    check_ddim_step(model_output, t, prev_t, x_t, schedule, 0.0, prediction_type, None, clip_x0)
    alpha_bar = schedule.alpha_bar.detach().cpu().double()
    sigma = vp_sigmas(alpha_bar[t]).item()
    sigma_prev = vp_sigmas(alpha_bar[prev_t] if prev_t >= 0 else torch.tensor(FINAL_ALPHA_BAR)).item()
    x_prev, x0_pred = euler_step(model_output, sigma, sigma_prev, to_ve(x_t, sigma), prediction_type, clip_x0)
    return StepOutput(to_vp(x_prev, sigma_prev), x0_pred)
