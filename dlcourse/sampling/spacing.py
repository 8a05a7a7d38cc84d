"""Which timesteps a sampler visits: all T of them, or num_steps of them spaced as diffusers spaces them.

Taught in notebooks/04_ddim_sampling.ipynb ("Which steps?", "Leading or trailing?"). Timesteps are 0-indexed,
t in {0, ..., T-1}, as in diffusers and :mod:`dlcourse.schedules`.

The course's default is "trailing", not diffusers' "leading": with few steps, leading starts below T-1, at
t = (S-1) * (T // S) (900 for S = 10, T = 1000). On the course's cosine schedule sqrt(alpha_bar_900) = 0.15, so
x_t there still carries signal that the sampler's x_T ~ N(0, I) lacks, and deterministic DDIM never recovers
(Lin et al. 2024, Sec. 3.3 and Table 2). Trailing starts at T-1 for every S. Stable Diffusion's pipeline reads
its own "leading" spacing from its scheduler config (:mod:`dlcourse.sd`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from dlcourse.sampling.checks import check_timesteps_args

__all__ = ["TIMESTEP_SPACINGS", "timesteps"]

TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")  # diffusers' timestep_spacing, Lin et al. 2024, Table 2


def timesteps(num_steps: int, num_timesteps: int, spacing: str = "trailing", steps_offset: int = 0) -> Tensor:
    """The num_steps timesteps a sampler visits, in decreasing order: LongTensor (num_steps,) on the CPU.

    The same as diffusers' ``set_timesteps`` for each ``timestep_spacing`` (Lin et al. 2024, Table 2), with
    T = num_timesteps:
    - "trailing" (the course's default; diffusers' default is "leading"): round(T - k T / num_steps) - 1 for
      k = 0, ..., num_steps-1; starts at T - 1 (pure noise), e.g. T=1000, 10 steps: 999, 899, ..., 99.
      diffusers' version sometimes returns one step too many, ending at -1 (e.g. T=1000, 61 steps); we keep the
      first num_steps.
    - "leading" (diffusers' default): k * (T // num_steps) + steps_offset for k = num_steps-1, ..., 0;
      e.g. T=1000, 10 steps: 900, 800, ..., 0. Stable Diffusion uses it with steps_offset=1.
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
