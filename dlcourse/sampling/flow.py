"""Sampling a flow model: the ODE dx/dt = v(x, t) from t = 1 (pure noise) down to t = 0 (the image), in Euler or
Heun steps, on the times diffusers' flow scheduler visits or on equal ones.

A flow model, trained with :class:`~dlcourse.training.flow_loss.FlowMatchingLoss`, predicts the velocity
v = eps - x0 of the straight path x_t = (1 - t) x0 + t eps. From any x_t and its v, the clean image the velocity
points to is x0_pred = x_t - t v (what a denoising strip shows). Read the file in this order:

1. :func:`flow_sigmas`: the times a sampler visits, as diffusers' ``FlowMatchEulerDiscreteScheduler`` builds them
   (with SD3's resolution shift, :func:`resolution_shift`);
2. :func:`flow_euler_step` and :func:`flow_heun_step`: one step, pure functions;
3. :func:`flow_euler_sample` and :func:`flow_heun_sample`: the loop "for each t: velocity -> step".

The path a sampler takes, how straight it is, and reflow's pairs are in :mod:`dlcourse.sampling.flow_paths`.

The samplers call a velocity: a model ``model(x_t, 1000 t)`` or any function ``velocity(x_t, t_batch)``, t_batch
the float timesteps 1000 t (B,) (the network's convention, :data:`~dlcourse.training.flow_loss.TIMESTEP_SCALE`).
Classifier-free guidance is such a function: :func:`dlcourse.sampling.guided_denoiser` combines its two model
outputs linearly, v_uncond + s (v_cond - v_uncond), so it guides a velocity as it guides eps. The samplers draw no
random numbers (the image is a function of the noise) and do not synchronise with the host (the times are Python
floats, read once from a CPU tensor).

Taught in notebooks/10_flow_matching.ipynb.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from dlcourse.argument_checks import check_number
from dlcourse.runtime import Precision
from dlcourse.sampling.denoiser import sampling_mode
from dlcourse.sampling.flow_checks import (
    check_flow_sampler_inputs,
    check_flow_sigmas_args,
    check_flow_step,
    check_velocity_output,
)
from dlcourse.sampling.steps import StepOutput
from dlcourse.training.flow_loss import TIMESTEP_SCALE

__all__ = [
    "FLOW_SPACINGS",
    "Velocity",
    "flow_euler_sample",
    "flow_euler_step",
    "flow_heun_sample",
    "flow_heun_step",
    "flow_sigmas",
    "resolution_shift",
]

FLOW_SPACINGS = ("uniform", "diffusers")  # which times a flow sampler visits: see flow_sigmas
Velocity = Callable[[Tensor, Tensor], Tensor]  # velocity(x_t (B, C, H, W), 1000 t (B,) float) -> v (B, C, H, W)
Callback = Callable[[int, float, Tensor, Tensor], None]  # callback(step_index, t, x_t, x0_pred)
Time = float | Tensor


def resolution_shift(t: float | np.ndarray | Tensor, shift: float) -> float | np.ndarray | Tensor:
    """SD3's shift of the times toward the noise: t' = shift t / (1 + (shift - 1) t) (Esser et al. 2024, Sec. 5.3.2).

    t: times in [0, 1] (a float, a numpy array or a tensor; the result is of the same kind). shift > 0; 1 leaves
    t as it is, and 0 and 1 stay where they are. shift = sqrt(m / n) moves a schedule tuned for images of n pixels to
    images of m pixels, which need more of their steps at high noise (SD3: 3.0 at 1024 px).
    """
    check_number("resolution_shift", "shift", shift, 0, above=True, fix="1 is no shift.")
    return shift * t / (1 + (shift - 1) * t)


def flow_sigmas(num_steps: int, shift: float = 1.0, spacing: str = "uniform") -> Tensor:
    """The times a flow sampler visits, from 1 down to 0: float32 (num_steps + 1,) on the CPU, the last one 0.

    spacing: "uniform" (the course's default): num_steps equal steps 1, 1 - 1/N, ..., 0 (Liu et al. 2023's Euler
    discretisation), each time moved by :func:`resolution_shift`. "diffusers": as diffusers'
    ``FlowMatchEulerDiscreteScheduler(shift=shift).set_timesteps(num_steps)`` builds its ``sigmas``, bit for bit:
    num_steps times evenly spaced from t_max to t_min, each moved by :func:`resolution_shift`, then 0. t_max and t_min
    are the ends of the scheduler's (shifted) training grid 1000/1000, ..., 1/1000: t_max = 1 and
    t_min = resolution_shift(1/1000, shift), so with shift != 1 the last time before 0 is shifted twice, as in
    diffusers; and the last step, from t_min to 0, moves the sample by a thousandth of the path: with 2 steps the
    second is all but wasted (notebook 10 measures it). The network sees 1000 t (diffusers' ``scheduler.timesteps``).
    """
    check_flow_sigmas_args(num_steps, shift, spacing=spacing)
    if spacing == "uniform":
        t = np.linspace(1.0, 0.0, num_steps + 1)
        return torch.from_numpy(resolution_shift(t, shift)).float()  # Esser et al. 2024, Sec. 5.3.2; 0 stays 0
    grid_ends = torch.tensor([TIMESTEP_SCALE, 1], dtype=torch.float32) / TIMESTEP_SCALE
    t_max, t_min = resolution_shift(grid_ends, shift).tolist()  # in float32, as the scheduler's __init__
    t = np.linspace(t_max * TIMESTEP_SCALE, t_min * TIMESTEP_SCALE, num_steps) / TIMESTEP_SCALE  # float64
    t = resolution_shift(t, shift)  # Esser et al. 2024, Sec. 5.3.2
    return torch.cat([torch.from_numpy(t).float(), torch.zeros(1)])


def _at(t: Time, x: Tensor) -> Time:
    """t ready to broadcast against x (B, C, H, W): a number or 0-d tensor as it is, a (B,) tensor as (B, 1, 1, 1)
    on x's device."""
    return t.to(x.device, x.dtype).view(-1, 1, 1, 1) if isinstance(t, Tensor) and t.ndim == 1 else t


def flow_euler_step(v: Tensor, t: Time, t_next: Time, x_t: Tensor) -> StepOutput:
    """One Euler step of dx/dt = v from time t to t_next: x_next = x_t + (t_next - t) v.

    v, x_t: (B, C, H, W), v the velocity at (x_t, t); t, t_next: times in [0, 1], numbers or tensors (B,) (one per
    image). Steps toward the image go down in time (t_next < t); a step up runs the ODE toward the noise
    (inversion). Returns StepOutput(x_next, x0_pred), x0_pred = x_t - t v: the clean image the velocity points to
    (from x_t = (1 - t) x0 + t eps and v = eps - x0). Equals ``FlowMatchEulerDiscreteScheduler.step`` bit for bit.
    """
    check_flow_step("flow_euler_step", x_t, t, t_next, v=v)
    t, t_next = _at(t, x_t), _at(t_next, x_t)
    x0_pred = x_t - t * v
    x_next = x_t + (t_next - t) * v  # Euler's method (Karras et al. 2022, Algorithm 1, line 5)
    return StepOutput(x_next, x0_pred)


def flow_heun_step(v: Tensor, v_next: Tensor, t: Time, t_next: Time, x_t: Tensor) -> StepOutput:
    """One Heun step (2nd order) from t to t_next: x_next = x_t + (t_next - t) (v + v_next) / 2.

    v: the velocity at (x_t, t); v_next: the velocity at (x_euler, t_next), x_euler the result of
    :func:`flow_euler_step` from the same x_t and v. The same arguments as flow_euler_step otherwise; x0_pred is
    the first velocity's, x_t - t v. Karras et al. 2022, Algorithm 1, lines 7-8 (the trapezoidal rule).
    """
    check_flow_step("flow_heun_step", x_t, t, t_next, v=v, v_next=v_next)
    t, t_next = _at(t, x_t), _at(t_next, x_t)
    x0_pred = x_t - t * v
    x_next = x_t + (t_next - t) * (v + v_next) / 2  # Karras et al. 2022, Algorithm 1, line 8
    return StepOutput(x_next, x0_pred)


def _velocity_at(velocity: Velocity, precision: Precision | None) -> Callable[[Tensor, float], Tensor]:
    """The function a flow sampler calls at each step: v(x_t, t) with a float t -> velocity(x_t, 1000 t (B,))."""

    def v_at(x_t: Tensor, t: float) -> Tensor:
        t_batch = torch.full((x_t.shape[0],), TIMESTEP_SCALE * t, device=x_t.device)  # float32; no host->device copy
        with precision.autocast() if precision is not None else nullcontext():
            output = velocity(x_t, t_batch)
        check_velocity_output(output, x_t)
        return output.float()

    return v_at


def flow_euler_sample(
    velocity: Velocity,
    noise: Tensor,
    *,
    num_steps: int,
    shift: float = 1.0,
    spacing: str = "uniform",
    callback: Callback | None = None,
    precision: Precision | None = None,
    progress: bool = True,
) -> Tensor:
    """Euler's method on dx/dt = v(x, t) in num_steps steps, from x_1 = noise down to x_0, the image.

    velocity: a model ``model(x_t, 1000 t)`` or a function ``velocity(x_t, t_batch)`` (x_t (B, C, H, W), t_batch the
    float timesteps 1000 t (B,)) that predicts the velocity; a module runs in eval mode (its flags restored
    afterwards), a function is called as given. noise: (B, C, H, W), x_1 ~ N(0, I). num_steps, shift: the times
    of :func:`flow_sigmas`. The loop equals diffusers' with ``FlowMatchEulerDiscreteScheduler(shift=shift)``, bit for
    bit (one network evaluation per step).
    callback(step_index, t, x_t, x0_pred) is called after every step with the step's time t (a float in [0, 1]),
    its input x_t and x0_pred = x_t - t v (inference tensors: ``.clone()`` them outside inference mode for autograd).
    precision: its autocast wraps the velocity call (None: fp32). progress: a progress bar over the steps.
    Runs under torch.inference_mode. Returns x_0: (B, C, H, W) float32, an ordinary tensor.
    """
    check_flow_sampler_inputs("flow_euler_sample", velocity, noise, callback)
    check_flow_sigmas_args(num_steps, shift, "flow_euler_sample", spacing)
    ts = flow_sigmas(num_steps, shift, spacing).tolist()
    with sampling_mode(velocity):
        x = noise.float()  # x_1 ~ N(0, I)
        v_at = _velocity_at(velocity, precision)
        for i in tqdm(range(num_steps), desc="flow Euler", unit="step", leave=False, disable=not progress):
            t, t_next = ts[i], ts[i + 1]
            x_next, x0_pred = flow_euler_step(v_at(x, t), t, t_next, x)
            if callback is not None:
                callback(i, t, x, x0_pred)
            x = x_next
    return x.clone()  # cloned outside inference mode: an ordinary tensor


def flow_heun_sample(
    velocity: Velocity,
    noise: Tensor,
    *,
    num_steps: int,
    shift: float = 1.0,
    spacing: str = "uniform",
    callback: Callback | None = None,
    precision: Precision | None = None,
    progress: bool = True,
) -> Tensor:
    """Heun's method (2nd order) on dx/dt = v(x, t) in num_steps steps, from x_1 = noise down to x_0.

    The same arguments as :func:`flow_euler_sample`. Each step takes an Euler step, evaluates the velocity where
    it landed and steps again from x_t with the mean of the two velocities (:func:`flow_heun_step`); the last step,
    to t = 0, stays an Euler step (Karras et al. 2022, Algorithm 1, line 6), so a run costs 2 num_steps - 1 network
    evaluations. With ``spacing="diffusers"`` the loop equals diffusers' with
    ``FlowMatchHeunDiscreteScheduler(shift=shift)`` (to rounding: it divides and multiplies by t where we do not).
    The callback is called once per step, with the first velocity's x0_pred.
    """
    check_flow_sampler_inputs("flow_heun_sample", velocity, noise, callback)
    check_flow_sigmas_args(num_steps, shift, "flow_heun_sample", spacing)
    ts = flow_sigmas(num_steps, shift, spacing).tolist()
    with sampling_mode(velocity):
        x = noise.float()  # x_1 ~ N(0, I)
        v_at = _velocity_at(velocity, precision)
        for i in tqdm(range(num_steps), desc="flow Heun", unit="step", leave=False, disable=not progress):
            t, t_next = ts[i], ts[i + 1]
            v = v_at(x, t)
            x_next, x0_pred = flow_euler_step(v, t, t_next, x)
            if t_next > 0:  # Karras et al. 2022, Algorithm 1, line 6: the step to t = 0 is not corrected
                x_next, _ = flow_heun_step(v, v_at(x_next, t_next), t, t_next, x)
            if callback is not None:
                callback(i, t, x, x0_pred)
            x = x_next
    return x.clone()  # cloned outside inference mode: an ordinary tensor
