"""Which timesteps a sampler visits: all T of them, or num_steps of them spaced as diffusers spaces them.

Taught in notebooks/04_ddim_sampling.ipynb ("Which steps?"). Timesteps are 0-indexed, t in {0, ..., T-1},
as in diffusers and :mod:`dlcourse.schedules`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dlcourse.sampling.checks import check_timesteps_args

__all__ = ["TIMESTEP_SPACINGS", "timesteps"]

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")  # diffusers' timestep_spacing, Lin et al. 2024, Table 2


def timesteps(num_steps: int, num_timesteps: int, spacing: str = "leading", steps_offset: int = 0) -> Tensor:
    """The num_steps timesteps a sampler visits, in decreasing order: LongTensor (num_steps,) on the CPU.

    The same as diffusers' ``set_timesteps`` for each ``timestep_spacing`` (Lin et al. 2024, Table 2), with
    T = num_timesteps:
    - "leading" (diffusers' default): k * (T // num_steps) + steps_offset for k = num_steps-1, ..., 0;
      e.g. T=1000, 50 steps: 980, 960, ..., 0. Stable Diffusion uses steps_offset=1.
    - "trailing": round(T - k T / num_steps) - 1 for k = 0, ..., num_steps-1; starts at T - 1 (pure noise).
      diffusers' version sometimes returns one step too many, ending at -1 (e.g. T=1000, 61 steps); we keep the
      first num_steps.
    - "linspace": round(linspace(0, T - 1, num_steps)), reversed.
    num_steps = T gives every timestep, T-1, ..., 0, for all three.
    """
    check_timesteps_args(num_steps, num_timesteps, spacing, steps_offset, TIMESTEP_SPACINGS)
    if spacing == "leading":
        ts = np.arange(num_steps)[::-1] * (num_timesteps // num_steps) + steps_offset
    elif spacing == "trailing":
        ts = np.round(np.arange(num_timesteps, 0, -num_timesteps / num_steps))[:num_steps] - 1
    else:
        ts = np.linspace(0, num_timesteps - 1, num_steps).round()[::-1]
    return torch.from_numpy(ts.astype(np.int64))
