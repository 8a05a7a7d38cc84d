"""Sampling: run the reverse process from pure noise x_T down to an image x_0, with DDPM or DDIM.

Taught in notebooks/03_ddpm_training.ipynb (DDPM, Ho et al. 2020, Algorithm 2) and
notebooks/04_ddim_sampling.ipynb (DDIM, Song et al. 2021).

Three layers, each readable on its own:

1. One reverse step as a pure function: :func:`ddpm_step` and :func:`ddim_step` turn (model output, x_t) into
   (x_prev, x0_pred). Their numbers equal diffusers' ``DDPMScheduler.step`` and ``DDIMScheduler.step``
   (tests/test_sampling.py checks it).
2. :func:`timesteps`: which timesteps a sampler visits (all T of them, or num_steps spaced like diffusers').
3. The samplers :func:`ddpm_sample` and :func:`ddim_sample`, one shared signature: the loop
   "for each t: model -> step", written out.

Conventions (the same as diffusers and :mod:`dlcourse.schedules`):

- Timesteps are 0-indexed, t in {0, ..., T-1}. ``prev_t`` is the timestep a step lands on: the next one in the
  sampler's sequence (t - 1 at full steps, t - T // num_steps for evenly spaced strided steps). ``prev_t < 0``
  means "the clean image", where alpha_bar is :data:`FINAL_ALPHA_BAR` = 1 (diffusers' DDPMScheduler always, and
  DDIMScheduler's default ``set_alpha_to_one=True``), so the last step returns x0_pred itself.
- A strided step t -> prev_t uses the alpha of that jump, alpha = alpha_bar_t / alpha_bar_prev (as diffusers
  does); at full steps it is exactly ``schedule.alphas[t]``.
- ``clip_x0`` (diffusers' ``clip_sample``, default True there and here) clamps the predicted x0 to [-1, 1],
  where the course's images live. Turn it off for latent diffusion: latents are not in [-1, 1].
- Randomness: the step functions take their noise as an argument; the samplers draw it, outside any CUDA graph,
  from ``generator`` (a ``torch.Generator`` on the device of ``noise``). So "same noise, same generator seed ->
  same image", and tests can feed diffusers the very same noise.
- No host synchronisation: an int t (what the samplers pass) reads its schedule constants as 0-d tensors; a
  schedule left on the CPU is fine, its 0-d values enter GPU kernels as plain numbers. A tensor t (B,) is gathered
  on x's device: move the schedule there first (``schedule.to(device)``), else every step copies it. Tensor
  timesteps are checked for shape only, never for values (that would need a sync).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from dlcourse.cuda_graph import graphed_denoiser
from dlcourse.parameterization import check_prediction_type, predicted_x0_and_eps
from dlcourse.runtime import Precision
from dlcourse.schedules import NoiseSchedule, extract

__all__ = [
    "FINAL_ALPHA_BAR",
    "TIMESTEP_SPACINGS",
    "StepOutput",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "make_denoiser",
    "timesteps",
]

FINAL_ALPHA_BAR = 1.0  # alpha_bar "after" the last step (prev_t < 0): the clean image, no noise left
TIMESTEP_SPACINGS = ("leading", "trailing", "linspace")  # diffusers' timestep_spacing, Lin et al. 2024, Table 2

Timestep = int | Tensor


class StepOutput(NamedTuple):
    """One reverse step's result; unpack it as ``x_prev, x0_pred = ddim_step(...)``.

    x_prev: (B, C, H, W), the sample at prev_t. x0_pred: (B, C, H, W), the model's estimate of the clean image
    from x_t (clipped to [-1, 1] when clip_x0), what a denoising strip shows.
    """

    x_prev: Tensor
    x0_pred: Tensor


# ----------------------------------------------------------------------------------------------------------
# Validation (pure Python: shapes, types and int values only, never a host sync).
# ----------------------------------------------------------------------------------------------------------


def _check_timestep(name: str, t: Timestep, x: Tensor, num_timesteps: int, allow_negative: bool) -> None:
    help_text = f"Timesteps are 0-indexed integers in [0, {num_timesteps - 1}] (= [0, T-1]), as in diffusers."
    if isinstance(t, Tensor):
        if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise ValueError(f"{name} must be an integer tensor (torch.long), got dtype {t.dtype}. {help_text}")
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != x.shape[0]):
            raise ValueError(
                f"{name} must be an int, a 0-d tensor or a (B,) = ({x.shape[0]},) tensor with one timestep per "
                f"image; got shape {tuple(t.shape)}."
            )
        return
    if isinstance(t, bool) or not isinstance(t, numbers.Integral):
        raise TypeError(f"{name} must be an int or a LongTensor (B,), got {t!r}. {help_text}")
    if t >= num_timesteps or (t < 0 and not allow_negative):
        allowed = "below T" if allow_negative else "in [0, T-1]"
        raise ValueError(f"{name} = {t} must be {allowed} (T = {num_timesteps}). {help_text}")


def _check_step_inputs(
    model_output: Tensor, t: Timestep, prev_t: Timestep, x_t: Tensor, schedule: NoiseSchedule, noise: Tensor | None
) -> None:
    if model_output.shape != x_t.shape:
        raise ValueError(
            f"model_output must have the shape of x_t, {tuple(x_t.shape)}; got {tuple(model_output.shape)}. "
            "A model that also predicts a variance outputs 2C channels: split it and pass the first C."
        )
    if noise is not None and noise.shape != x_t.shape:
        raise ValueError(f"noise must have the shape of x_t, {tuple(x_t.shape)}; got {tuple(noise.shape)}.")
    _check_timestep("t", t, x_t, schedule.num_timesteps, allow_negative=False)
    _check_timestep("prev_t", prev_t, x_t, schedule.num_timesteps, allow_negative=True)


def _is_final(prev_t: Timestep) -> bool:
    """True when prev_t is an int < 0: the step lands on the clean image and adds no noise."""
    return not isinstance(prev_t, Tensor) and prev_t < 0


def _check_eta(eta: float) -> None:
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0 <= eta <= 1:
        raise ValueError(
            f"eta must be a number in [0, 1]: 0 is deterministic DDIM, 1 adds DDPM's posterior variance "
            f"(Song et al. 2021, Eq. (16)); got {eta!r}. Above 1, sigma^2 can exceed 1 - alpha_bar_prev."
        )


# ----------------------------------------------------------------------------------------------------------
# One reverse step.
# ----------------------------------------------------------------------------------------------------------


def _alpha_bar_at(schedule: NoiseSchedule, t: Timestep, x: Tensor) -> Tensor:
    """alpha_bar_t ready to broadcast against x: a 0-d tensor for an int t, (B, 1, ..., 1) for a tensor t.

    t < 0 gives FINAL_ALPHA_BAR. A tensor t gathers on x's device (keep the schedule there:
    ``schedule.to(device)``, else each call copies it). An int t leaves a CPU schedule on the CPU: its 0-d
    values enter GPU kernels as plain numbers, with no copy and no sync.
    """
    alpha_bar = schedule.alpha_bar
    if isinstance(t, Tensor):
        t = t.to(x.device).expand(x.shape[0])
        values = extract(alpha_bar, t.clamp(min=0), x)
        return torch.where(t.reshape(values.shape) >= 0, values, FINAL_ALPHA_BAR)
    if alpha_bar.device.type != "cpu":
        alpha_bar = alpha_bar.to(x.device)
    return alpha_bar.new_full((), FINAL_ALPHA_BAR) if t < 0 else alpha_bar[t]


def ddpm_step(
    model_output: Tensor,
    t: Timestep,
    prev_t: Timestep,
    x_t: Tensor,
    schedule: NoiseSchedule,
    prediction_type: str = "eps",
    noise: Tensor | None = None,
    clip_x0: bool = True,
) -> StepOutput:
    """One ancestral step x_t -> x_prev, a sample of p(x_prev | x_t) (Ho et al. 2020, Algorithm 2, line 4).

    model_output, x_t, noise: (B, C, H, W); t, prev_t: ints or LongTensors (B,) (prev_t < 0: the final step).
    The mean is the posterior mean of q(x_prev | x_t, x0) with x0 <- x0_pred (Eq. (7)), and the variance is
    beta_tilde = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t (diffusers' variance_type="fixed_small").
    Strided steps (prev_t < t - 1) use beta_t = 1 - alpha_bar_t / alpha_bar_prev, as DDPMScheduler does.

    noise ~ N(0, I) is required unless prev_t is an int < 0 (the final step adds none); we raise rather than
    silently return the mean. Returns StepOutput(x_prev, x0_pred) in x_t's dtype.
    Equals ``DDPMScheduler.step`` (clip_sample=clip_x0) given the same noise.

    Taught in notebooks/03_ddpm_training.ipynb.
    """
    check_prediction_type(prediction_type)
    _check_step_inputs(model_output, t, prev_t, x_t, schedule, noise)
    if not isinstance(t, Tensor) and not isinstance(prev_t, Tensor) and prev_t >= t:
        raise ValueError(f"DDPM steps go down in time: prev_t must be < t, got t={t}, prev_t={prev_t}.")
    if noise is None and not _is_final(prev_t):
        raise ValueError(
            "ddpm_step needs noise (B, C, H, W) ~ N(0, I) for every step but the last (prev_t < 0): pass "
            "noise=torch.randn(x_t.shape, generator=g, device=x_t.device)."
        )
    alpha_bar_t = _alpha_bar_at(schedule, t, x_t)
    alpha_bar_prev = _alpha_bar_at(schedule, prev_t, x_t)
    alpha_t = alpha_bar_t / alpha_bar_prev  # alpha of the jump t -> prev_t; = schedule.alphas[t] at full steps
    beta_t = 1 - alpha_t

    x0_pred, _ = predicted_x0_and_eps(model_output.to(x_t.dtype), x_t, alpha_bar_t, prediction_type)
    if clip_x0:
        x0_pred = x0_pred.clamp(-1, 1)

    x0_coef = alpha_bar_prev.sqrt() * beta_t / (1 - alpha_bar_t)  # Ho et al. 2020, Eq. (7)
    xt_coef = alpha_t.sqrt() * (1 - alpha_bar_prev) / (1 - alpha_bar_t)  # Ho et al. 2020, Eq. (7)
    mean = x0_coef * x0_pred + xt_coef * x_t  # posterior mean mu_tilde(x_t, x0_pred), Eq. (7)
    if noise is None:
        return StepOutput(mean, x0_pred)
    variance = (1 - alpha_bar_prev) / (1 - alpha_bar_t) * beta_t  # beta_tilde, Eq. (7); sigma_t^2 of Sec. 3.2
    return StepOutput(mean + variance.sqrt() * noise, x0_pred)  # Algorithm 2, line 4


def ddim_step(
    model_output: Tensor,
    t: Timestep,
    prev_t: Timestep,
    x_t: Tensor,
    schedule: NoiseSchedule,
    eta: float = 0.0,
    prediction_type: str = "eps",
    noise: Tensor | None = None,
    clip_x0: bool = True,
) -> StepOutput:
    """One DDIM step x_t -> x_prev (Song et al. 2021, Eq. (12), with sigma_t(eta) from Eq. (16)).

    model_output, x_t, noise: (B, C, H, W); t, prev_t: ints or LongTensors (B,) (prev_t < 0: the final step).
    x_prev = sqrt(alpha_bar_prev) x0_pred + sqrt(1 - alpha_bar_prev - sigma^2) eps_pred + sigma noise, with
    sigma = eta sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) sqrt(1 - alpha_bar_t / alpha_bar_prev).
    eta = 0 is deterministic (noise may be None); eta = 1 gives sigma^2 = DDPM's beta_tilde, and then the step
    equals :func:`ddpm_step`. noise is required when eta > 0, except on the final step.

    With clip_x0, eps_pred is recomputed from the clipped x0_pred (Eq. (4) solved for eps), as in
    improved-diffusion and GLIDE, so x0_pred and eps_pred stay consistent with x_t. This equals
    ``DDIMScheduler.step(..., use_clipped_model_output=True)`` with clip_sample=True (and plain
    ``DDIMScheduler.step`` without clipping).

    prev_t > t (with eta = 0) runs the step upwards in time: DDIM inversion, image -> noise.
    Returns StepOutput(x_prev, x0_pred) in x_t's dtype.

    Taught in notebooks/04_ddim_sampling.ipynb.
    """
    _check_eta(eta)
    check_prediction_type(prediction_type)
    _check_step_inputs(model_output, t, prev_t, x_t, schedule, noise)
    if not isinstance(t, Tensor) and not isinstance(prev_t, Tensor) and (prev_t == t or (eta > 0 and prev_t > t)):
        raise ValueError(
            f"prev_t must differ from t (and be below it when eta > 0: only deterministic DDIM can run upwards, "
            f"for inversion); got t={t}, prev_t={prev_t}, eta={eta}."
        )
    if eta > 0 and noise is None and not _is_final(prev_t):
        raise ValueError(
            f"ddim_step with eta={eta} > 0 adds noise: pass noise=torch.randn(x_t.shape, generator=g, "
            "device=x_t.device) (only the final step, prev_t < 0, adds none)."
        )
    alpha_bar_t = _alpha_bar_at(schedule, t, x_t)
    alpha_bar_prev = _alpha_bar_at(schedule, prev_t, x_t)

    x0_pred, eps_pred = predicted_x0_and_eps(model_output.to(x_t.dtype), x_t, alpha_bar_t, prediction_type)
    if clip_x0:
        x0_pred = x0_pred.clamp(-1, 1)
        eps_pred = (x_t - alpha_bar_t.sqrt() * x0_pred) / (1 - alpha_bar_t).sqrt()  # Ho et al. 2020, Eq. (4)

    # sigma_t(eta), Song et al. 2021, Eq. (16). The clamp only removes round-off (and keeps inversion finite).
    variance = ((1 - alpha_bar_prev) / (1 - alpha_bar_t) * (1 - alpha_bar_t / alpha_bar_prev)).clamp(min=0)
    sigma = eta * variance.sqrt()
    direction = (1 - alpha_bar_prev - sigma**2).clamp(min=0).sqrt() * eps_pred  # "direction pointing to x_t", Eq. (12)
    x_prev = alpha_bar_prev.sqrt() * x0_pred + direction  # "predicted x0" term + direction, Eq. (12)
    if eta > 0 and noise is not None:
        x_prev = x_prev + sigma * noise  # "random noise" term, Eq. (12)
    return StepOutput(x_prev, x0_pred)


# ----------------------------------------------------------------------------------------------------------
# Which timesteps to visit.
# ----------------------------------------------------------------------------------------------------------


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

    Taught in notebooks/04_ddim_sampling.ipynb.
    """
    for name, value, low in (("num_steps", num_steps, 1), ("num_timesteps", num_timesteps, 1)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if num_steps > num_timesteps:
        raise ValueError(
            f"num_steps={num_steps} is more than the T={num_timesteps} timesteps the model was trained on; a "
            f"sampler visits each timestep at most once. Use num_steps <= {num_timesteps}."
        )
    if spacing not in TIMESTEP_SPACINGS:
        raise ValueError(f"Unknown timestep spacing {spacing!r}; choose one of {TIMESTEP_SPACINGS}.")
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, numbers.Integral) or steps_offset < 0:
        raise ValueError(f"steps_offset must be a non-negative integer, got {steps_offset!r}.")
    if steps_offset and spacing != "leading":
        raise ValueError(f"steps_offset only applies to 'leading' spacing (as in diffusers); got {spacing!r}.")

    if spacing == "leading":
        ts = np.arange(num_steps)[::-1] * (num_timesteps // num_steps) + steps_offset
        if ts[0] >= num_timesteps:
            raise ValueError(
                f"steps_offset={steps_offset} pushes the first timestep to {ts[0]}, past T-1 = {num_timesteps - 1}. "
                "Use fewer steps or a smaller offset."
            )
    elif spacing == "trailing":
        ts = np.round(np.arange(num_timesteps, 0, -num_timesteps / num_steps))[:num_steps] - 1
    else:
        ts = np.linspace(0, num_timesteps - 1, num_steps).round()[::-1]
    return torch.from_numpy(ts.astype(np.int64))


# ----------------------------------------------------------------------------------------------------------
# The samplers.
# ----------------------------------------------------------------------------------------------------------


def make_denoiser(
    model: nn.Module,
    x: Tensor,
    model_kwargs: Mapping[str, Any] | None = None,
    precision: Precision | None = None,
    fast: bool = False,
) -> Callable[[Tensor, int], Tensor]:
    """The function a sampler calls at each step: ``denoise(x_t, t) -> model(x_t, t (B,), **model_kwargs)``.

    x: (B, C, H, W), an example input (only its shape, dtype and device are used); t: an int. Returns the model
    output in float32. With ``fast=True`` and x on a CUDA GPU, the call replays a cached CUDA graph
    (:func:`dlcourse.cuda_graph.graphed_denoiser`); otherwise (fast=False, or on a CPU, where fast is quietly
    ignored) it is a plain call under ``precision.autocast()`` (fp32 when precision is None).
    Call it under torch.inference_mode() / no_grad, as the samplers do.

    Taught in notebooks/04_ddim_sampling.ipynb (the speed table).
    """
    model_kwargs = dict(model_kwargs or {})
    if fast and x.is_cuda:
        return graphed_denoiser(model, x, model_kwargs, precision)

    def denoise(x_t: Tensor, t: int) -> Tensor:
        t_batch = torch.full((x_t.shape[0],), t, dtype=torch.long, device=x_t.device)  # no host->device copy
        with precision.autocast() if precision is not None else nullcontext():
            return model(x_t, t_batch, **model_kwargs).float()

    return denoise


@contextmanager
def _sampling_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (dropout off) and torch.inference_mode; every submodule's train/eval flag restored on exit."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for module, training in flags:
            module.training = training


def _check_sampler_inputs(
    schedule: NoiseSchedule,
    noise: Tensor,
    prediction_type: str,
    generator: torch.Generator | None,
    callback: Callable | None,
    model_kwargs: Mapping[str, Any] | None,
) -> None:
    if not isinstance(noise, Tensor) or noise.ndim != 4 or not noise.is_floating_point():
        got = f"shape {tuple(noise.shape)}, dtype {noise.dtype}" if isinstance(noise, Tensor) else repr(noise)
        raise ValueError(
            f"noise must be the starting x_T, a float tensor (B, C, H, W); got {got}. Draw it with "
            "torch.randn(B, C, H, W, generator=g, device=device) (add a batch dimension for a single image)."
        )
    check_prediction_type(prediction_type)
    if generator is not None:
        gen_device, device = torch.device(generator.device), noise.device
        if gen_device.type != device.type or (gen_device.index or 0) != (device.index or 0):
            raise ValueError(
                f"generator is on {gen_device} but noise is on {device}; the per-step noise is drawn where the "
                f"images are. Use torch.Generator(device=noise.device).manual_seed(seed)."
            )
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(step_index, t, x_t, x0_pred); got {callback!r}.")
    if model_kwargs is not None and not isinstance(model_kwargs, Mapping):
        raise TypeError(
            f"model_kwargs must be a dict of extra model arguments, e.g. {{'context': c}}; got {model_kwargs!r}."
        )
    if not hasattr(schedule, "alpha_bar") or not hasattr(schedule, "num_timesteps"):
        raise TypeError(f"schedule must be a dlcourse.schedules.NoiseSchedule, got {type(schedule).__name__}.")


def _gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """z ~ N(0, I) shaped like x, drawn from ``generator`` (torch's global RNG when None)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ddpm_sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    noise: Tensor,
    *,
    num_steps: int | None = None,
    prediction_type: str = "eps",
    clip_x0: bool = True,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int, Tensor, Tensor], None] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    precision: Precision | None = None,
    fast: bool = False,
) -> Tensor:
    """Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), from x_T = noise down to x_0.

    model(x_t, t, **model_kwargs) predicts ``prediction_type`` ("eps", "v" or "x0"); noise: (B, C, H, W), the
    starting x_T (so "same noise, same image" given the same generator seed). num_steps: None for all T steps,
    fewer for strided DDPM as in diffusers' DDPMScheduler (see :func:`timesteps` for the spacings).
    generator: draws the per-step noise z (on noise's device; None uses torch's global RNG).
    callback(step_index, t, x_t, x0_pred) is called after every step with the step's input x_t and the model's
    x0 estimate (a denoising strip); it should not call .item()/.cpu() if you care about speed. Its tensors are
    inference tensors: ``.clone()`` them outside inference mode if you need them in autograd.
    precision: its autocast wraps the model call (None: fp32). fast: replay a CUDA graph of the model call
    (ignored on a CPU; see :mod:`dlcourse.cuda_graph`).
    The model runs in eval mode under torch.inference_mode; its train/eval flags are restored afterwards.
    Returns x_0: (B, C, H, W) float32, an ordinary tensor (usable as training data).

    Taught in notebooks/03_ddpm_training.ipynb.
    """
    _check_sampler_inputs(schedule, noise, prediction_type, generator, callback, model_kwargs)
    T = schedule.num_timesteps
    ts = timesteps(T if num_steps is None else num_steps, T, timestep_spacing, steps_offset).tolist()
    with _sampling_mode(model):
        x = noise.float()  # x_T ~ N(0, I), Algorithm 2, line 1
        denoise = make_denoiser(model, x, model_kwargs, precision, fast)
        for i, t in enumerate(ts):  # Algorithm 2, line 2: for t = T, ..., 1
            prev_t = ts[i + 1] if i + 1 < len(ts) else -1  # -1: this step lands on the clean image
            model_output = denoise(x, t)
            z = None if prev_t < 0 else _gaussian_like(x, generator)  # Algorithm 2, line 3
            x_prev, x0_pred = ddpm_step(model_output, t, prev_t, x, schedule, prediction_type, z, clip_x0)  # line 4
            if callback is not None:
                callback(i, t, x, x0_pred)
            x = x_prev
    return x.clone()  # cloned outside inference mode: an ordinary tensor


def ddim_sample(
    model: nn.Module,
    schedule: NoiseSchedule,
    noise: Tensor,
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    prediction_type: str = "eps",
    clip_x0: bool = True,
    timestep_spacing: str = "leading",
    steps_offset: int = 0,
    generator: torch.Generator | None = None,
    callback: Callable[[int, int, Tensor, Tensor], None] | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    precision: Precision | None = None,
    fast: bool = False,
) -> Tensor:
    """DDIM sampling (Song et al. 2021, Eq. (12)) in num_steps strided steps, from x_T = noise down to x_0.

    The same arguments as :func:`ddpm_sample`, plus eta in [0, 1]: 0 (the default) is deterministic, so the
    image is a function of ``noise`` alone (the generator is never used, which makes interpolating between two
    noises meaningful); 1 adds DDPM's posterior variance at every step.
    Each step lands on the next timestep of the sequence (the DDIM paper's sub-sequence tau, Sec. 4.2). For
    "leading" spacing (the default) and for "trailing" with T divisible by num_steps that is t - T // num_steps,
    so the loop equals diffusers' DDIMScheduler loop. For the other spacings DDIMScheduler still steps to
    t - T // num_steps, which is not a visited timestep; we do not copy that (DDPMScheduler does as we do).
    Returns x_0: (B, C, H, W) float32, an ordinary tensor.

    Taught in notebooks/04_ddim_sampling.ipynb.
    """
    _check_eta(eta)
    _check_sampler_inputs(schedule, noise, prediction_type, generator, callback, model_kwargs)
    ts = timesteps(num_steps, schedule.num_timesteps, timestep_spacing, steps_offset).tolist()
    with _sampling_mode(model):
        x = noise.float()  # x_T ~ N(0, I)
        denoise = make_denoiser(model, x, model_kwargs, precision, fast)
        for i, t in enumerate(ts):
            prev_t = ts[i + 1] if i + 1 < len(ts) else -1  # -1: this step lands on the clean image
            model_output = denoise(x, t)
            z = None if eta == 0 or prev_t < 0 else _gaussian_like(x, generator)  # the final step adds no noise
            x_prev, x0_pred = ddim_step(model_output, t, prev_t, x, schedule, eta, prediction_type, z, clip_x0)
            if callback is not None:
                callback(i, t, x, x0_pred)
            x = x_prev
    return x.clone()  # cloned outside inference mode: an ordinary tensor
