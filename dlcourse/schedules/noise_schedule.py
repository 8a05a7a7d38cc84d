"""``NoiseSchedule``: a schedule's constants as buffers on the device, and the forward process that uses them.

Buffers (all (T,) float32): ``betas``, ``alphas`` = 1 - betas, ``alpha_bar`` = cumprod(alphas), computed in
float64 and then stored as float32. Its ``q_sample`` / ``q_step`` check their inputs and call the pure
functions of :mod:`dlcourse.schedules.forward`.

Taught in notebooks/01_forward_process.ipynb, from "One step of the chain" to "Mistakes caught early"
(the checks); every later notebook builds one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlcourse.schedules.betas import make_betas
from dlcourse.schedules.checks import as_timesteps, check_model_range, check_noise_shape, check_schedule_betas
from dlcourse.schedules.forward import q_sample, q_step, snr

__all__ = ["NoiseSchedule"]


def _noise_like(x: Tensor, eps: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """The given eps (checked to have x's shape), or fresh N(0, I) noise shaped like x (from ``generator``)."""
    if eps is not None:
        check_noise_shape(eps, x)
        return eps
    if generator is None:
        return torch.randn_like(x)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class NoiseSchedule(nn.Module):
    """The constants of a noise schedule as float32 buffers, and the forward process that uses them.

    betas: (T,), each in (0, 1] (a last beta of 1 gives alpha_bar_T = 0: zero terminal SNR).
    Move it with ``.to(device)`` like any module. It has no weights.

    ``check=True`` (the default) on ``q_sample`` / ``q_step`` validates values, which costs a host sync:
    t must be in [0, T-1], and ``q_sample``'s x0 must lie in [-1, 1]. The training loop passes
    ``check=False``. Shape checks (t's batch size vs x's, eps's shape) are pure Python and always on.
    """

    betas: Tensor
    alphas: Tensor
    alpha_bar: Tensor

    def __init__(self, betas: Tensor | Sequence[float]):
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        check_schedule_betas(betas, allow_one=True)
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)  # Ho et al. 2020, Sec. 2, above Eq. (4)
        self.register_buffer("betas", betas.float())
        self.register_buffer("alphas", alphas.float())
        self.register_buffer("alpha_bar", alpha_bar.float())

    @classmethod
    def from_name(cls, name: str, num_timesteps: int = 1000, **kwargs: float) -> NoiseSchedule:
        """``NoiseSchedule(make_betas(name, num_timesteps, **kwargs))``, e.g. ``from_name("cosine")``."""
        return cls(make_betas(name, num_timesteps, **kwargs))

    @property
    def num_timesteps(self) -> int:
        """T, the number of steps; valid timesteps are 0..T-1."""
        return self.betas.shape[0]

    def snr(self, t: Tensor | int | None = None) -> Tensor:
        """SNR alpha_bar_t / (1 - alpha_bar_t): (T,) for all timesteps, or at the given t ((B,), or ())."""
        values = snr(self.alpha_bar)
        return values if t is None else values[t]

    def q_sample(
        self,
        x0: Tensor,
        t: Tensor | int,
        eps: Tensor | None = None,
        check: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Noise clean images x0 (B, C, H, W) in [-1, 1] straight to step t (B,) (Ho et al. 2020, Eq. (4)).

        eps: (B, C, H, W) or None to draw it (from ``generator`` if given). Returns x_t only; pass eps
        yourself when you need it (as the training loss does). check=True validates x0's range and t's values
        (one host sync each); shapes are always checked.
        """
        t = as_timesteps(t, x0, self.num_timesteps, check)
        if check:
            check_model_range(x0)
        return q_sample(x0, t, _noise_like(x0, eps, generator), self.alpha_bar)

    def q_step(
        self,
        x_prev: Tensor,
        t: Tensor | int,
        eps: Tensor | None = None,
        check: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One step of the chain, x_{t-1} -> x_t, a sample of q(x_t | x_{t-1}) (Ho et al. 2020, Eq. (2)).

        x_prev: (B, C, H, W), the clean x0 when t = 0; t: (B,) or an int. check=True validates t's values
        (x_prev is noisy, so its range is not checked). Returns x_t only.
        """
        t = as_timesteps(t, x_prev, self.num_timesteps, check)
        return q_step(x_prev, t, _noise_like(x_prev, eps, generator), self.betas)

    def extra_repr(self) -> str:
        return (
            f"num_timesteps={self.num_timesteps}, beta[0]={self.betas[0].item():.3g}, "
            f"beta[T-1]={self.betas[-1].item():.3g}"
        )
