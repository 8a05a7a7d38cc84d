"""Noise levels as sigmas: the VP schedule seen as a VE one, Karras et al.'s spacing, and diffusers' choices.

Used by the ODE solvers of :mod:`dlcourse.sampling.solvers` (notebooks/04_ddim_sampling.ipynb, "Steps x sampler x
spacing, measured": the Heun and DPM-Solver++ rows).

The course's forward process is variance preserving (VP): x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.
Divide by sqrt(alpha_bar_t) and it becomes the variance-exploding (VE) process of Karras et al. 2022:

    x_sigma = x_t / sqrt(alpha_bar_t) = x0 + sigma_t eps,   sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t),

the same noise level written as a standard deviation (Karras et al. 2022, Table 1, "VP": sigma(t) and the scale
s(t) = sqrt(alpha_bar) = 1 / sqrt(1 + sigma^2)). sigma runs from about 0.01 at t = 0 to sigma_{T-1} (157 on DDPM's
linear schedule, about 2e4 on the course's cosine one); a sampler ends at sigma = 0, the clean image, where x_sigma and
x_t coincide. :func:`to_vp` and :func:`to_ve` convert between the two coordinates; a network always sees x_t.

Which sigmas a solver visits, as diffusers' schedulers choose them (tests/test_solvers.py checks the numbers):

- :func:`euler_sigmas`: ``EulerDiscreteScheduler`` and ``HeunDiscreteScheduler``. "default": num_steps timesteps
  spaced evenly from T-1 down to 0 (diffusers' timestep_spacing "linspace"), fractional in general, with the sigma at
  a fractional timestep interpolated linearly between the schedule's (:func:`t_to_sigma`); "karras": Eq. (5) between
  the schedule's smallest and largest sigma, each called at the fractional timestep of its sigma (:func:`sigma_to_t`).
- :func:`dpm_solver_sigmas`: ``DPMSolverMultistepScheduler``. "default": num_steps + 1 integer timesteps spaced
  evenly from T-1 to 0, the last replaced by sigma = 0; "karras": Eq. (5), called at the nearest integer timestep.
  diffusers rounds them so for every schedule but one: configured with ``beta_schedule="squaredcos_cap_v2"`` it means
  to keep them fractional, and its cast to int64 then truncates them (998 where the nearest is 999). We round for
  every schedule (diffusers' behaviour for a schedule given as ``trained_betas``).

Both end with sigma = 0 (diffusers' ``final_sigmas_type="zero"``). One difference we keep on purpose: for one step,
diffusers' "linspace" gives the single timestep 0 (numpy's linspace of one point is its start), the least noisy
level; :func:`euler_sigmas` starts at T-1 for every num_steps, so one step goes from pure noise to the clean image.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from dlcourse.sampling.solver_checks import check_decreasing_sigmas, check_karras_args, check_solver_sigmas_args
from dlcourse.schedules import NoiseSchedule

__all__ = [
    "SIGMA_KINDS",
    "SolverSigmas",
    "dpm_solver_sigmas",
    "euler_sigmas",
    "karras_sigmas",
    "sigma_to_t",
    "t_to_sigma",
    "to_ve",
    "to_vp",
    "vp_sigmas",
]

SIGMA_KINDS = ("default", "karras")  # each scheduler's own default spacing, or Karras et al. 2022, Eq. (5)


class SolverSigmas(NamedTuple):
    """The noise levels a solver visits, and the timestep it calls the network with at each.

    sigmas: (num_steps + 1,) float32, strictly decreasing, ending at 0 (the clean image). timesteps: (num_steps,),
    timesteps[i] goes with sigmas[i]: float32 (fractional) for Euler and Heun, int64 for DPM-Solver++, as in diffusers.
    """

    sigmas: Tensor
    timesteps: Tensor


def vp_sigmas(alpha_bar: Tensor) -> Tensor:
    """sigma_t = sqrt((1 - alpha_bar_t) / alpha_bar_t) (Karras et al. 2022, Table 1, "VP"); (T,) -> (T,), increasing.

    In alpha_bar's dtype (float32 for a :class:`~dlcourse.schedules.NoiseSchedule`, as diffusers computes them).
    """
    return ((1 - alpha_bar) / alpha_bar).sqrt()  # Karras et al. 2022, Table 1: sigma = sqrt(1 / alpha_bar - 1)


def to_vp(x_sigma: Tensor, sigma: float) -> Tensor:
    """x_t = x_sigma / sqrt(1 + sigma^2) = s(sigma) x_sigma (Karras et al. 2022, Table 1): what the network sees.

    x_sigma: (B, C, H, W). diffusers calls this ``scale_model_input``.
    """
    return x_sigma / (1 + sigma**2) ** 0.5


def to_ve(x_t: Tensor, sigma: float) -> Tensor:
    """x_sigma = x_t sqrt(1 + sigma^2) = x_t / sqrt(alpha_bar): the inverse of :func:`to_vp`. x_t: (B, C, H, W)."""
    return x_t * (1 + sigma**2) ** 0.5


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """num_steps noise levels from sigma_max down to sigma_min, then 0 (Karras et al. 2022, Eq. (5)).

    sigma_i = (sigma_max^(1/rho) + i / (N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho for i < N, sigma_N = 0:
    evenly spaced in sigma^(1/rho), so rho > 1 puts the steps near sigma_min, where the image's details form
    (rho = 7 is the paper's choice and diffusers' fixed one). One step (N = 1) is sigma_max, then 0.
    Returns (num_steps + 1,) float64.
    """
    check_karras_args(num_steps, sigma_min, sigma_max, rho)
    ramp = torch.from_numpy(np.linspace(0, 1, num_steps))  # i / (N - 1), numpy's values (diffusers')
    max_inv_rho, min_inv_rho = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho  # Karras et al. 2022, Eq. (5)
    return torch.cat([sigmas, sigmas.new_zeros(1)])  # sigma_N = 0, Eq. (5)


def t_to_sigma(t: Tensor, alpha_bar: Tensor) -> Tensor:
    """The sigma at fractional timesteps t, interpolated linearly between the schedule's (numpy's ``np.interp``).

    t: (N,) in [0, T-1]; alpha_bar: (T,). Returns (N,) float64. This is how diffusers' EulerDiscreteScheduler
    turns its "linspace" timesteps into sigmas (its default ``interpolation_type="linear"``).
    """
    sigmas = vp_sigmas(alpha_bar).double()
    t = t.double()
    low = t.floor().long().clamp(0, sigmas.shape[0] - 2)
    return sigmas[low] + (t - low) * (sigmas[low + 1] - sigmas[low])  # np.interp's formula


def sigma_to_t(sigma: Tensor, alpha_bar: Tensor) -> Tensor:
    """The fractional timestep of each noise level: log sigma interpolated between the schedule's log sigmas.

    sigma: (N,) > 0; alpha_bar: (T,). Returns (N,) float64 in [0, T-1] (clamped at the ends). diffusers'
    ``_sigma_to_t``: with low the last timestep whose sigma is at most sigma, t = low + w with
    w = (log sigma - log sigma_low) / (log sigma_{low+1} - log sigma_low).
    """
    log_sigmas = vp_sigmas(alpha_bar).log().double()  # (T,), increasing; float32 logs, as diffusers takes them
    log_sigma = sigma.double().clamp(min=1e-10).log()
    low = ((log_sigmas[None, :] <= log_sigma[:, None]).sum(dim=1) - 1).clamp(0, log_sigmas.shape[0] - 2)
    w = ((log_sigmas[low] - log_sigma) / (log_sigmas[low] - log_sigmas[low + 1])).clamp(0, 1)
    return low + w


def _sigma_range(alpha_bar: Tensor) -> tuple[float, float]:
    """(sigma_min, sigma_max) of a schedule: its sigmas at t = 0 and t = T-1, where diffusers' Eq. (5) runs between."""
    sigmas = vp_sigmas(alpha_bar)
    return sigmas[0].item(), sigmas[-1].item()


def euler_sigmas(schedule: NoiseSchedule, num_steps: int, kind: str = "default", rho: float = 7.0) -> SolverSigmas:
    """diffusers' EulerDiscreteScheduler's (and HeunDiscreteScheduler's) sigmas and timesteps; see the module docstring.

    kind: "default" (timestep_spacing "linspace", sigmas interpolated linearly) or "karras" (``use_karras_sigmas=True``:
    Eq. (5) from the schedule's largest sigma to its smallest, with rho). Timesteps are float32, fractional.
    """
    check_solver_sigmas_args(num_steps, kind, rho, SIGMA_KINDS)
    alpha_bar = schedule.alpha_bar.detach().cpu()
    T = alpha_bar.shape[0]
    if kind == "karras":
        sigmas = karras_sigmas(num_steps, *_sigma_range(alpha_bar), rho)
        ts = sigma_to_t(sigmas[:-1], alpha_bar)
    else:
        ts = torch.from_numpy(np.linspace(T - 1, 0, num_steps).astype(np.float32))  # "linspace", from T-1 down to 0
        sigmas = torch.cat([t_to_sigma(ts, alpha_bar), torch.zeros(1, dtype=torch.float64)])
    sigmas = sigmas.float()
    check_decreasing_sigmas(sigmas, num_steps, kind, "Euler and Heun", T)
    return SolverSigmas(sigmas, ts.float())


def dpm_solver_sigmas(schedule: NoiseSchedule, num_steps: int, kind: str = "default", rho: float = 7.0) -> SolverSigmas:
    """diffusers' DPMSolverMultistepScheduler's sigmas and timesteps; see the module docstring.

    kind: "default" (num_steps + 1 integer timesteps evenly spaced from T-1 to 0, the last, t = 0, replaced by
    sigma = 0) or "karras" (Eq. (5), each called at the nearest integer timestep). Timesteps are int64. With
    "default", num_steps must be below T: there are only T-1 integer timesteps above 0 (diffusers then repeats one,
    and its sampler returns NaN; we raise). Eq. (5)'s sigmas are all distinct, though several may share a timestep.
    """
    check_solver_sigmas_args(num_steps, kind, rho, SIGMA_KINDS)
    alpha_bar = schedule.alpha_bar.detach().cpu()
    T = alpha_bar.shape[0]
    if kind == "karras":
        sigmas = karras_sigmas(num_steps, *_sigma_range(alpha_bar), rho)
        ts = sigma_to_t(sigmas[:-1], alpha_bar).round().long()
    else:
        ts = torch.from_numpy(np.linspace(0, T - 1, num_steps + 1).round()[::-1][:-1].astype(np.int64))
        sigmas = torch.cat([vp_sigmas(alpha_bar)[ts].double(), torch.zeros(1, dtype=torch.float64)])
    sigmas = sigmas.float()
    check_decreasing_sigmas(sigmas, num_steps, kind, "DPM-Solver++", T)
    return SolverSigmas(sigmas, ts)
