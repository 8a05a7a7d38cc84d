"""Noise schedules and the forward (noising) process of DDPM.

The forward process is a fixed Markov chain that adds a little Gaussian noise at each step
(Ho et al. 2020, "Denoising Diffusion Probabilistic Models", Eq. (2)):

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)

and it has a closed form for jumping straight from the data x_0 to any step (Eq. (4)):

    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I),
    alpha_t = 1 - beta_t,   alpha_bar_t = prod_{s <= t} alpha_s.

Timestep convention (the same as diffusers): timesteps are 0-indexed, t in {0, ..., T-1}, and index t is
the paper's step t + 1. So ``betas[0]`` is the paper's beta_1, ``alpha_bar[0] = 1 - beta_1`` (a little noise
already), and ``alpha_bar[T - 1]`` is the paper's alpha_bar_T (almost pure noise). Passing t = T is the
classic off-by-one bug; it raises a ValueError here.

One concept per module: :mod:`~dlcourse.schedules.betas` (the ``*_betas`` schedules and ``make_betas``),
:mod:`~dlcourse.schedules.forward` (``q_sample``, ``q_step``, ``snr``, ``extract`` as pure functions, so a
notebook can show each formula on its own), :mod:`~dlcourse.schedules.noise_schedule` (``NoiseSchedule``:
the constants as buffers, so ``.to(device)`` moves them, calling those functions), and the input checks in
:mod:`~dlcourse.schedules.checks`.

Taught in notebooks/01_forward_process.ipynb.
"""

from dlcourse.schedules.betas import cosine_betas, linear_betas, make_betas, scaled_linear_betas
from dlcourse.schedules.forward import extract, q_sample, q_step, snr
from dlcourse.schedules.noise_schedule import NoiseSchedule

__all__ = [
    "NoiseSchedule",
    "cosine_betas",
    "extract",
    "linear_betas",
    "make_betas",
    "q_sample",
    "q_step",
    "scaled_linear_betas",
    "snr",
]
