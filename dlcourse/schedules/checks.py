"""Input checks of the forward process, kept out of the code a learner reads: each error says what was wrong
and how to fix it. Shape checks are pure Python; value checks synchronise with the device and are optional."""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

# Images are expected in [-1, 1]; allow a little slack for rounding (e.g. after a resize).
RANGE_TOLERANCE = 1e-3


def check_num_timesteps(num_timesteps: int) -> None:
    if (
        isinstance(num_timesteps, bool)
        or not isinstance(num_timesteps, numbers.Integral)
        or num_timesteps < 1
    ):
        raise ValueError(
            f"num_timesteps must be a positive integer (the number T of noising steps, 1000 in DDPM); "
            f"got {num_timesteps!r}."
        )


def check_beta(schedule: str, name: str, value: float, default: float) -> None:
    """One beta of a named schedule (``beta_start``, ``beta_end``, ``max_beta``): a number in (0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:  # NaN fails too
        raise ValueError(
            f"{schedule} schedule: {name}={value!r} is not in (0, 1). Each beta is the variance of the noise "
            f"added at one step and sqrt(1 - beta) scales the signal, so a beta must be above 0 and below 1. "
            f"Pass a value in (0, 1), e.g. the default {name}={default}."
        )


def check_increasing(schedule: str, beta_start: float, beta_end: float) -> None:
    if beta_start > beta_end:
        raise ValueError(
            f"{schedule} schedule: beta_start={beta_start} is larger than beta_end={beta_end}, so the noise "
            f"would shrink over time; the forward process adds more noise at later steps. Did you swap them? "
            f"Pass beta_start <= beta_end."
        )


def check_cosine_offset(s: float) -> None:
    if isinstance(s, bool) or not isinstance(s, numbers.Real) or not 0 <= s < math.inf:
        raise ValueError(
            f"cosine schedule: the offset s={s!r} must be a number >= 0 (Nichol & Dhariwal 2021 use "
            f"s = 0.008, so that beta_1 is not vanishingly small)."
        )


def check_schedule_betas(betas: Tensor, *, allow_one: bool) -> None:
    """The betas of a whole schedule: (T,), each in (0, 1), or (0, 1] when ``allow_one``."""
    if betas.ndim != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor (T,), got shape {tuple(betas.shape)}.")
    inside = (betas > 0) & ((betas <= 1) if allow_one else (betas < 1))  # NaN fails both
    if not bool(inside.all()):
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise ValueError(
            f"betas must lie in {interval} (each is the variance of the noise added at one step); got values "
            f"in [{betas.min().item():.4g}, {betas.max().item():.4g}]."
        )


def _timestep_help(num_timesteps: int) -> str:
    return (
        f"Timesteps are 0-indexed integers in [0, {num_timesteps - 1}] (= [0, T-1]); index t is the paper's "
        f"step t+1, as in diffusers. If you count from 1 like the paper, subtract 1."
    )


def as_timesteps(t: Tensor | int, x: Tensor, num_timesteps: int, check: bool) -> Tensor:
    """t as a LongTensor (B,) on x's device; an int or a 0-d tensor is broadcast to the batch.

    check: also check t's values (one host synchronisation); its type and shape are always checked.
    """
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


def check_model_range(x0: Tensor) -> None:
    """x0 must lie in [-1, 1] (to RANGE_TOLERANCE); one host synchronisation."""
    lo, hi = torch.stack(torch.aminmax(x0.detach())).float().tolist()
    if not (lo >= -1 - RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE):  # written so NaN fails too
        raise ValueError(
            f"x0 has values in [{lo:.4g}, {hi:.4g}], but the course scales images to [-1, 1] before noising "
            "them. If your images are in [0, 1], use dlcourse.data.to_model_range(x) (x * 2 - 1); if they "
            "are in [0, 255], divide by 255 first. Latents have no fixed range: noise them with check=False "
            "(the training loop skips this check too)."
        )


def check_noise_shape(eps: Tensor, x: Tensor) -> None:
    if eps.shape != x.shape:
        raise ValueError(
            f"eps must have the same shape as the image it noises, {tuple(x.shape)}; got {tuple(eps.shape)}."
        )
