"""Input checks for the sampling package, kept out of the files a notebook reads.

Each check raises an error that says what was wrong and how to fix it. They look at Python values, shapes and
dtypes only, never at tensor values: reading a value would be a host synchronisation on a GPU.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import torch
from torch import Tensor

from dlcourse.parameterization import check_prediction_type
from dlcourse.schedules import NoiseSchedule

__all__ = [
    "check_clip_x0",
    "check_ddim_ending",
    "check_ddim_step",
    "check_ddpm_step",
    "check_eta",
    "check_sampler_inputs",
    "check_timesteps_args",
    "is_final",
]

Timestep = int | Tensor


def is_final(prev_t: Timestep) -> bool:
    """True when prev_t is an int < 0: the step lands on the clean image and adds no noise."""
    return not isinstance(prev_t, Tensor) and prev_t < 0


def check_clip_x0(clip_x0: tuple[float, float] | None) -> None:
    """clip_x0 must be None (no clipping) or a (low, high) pair of numbers with low < high."""
    if isinstance(clip_x0, bool):
        raise TypeError(
            f"clip_x0 is a range now, not a bool; got {clip_x0}. Pass clip_x0=(-1, 1) to clip the predicted x0 to "
            "the images' range, or clip_x0=None (the default) for no clipping, e.g. for latents."
        )
    if clip_x0 is None:
        return
    if (
        not isinstance(clip_x0, tuple | list)
        or len(clip_x0) != 2
        or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in clip_x0)
        or not clip_x0[0] < clip_x0[1]
    ):
        raise ValueError(
            f"clip_x0 must be None or a (low, high) pair of numbers with low < high, e.g. (-1, 1) for images; "
            f"got {clip_x0!r}."
        )


def check_eta(eta: float) -> None:
    if isinstance(eta, bool) or not isinstance(eta, numbers.Real) or not 0 <= eta <= 1:
        raise ValueError(
            f"eta must be a number in [0, 1]: 0 is deterministic DDIM, 1 adds DDPM's posterior variance "
            f"(Song et al. 2021, Eq. (16)); got {eta!r}. Above 1, sigma^2 can exceed 1 - alpha_bar_prev."
        )


def check_ddim_ending(ts: list[int], set_alpha_to_one: bool, start_step: int) -> None:
    """ddim_sample's start_step (an index into the timesteps ts) and set_alpha_to_one (ts must not end at 0)."""
    if isinstance(start_step, bool) or not isinstance(start_step, numbers.Integral) or not 0 <= start_step < len(ts):
        raise ValueError(
            f"start_step must be an integer index into the {len(ts)} timesteps, from 0 (start from pure noise) to "
            f"{len(ts) - 1}; got {start_step!r}. For img2img, start_step = num_steps - int(num_steps * strength)."
        )
    if not set_alpha_to_one and ts[-1] == 0:
        raise ValueError(
            "set_alpha_to_one=False makes the last step land on timestep 0, but the sequence already ends there; "
            "use steps_offset=1 with it, as Stable Diffusion's scheduler does."
        )


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
    model_output: Tensor,
    t: Timestep,
    prev_t: Timestep,
    x_t: Tensor,
    schedule: NoiseSchedule,
    prediction_type: str,
    noise: Tensor | None,
    clip_x0: tuple[float, float] | None,
) -> None:
    check_prediction_type(prediction_type)
    check_clip_x0(clip_x0)
    if model_output.shape != x_t.shape:
        raise ValueError(
            f"model_output must have the shape of x_t, {tuple(x_t.shape)}; got {tuple(model_output.shape)}. "
            "A model that also predicts a variance outputs 2C channels: split it and pass the first C."
        )
    if noise is not None and noise.shape != x_t.shape:
        raise ValueError(f"noise must have the shape of x_t, {tuple(x_t.shape)}; got {tuple(noise.shape)}.")
    _check_timestep("t", t, x_t, schedule.num_timesteps, allow_negative=False)
    _check_timestep("prev_t", prev_t, x_t, schedule.num_timesteps, allow_negative=True)


def check_ddpm_step(model_output, t, prev_t, x_t, schedule, prediction_type, noise, clip_x0) -> None:
    """The arguments of :func:`dlcourse.sampling.ddpm_step`."""
    _check_step_inputs(model_output, t, prev_t, x_t, schedule, prediction_type, noise, clip_x0)
    if not isinstance(t, Tensor) and not isinstance(prev_t, Tensor) and prev_t >= t:
        raise ValueError(f"DDPM steps go down in time: prev_t must be < t, got t={t}, prev_t={prev_t}.")
    if noise is None and not is_final(prev_t):
        raise ValueError(
            "ddpm_step needs noise (B, C, H, W) ~ N(0, I) for every step but the last (prev_t < 0): pass "
            "noise=torch.randn(x_t.shape, generator=g, device=x_t.device)."
        )


