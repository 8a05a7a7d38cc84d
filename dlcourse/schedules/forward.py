"""The forward process as pure functions: one step of the chain, the closed form, and the SNR.

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)                      (Ho et al. 2020, Eq. (2))
    x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps,   eps ~ N(0, I)       (Ho et al. 2020, Eq. (4))

No input checks here, so each formula reads on its own: :class:`~dlcourse.schedules.NoiseSchedule`'s
methods of the same names check their inputs and call these.

Taught in notebooks/01_forward_process.ipynb, "One step of the chain", "The closed form" and
"Signal-to-noise ratio".
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["extract", "q_sample", "q_step", "snr"]


def extract(values: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """Pick ``values[t]`` per batch element and shape it to broadcast against ``x``.

    values: (T,) per-timestep constants (e.g. alpha_bar); t: (B,) long; x: (B, ...). Returns (B, 1, ..., 1)
    on x's device, in the dtype of ``values`` (keep the schedule on x's device, ``schedule.to(device)``, so
    this is a plain gather with no copy).
    """
    out = values.to(x.device)[t.to(x.device)]
    return out.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def q_sample(x0: Tensor, t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """Closed-form forward process: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.

    x0, eps: (B, ...); t: (B,) long in [0, T-1]; alpha_bar: (T,). Returns x_t: (B, ...) in x0's dtype.
    The coefficients are computed in alpha_bar's precision (float32) before the cast, so 1 - alpha_bar_t
    stays accurate under bf16/fp16 data. No validation: ``NoiseSchedule.q_sample`` is the checked version.
    """
    ab = extract(alpha_bar, t, x0)
    signal, noise = ab.sqrt().to(x0.dtype), (1 - ab).sqrt().to(x0.dtype)
    return signal * x0 + noise * eps  # Ho et al. 2020, Eq. (4)


def q_step(x_prev: Tensor, t: Tensor, eps: Tensor, betas: Tensor) -> Tensor:
    """One step of the chain: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps, a sample of q(x_t | x_{t-1}).

    x_prev, eps: (B, ...); t: (B,) long in [0, T-1] (for t = 0, x_prev is the clean data x0); betas: (T,).
    Applying it for t = 0, 1, ..., k gives a sample with the same distribution as ``q_sample(x0, k, ...)``.
    Returns x_t: (B, ...) in x_prev's dtype. No validation: ``NoiseSchedule.q_step`` is the checked version.
    """
    beta = extract(betas, t, x_prev)
    mean_coef, std = (1 - beta).sqrt().to(x_prev.dtype), beta.sqrt().to(x_prev.dtype)
    return mean_coef * x_prev + std * eps  # Ho et al. 2020, Eq. (2)


def snr(alpha_bar: Tensor) -> Tensor:
    """Signal-to-noise ratio SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021, Eq. (2) with
    alpha^2 = alpha_bar, sigma^2 = 1 - alpha_bar). Same shape as alpha_bar; decreasing in t."""
    return alpha_bar / (1 - alpha_bar)
