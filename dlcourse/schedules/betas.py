"""Beta schedules: how much noise each step of the forward process adds, as pure functions.

A schedule is the list beta_1, ..., beta_T of the variances of the noise added at each step, each in (0, 1).
Every function here returns betas of shape (T,) as float64 (``NoiseSchedule`` stores them as float32 after
computing alpha_bar in float64), and refuses parameters that would put a beta outside (0, 1).

Taught in notebooks/01_forward_process.ipynb, "Beta schedules" (linear and cosine).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

import torch
from torch import Tensor

from dlcourse.schedules.checks import (
    check_beta,
    check_cosine_offset,
    check_increasing,
    check_num_timesteps,
    check_schedule_betas,
)

__all__ = ["cosine_betas", "linear_betas", "make_betas", "scaled_linear_betas"]


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """The linear schedule of DDPM: beta grows linearly from ``beta_start`` to ``beta_end``.

    Ho et al. 2020, Sec. 4: beta_1 = 1e-4 ... beta_T = 0.02 with T = 1000. Returns betas: (T,) float64.
    """
    check_num_timesteps(num_timesteps)
    check_beta("linear", "beta_start", beta_start, default=1e-4)
    check_beta("linear", "beta_end", beta_end, default=0.02)
    check_increasing("linear", beta_start, beta_end)
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def scaled_linear_betas(
    num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> Tensor:
    """Stable Diffusion's schedule, linear in sqrt(beta): betas = linspace(sqrt(b0), sqrt(b1), T) ** 2.

    diffusers calls it ``"scaled_linear"``. Returns betas: (T,) float64.
    """
    check_num_timesteps(num_timesteps)
    check_beta("scaled_linear", "beta_start", beta_start, default=0.00085)
    check_beta("scaled_linear", "beta_end", beta_end, default=0.012)
    check_increasing("scaled_linear", beta_start, beta_end)
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule of Improved DDPM, with betas clipped at ``max_beta``.

    Nichol & Dhariwal 2021, Eq. (17): alpha_bar(t) = f(t) / f(0),
    f(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2, and beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1),
    clipped to at most 0.999 so the last step (where alpha_bar -> 0 and beta -> 1) stays finite.
    diffusers calls it ``"squaredcos_cap_v2"``. Returns betas: (T,) float64.
    """
    check_num_timesteps(num_timesteps)
    check_cosine_offset(s)
    check_beta("cosine", "max_beta", max_beta, default=0.999)
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps  # t / T for t = 0..T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2  # Nichol & Dhariwal 2021, Eq. (17)
    betas = 1 - f[1:] / f[:-1]  # beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} (f(0) cancels)
    betas = betas.clamp(max=max_beta)  # clipping, Nichol & Dhariwal 2021, Sec. 3.2
    check_schedule_betas(betas, allow_one=False)  # a guard: an absurd s (1e20) rounds every beta to 0
    return betas


_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "cosine": cosine_betas,
}


def make_betas(name: str, num_timesteps: int = 1000, **kwargs: float) -> Tensor:
    """Betas (T,) float64 of the schedule called ``name``: "linear", "scaled_linear" or "cosine".

    Extra keyword arguments go to the schedule function (e.g. ``beta_end=0.01`` for "linear").
    """
    if name not in _SCHEDULES:
        raise ValueError(
            f"Unknown beta schedule {name!r}; choose one of {sorted(_SCHEDULES)}. "
            "(diffusers' 'squaredcos_cap_v2' is our 'cosine'.)"
        )
    schedule = _SCHEDULES[name]
    known = [p for p in inspect.signature(schedule).parameters if p != "num_timesteps"]
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TypeError(f"the {name!r} schedule has no parameter {', '.join(unknown)}; it takes {known}.")
    return schedule(num_timesteps, **kwargs)
