"""Noise schedules and the forward (noising) process of DDPM.

Taught in notebooks/01_forward_process.ipynb.

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

The maths lives in pure functions (``q_sample``, ``q_step``, ``snr``, the ``*_betas`` schedules) so a
notebook can show each formula on its own; ``NoiseSchedule`` holds the constants as buffers (so
``.to(device)`` moves them) and calls those functions.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

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

# Images are expected in [-1, 1]; allow a little slack for rounding (e.g. after a resize).
_RANGE_TOLERANCE = 1e-3


# ----------------------------------------------------------------------------------------------------------
# Beta schedules: pure functions returning betas of shape (T,) as float64.
# ----------------------------------------------------------------------------------------------------------


def _check_num_timesteps(num_timesteps: int) -> None:
    if (
        isinstance(num_timesteps, bool)
        or not isinstance(num_timesteps, numbers.Integral)
        or num_timesteps < 1
    ):
        raise ValueError(
            f"num_timesteps must be a positive integer (the number T of noising steps, 1000 in DDPM); "
            f"got {num_timesteps!r}."
        )


def linear_betas(num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """The linear schedule of DDPM: beta grows linearly from ``beta_start`` to ``beta_end``.

    Ho et al. 2020, Sec. 4: beta_1 = 1e-4 ... beta_T = 0.02 with T = 1000. Returns betas: (T,) float64.

    Taught in notebooks/01_forward_process.ipynb.
    """
    _check_num_timesteps(num_timesteps)
    return torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)


def scaled_linear_betas(
    num_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> Tensor:
    """Stable Diffusion's schedule, linear in sqrt(beta): betas = linspace(sqrt(b0), sqrt(b1), T) ** 2.

    diffusers calls it ``"scaled_linear"``. Returns betas: (T,) float64.

    Taught in notebooks/01_forward_process.ipynb (and used in notebooks/08_stable_diffusion.ipynb).
    """
    _check_num_timesteps(num_timesteps)
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def cosine_betas(num_timesteps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """The cosine schedule of Improved DDPM, with betas clipped at ``max_beta``.

    Nichol & Dhariwal 2021, Eq. (17): alpha_bar(t) = f(t) / f(0),
    f(t) = cos(((t / T) + s) / (1 + s) * pi / 2) ** 2, and beta_t = 1 - alpha_bar(t) / alpha_bar(t - 1),
    clipped to at most 0.999 so the last step (where alpha_bar -> 0 and beta -> 1) stays finite.
    diffusers calls it ``"squaredcos_cap_v2"``. Returns betas: (T,) float64.

    Taught in notebooks/01_forward_process.ipynb.
    """
    _check_num_timesteps(num_timesteps)
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps  # t / T for t = 0..T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2  # Nichol & Dhariwal 2021, Eq. (17)
    betas = 1 - f[1:] / f[:-1]  # beta_t = 1 - alpha_bar_t / alpha_bar_{t-1} (f(0) cancels)
    return betas.clamp(max=max_beta)  # clipping, Nichol & Dhariwal 2021, Sec. 3.2


_SCHEDULES: dict[str, Callable[..., Tensor]] = {
    "linear": linear_betas,
    "scaled_linear": scaled_linear_betas,
    "cosine": cosine_betas,
}


def make_betas(name: str, num_timesteps: int = 1000, **kwargs: float) -> Tensor:
    """Betas (T,) float64 of the schedule called ``name``: "linear", "scaled_linear" or "cosine".

    Extra keyword arguments go to the schedule function (e.g. ``beta_end=0.01`` for "linear").

    Taught in notebooks/01_forward_process.ipynb.
    """
    if name not in _SCHEDULES:
        raise ValueError(
            f"Unknown beta schedule {name!r}; choose one of {sorted(_SCHEDULES)}. "
            "(diffusers' 'squaredcos_cap_v2' is our 'cosine'.)"
        )
    return _SCHEDULES[name](num_timesteps, **kwargs)


# ----------------------------------------------------------------------------------------------------------
# The forward process as pure functions.
# ----------------------------------------------------------------------------------------------------------


def extract(values: Tensor, t: Tensor, x: Tensor) -> Tensor:
    """Pick ``values[t]`` per batch element and shape it to broadcast against ``x``.

    values: (T,) per-timestep constants (e.g. alpha_bar); t: (B,) long; x: (B, ...). Returns (B, 1, ..., 1)
    on x's device, in the dtype of ``values`` (keep the schedule on x's device, ``schedule.to(device)``, so
    this is a plain gather with no copy).

    Taught in notebooks/01_forward_process.ipynb.
    """
    out = values.to(x.device)[t.to(x.device)]
    return out.reshape(t.shape[0], *([1] * (x.ndim - 1)))


def q_sample(x0: Tensor, t: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """Closed-form forward process: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps.

    x0, eps: (B, ...); t: (B,) long in [0, T-1]; alpha_bar: (T,). Returns x_t: (B, ...) in x0's dtype.
    The coefficients are computed in alpha_bar's precision (float32) before the cast, so 1 - alpha_bar_t
    stays accurate under bf16/fp16 data. No validation: ``NoiseSchedule.q_sample`` is the checked version.

    Taught in notebooks/01_forward_process.ipynb.
    """
    ab = extract(alpha_bar, t, x0)
    signal, noise = ab.sqrt().to(x0.dtype), (1 - ab).sqrt().to(x0.dtype)
    return signal * x0 + noise * eps  # Ho et al. 2020, Eq. (4)


def q_step(x_prev: Tensor, t: Tensor, eps: Tensor, betas: Tensor) -> Tensor:
    """One step of the chain: x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) eps, a sample of q(x_t | x_{t-1}).

    x_prev, eps: (B, ...); t: (B,) long in [0, T-1] (for t = 0, x_prev is the clean data x0); betas: (T,).
    Applying it for t = 0, 1, ..., k gives a sample with the same distribution as ``q_sample(x0, k, ...)``.
    Returns x_t: (B, ...) in x_prev's dtype.

    Taught in notebooks/01_forward_process.ipynb.
    """
    beta = extract(betas, t, x_prev)
    mean_coef, std = (1 - beta).sqrt().to(x_prev.dtype), beta.sqrt().to(x_prev.dtype)
    return mean_coef * x_prev + std * eps  # Ho et al. 2020, Eq. (2)


def snr(alpha_bar: Tensor) -> Tensor:
    """Signal-to-noise ratio SNR(t) = alpha_bar_t / (1 - alpha_bar_t) (Kingma et al. 2021, Eq. (2) with
    alpha^2 = alpha_bar, sigma^2 = 1 - alpha_bar). Same shape as alpha_bar; decreasing in t.

    Taught in notebooks/01_forward_process.ipynb.
    """
    return alpha_bar / (1 - alpha_bar)


# ----------------------------------------------------------------------------------------------------------
# Validation helpers (shape checks are pure Python; value checks sync with the device and are optional).
# ----------------------------------------------------------------------------------------------------------


def _timestep_help(num_timesteps: int) -> str:
    return (
        f"Timesteps are 0-indexed integers in [0, {num_timesteps - 1}] (= [0, T-1]); index t is the paper's "
        f"step t+1, as in diffusers. If you count from 1 like the paper, subtract 1."
    )


def _as_timesteps(t: Tensor | int, x: Tensor, num_timesteps: int, check: bool) -> Tensor:
    """t as a LongTensor (B,) on x's device; an int or a 0-d tensor is broadcast to the batch."""
    batch = x.shape[0]
    if isinstance(t, Tensor):
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise ValueError(
                f"t must be an integer tensor (torch.long), got dtype {t.dtype}. "
                f"{_timestep_help(num_timesteps)} Use t.long() if you built it with floats."
            )
        if t.ndim == 0:
            t = t.expand(batch)
        if t.shape != (batch,):
            raise ValueError(
                f"t must have shape (B,) = ({batch},), one timestep per image in the batch, or be a single "
                f"integer; got shape {tuple(t.shape)}. {_timestep_help(num_timesteps)}"
            )
        t = t.to(device=x.device, dtype=torch.long)
        if check:
            lo, hi = torch.stack(torch.aminmax(t)).tolist()  # one host sync; skipped with check=False
            if lo < 0 or hi >= num_timesteps:
                raise ValueError(
                    f"t has values in [{lo}, {hi}], outside the schedule. {_timestep_help(num_timesteps)}"
                )
        return t
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise ValueError(
            f"t must be an integer or a LongTensor (B,), got {t!r}. {_timestep_help(num_timesteps)}"
        )
    if not 0 <= t < num_timesteps:
        raise ValueError(f"t = {t} is outside the schedule. {_timestep_help(num_timesteps)}")
    return torch.full((batch,), int(t), dtype=torch.long, device=x.device)