def check_ddim_step(model_output, t, prev_t, x_t, schedule, eta, prediction_type, noise, clip_x0) -> None:
    """The arguments of :func:`dlcourse.sampling.ddim_step`."""
    check_eta(eta)
    _check_step_inputs(model_output, t, prev_t, x_t, schedule, prediction_type, noise, clip_x0)
    if not isinstance(t, Tensor) and not isinstance(prev_t, Tensor) and (prev_t == t or (eta > 0 and prev_t > t)):
        raise ValueError(
            f"prev_t must differ from t (and be below it when eta > 0: only deterministic DDIM can run upwards, "
            f"for inversion); got t={t}, prev_t={prev_t}, eta={eta}."
        )
    if eta > 0 and noise is None and not is_final(prev_t):
        raise ValueError(
            f"ddim_step with eta={eta} > 0 adds noise: pass noise=torch.randn(x_t.shape, generator=g, "
            "device=x_t.device) (only the final step, prev_t < 0, adds none)."
        )


def check_timesteps_args(num_steps: int, num_timesteps: int, spacing: str, steps_offset: int, spacings) -> None:
    """The arguments of :func:`dlcourse.sampling.timesteps`."""
    for name, value in (("num_steps", num_steps), ("num_timesteps", num_timesteps)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if num_steps > num_timesteps:
        raise ValueError(
            f"num_steps={num_steps} is more than the T={num_timesteps} timesteps the model was trained on; a "
            f"sampler visits each timestep at most once. Use num_steps <= {num_timesteps}."
        )
    if spacing not in spacings:
        raise ValueError(f"Unknown timestep spacing {spacing!r}; choose one of {spacings}.")
    if isinstance(steps_offset, bool) or not isinstance(steps_offset, numbers.Integral) or steps_offset < 0:
        raise ValueError(f"steps_offset must be a non-negative integer, got {steps_offset!r}.")
    if steps_offset and spacing != "leading":
        raise ValueError(
            f"steps_offset only applies to 'leading' spacing (as in diffusers); got spacing {spacing!r}. "
            "Pass spacing='leading' with it (timestep_spacing='leading' to a sampler; Stable Diffusion's setting), "
            "or drop steps_offset."
        )
    first = (num_steps - 1) * (num_timesteps // num_steps) + steps_offset  # the first "leading" timestep
    if first >= num_timesteps:
        raise ValueError(
            f"steps_offset={steps_offset} pushes the first timestep to {first}, past T-1 = {num_timesteps - 1}. "
            "Use fewer steps or a smaller offset."
        )


def check_sampler_inputs(
    denoiser: Callable,
    schedule: NoiseSchedule,
    noise: Tensor,
    prediction_type: str,
    clip_x0: tuple[float, float] | None,
    generator: torch.Generator | None,
    callback: Callable | None,
) -> None:
    """The arguments shared by :func:`dlcourse.sampling.ddpm_sample` and :func:`dlcourse.sampling.ddim_sample`."""
    if not callable(denoiser):
        raise TypeError(
            f"denoiser must be a model called as model(x_t, t) or a function denoise(x_t, t) -> model output "
            f"(x_t (B, C, H, W), t a LongTensor (B,)); got {type(denoiser).__name__}. For extra model inputs, "
            "pass e.g. lambda x, t: model(x, t, context=c)."
        )
    if not isinstance(noise, Tensor) or noise.ndim != 4 or not noise.is_floating_point():
        got = f"shape {tuple(noise.shape)}, dtype {noise.dtype}" if isinstance(noise, Tensor) else repr(noise)
        raise ValueError(
            f"noise must be the starting x_T, a float tensor (B, C, H, W); got {got}. Draw it with "
            "torch.randn(B, C, H, W, generator=g, device=device) (add a batch dimension for a single image)."
        )
    check_prediction_type(prediction_type)
    check_clip_x0(clip_x0)
    if generator is not None:
        gen_device, device = torch.device(generator.device), noise.device
        if gen_device.type != device.type or (gen_device.index or 0) != (device.index or 0):
            raise ValueError(
                f"generator is on {gen_device} but noise is on {device}; the per-step noise is drawn where the "
                f"images are. Use torch.Generator(device=noise.device).manual_seed(seed)."
            )
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable as callback(step_index, t, x_t, x0_pred); got {callback!r}.")
    if not hasattr(schedule, "alpha_bar") or not hasattr(schedule, "num_timesteps"):
        raise TypeError(f"schedule must be a dlcourse.schedules.NoiseSchedule, got {type(schedule).__name__}.")