def _check_model_range(x0: Tensor) -> None:
    lo, hi = torch.stack(torch.aminmax(x0.detach())).float().tolist()  # one host sync
    if not (lo >= -1 - _RANGE_TOLERANCE and hi <= 1 + _RANGE_TOLERANCE):  # written so NaN fails too
        raise ValueError(
            f"x0 has values in [{lo:.4g}, {hi:.4g}], but the course scales images to [-1, 1] before noising "
            "them. If your images are in [0, 1], use dlcourse.data.to_model_range(x) (x * 2 - 1); if they "
            "are in [0, 255], divide by 255 first. Pass check=False to skip this check (the training loop "
            "does)."
        )


def _noise_like(x: Tensor, eps: Tensor | None, generator: torch.Generator | None) -> Tensor:
    if eps is None:
        if generator is None:
            return torch.randn_like(x)
        return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if eps.shape != x.shape:
        raise ValueError(
            f"eps must have the same shape as the image it noises, {tuple(x.shape)}; got {tuple(eps.shape)}."
        )
    return eps


# ----------------------------------------------------------------------------------------------------------
# The module holding the constants.
# ----------------------------------------------------------------------------------------------------------


class NoiseSchedule(nn.Module):
    """The constants of a noise schedule as float32 buffers, and the forward process that uses them.

    Buffers (all (T,) float32): ``betas``, ``alphas`` = 1 - betas, ``alpha_bar`` = cumprod(alphas) (computed
    in float64, then stored as float32). Move it with ``.to(device)`` like any module. It has no weights.

    ``check=True`` (the default) on ``q_sample`` / ``q_step`` validates values, which costs a host sync:
    t must be in [0, T-1], and ``q_sample``'s x0 must lie in [-1, 1]. The training loop passes
    ``check=False``.
    Shape checks (t's batch size vs x's, eps's shape) are pure Python and always on.

    Taught in notebooks/01_forward_process.ipynb.
    """

    betas: Tensor
    alphas: Tensor
    alpha_bar: Tensor

    def __init__(self, betas: Tensor | Sequence[float]):
        super().__init__()
        betas = torch.as_tensor(betas, dtype=torch.float64).detach().cpu()
        if betas.ndim != 1 or betas.numel() == 0:
            raise ValueError(f"betas must be a non-empty 1-D tensor (T,), got shape {tuple(betas.shape)}.")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise ValueError(
                f"betas must lie in (0, 1] (each is the variance of the noise added at one step); got values "
                f"in [{betas.min().item():.4g}, {betas.max().item():.4g}]."
            )
        alphas = 1 - betas
        alpha_bar = torch.cumprod(alphas, dim=0)  # Ho et al. 2020, Sec. 2, above Eq. (4)
        self.register_buffer("betas", betas.float())
        self.register_buffer("alphas", alphas.float())
        self.register_buffer("alpha_bar", alpha_bar.float())

    @classmethod
    def from_name(cls, name: str, num_timesteps: int = 1000, **kwargs: float) -> NoiseSchedule:
        """``NoiseSchedule(make_betas(name, num_timesteps, **kwargs))``, e.g. ``from_name("cosine")``.

        Taught in notebooks/01_forward_process.ipynb.
        """
        return cls(make_betas(name, num_timesteps, **kwargs))

    @property
    def num_timesteps(self) -> int:
        """T, the number of steps; valid timesteps are 0..T-1."""
        return self.betas.shape[0]

    def snr(self, t: Tensor | int | None = None) -> Tensor:
        """SNR alpha_bar_t / (1 - alpha_bar_t): (T,) for all timesteps, or at the given t ((B,), or ()).

        Taught in notebooks/01_forward_process.ipynb.
        """
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

        Taught in notebooks/01_forward_process.ipynb.
        """
        t = _as_timesteps(t, x0, self.num_timesteps, check)
        if check:
            _check_model_range(x0)
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

        Taught in notebooks/01_forward_process.ipynb.
        """
        t = _as_timesteps(t, x_prev, self.num_timesteps, check)
        return q_step(x_prev, t, _noise_like(x_prev, eps, generator), self.betas)

    def extra_repr(self) -> str:
        return (
            f"num_timesteps={self.num_timesteps}, beta[0]={self.betas[0].item():.3g}, "
            f"beta[T-1]={self.betas[-1].item():.3g}"
        )
