"""Input checks of the flow samplers (:mod:`dlcourse.sampling.flow`), kept out of the file a notebook reads.

Each check raises an error that says what was wrong and how to fix it, from Python values, shapes and dtypes only:
reading a tensor's values would be a host synchronisation on a GPU.
"""

from __future__ import annotations

import numbers
from typing import Any

from torch import Tensor

from dlcourse.argument_checks import check_instance, check_int, check_number, describe

__all__ = [
    "check_flow_sampler_inputs",
    "check_flow_sigmas_args",
    "check_flow_step",
    "check_solver",
    "check_trajectory",
    "check_velocity_output",
]

_TIME_HELP = "Times run from 1 (pure noise) to 0 (the clean image); the network's timestep is 1000 t."


def check_flow_sigmas_args(num_steps: Any, shift: Any, caller: str = "flow_sigmas", spacing: Any = "uniform") -> None:
    """num_steps a positive integer; shift a finite number > 0 (1: no shift; SD3 uses 3 at 1024 px); spacing one of
    "uniform" and "diffusers"."""
    if spacing not in ("uniform", "diffusers"):
        raise ValueError(
            f"{caller}: spacing must be 'uniform' (equal steps from t = 1 to 0, the course's default) or 'diffusers' "
            f"(FlowMatchEulerDiscreteScheduler's times, whose last step runs from t = 1/1000 to 0); got {spacing!r}."
        )
    check_int(caller, "num_steps", num_steps, 1)
    check_number(
        caller, "shift", shift, 0, above=True,
        fix="1 is no shift; above 1 spends more steps near the noise (SD3 at 1024 px: 3.0).",
    )  # fmt: skip


def _check_time(caller: str, name: str, t: Any, x_t: Tensor) -> None:
    if isinstance(t, Tensor):
        if not t.is_floating_point():
            raise ValueError(f"{caller}: {name} must be a float (a time in [0, 1]), got {describe(t)}. {_TIME_HELP}")
        if t.ndim > 1 or (t.ndim == 1 and t.shape[0] != x_t.shape[0]):
            raise ValueError(
                f"{caller}: {name} must be a number, a 0-d tensor or a ({x_t.shape[0]},) tensor with one time per "
                f"image; got {describe(t)}."
            )
        return
    if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 <= t <= 1:
        raise ValueError(f"{caller}: {name} must be a time in [0, 1], got {t!r}. {_TIME_HELP}")


def check_flow_step(caller: str, x_t: Any, t: Any, t_next: Any, **velocities: Any) -> None:
    """The arguments of :func:`~dlcourse.sampling.flow.flow_euler_step` (v) and ``flow_heun_step`` (v, v_next)."""
    check_instance(caller, "x_t", x_t, Tensor, "the sample at time t (B, C, H, W)")
    for name, value in velocities.items():
        check_instance(caller, name, value, Tensor, "a velocity (B, C, H, W), the network's output")
        if value.shape != x_t.shape:
            raise ValueError(
                f"{caller}: {name} must have the shape of x_t, {tuple(x_t.shape)}; got {tuple(value.shape)}. A flow "
                "model predicts one velocity per pixel value: its output has the input's shape."
            )
    _check_time(caller, "t", t, x_t)
    _check_time(caller, "t_next", t_next, x_t)


def check_flow_sampler_inputs(caller: str, velocity: Any, noise: Any, callback: Any) -> None:
    """The arguments shared by the flow samplers (their num_steps and shift: :func:`check_flow_sigmas_args`)."""
    if not callable(velocity):
        raise TypeError(
            f"{caller}: velocity must be a model called as model(x_t, 1000 t) or a function velocity(x_t, t_batch) -> "
            f"v (x_t (B, C, H, W), t_batch a float tensor (B,)); got {describe(velocity)}. For extra model inputs, "
            "pass e.g. lambda x, t: model(x, t, class_labels=y)."
        )
    if not isinstance(noise, Tensor) or noise.ndim != 4 or not noise.is_floating_point():
        raise ValueError(
            f"{caller}: noise must be the starting x_1, a float tensor (B, C, H, W); got {describe(noise)}. Draw it "
            "with torch.randn(B, C, H, W, generator=g, device=device) (add a batch dimension for a single image)."
        )
    if callback is not None and not callable(callback):
        raise TypeError(
            f"{caller}: callback must be callable as callback(step_index, t, x_t, x0_pred); got {describe(callback)}."
        )


def check_velocity_output(output: Any, x_t: Tensor) -> None:
    """What the velocity function returned: a tensor of x_t's shape. Pure Python: it runs at every step."""
    if not isinstance(output, Tensor):
        raise TypeError(
            f"The velocity function must return the velocity as a tensor (B, C, H, W); got {describe(output)}. For a "
            "model that returns an object (e.g. diffusers' SD3Transformer2DModel), wrap it: lambda x, t: "
            "model(x, t).sample."
        )
    if output.shape != x_t.shape:
        raise ValueError(
            f"The velocity function must return a velocity of x_t's shape {tuple(x_t.shape)}; got {describe(output)}. "
            "A model that also predicts a variance outputs 2C channels: return the first C."
        )


def check_solver(solver: Any, solvers: tuple[str, ...], caller: str) -> None:
    if solver not in solvers:
        raise ValueError(
            f"{caller}: solver must be one of {solvers}, got {solver!r}. 'euler' takes one network evaluation per "
            "step, 'heun' two (one on the last step)."
        )


def check_trajectory(trajectory: Any, trajectory_type: type) -> None:
    """straightness()'s argument: what flow_trajectory returned, t (N + 1,) and x (N + 1, B, C, H, W), N >= 1."""
    check_instance(
        "straightness", "trajectory", trajectory, trajectory_type, "a FlowTrajectory, what flow_trajectory returns"
    )
    t, x = trajectory
    if t.ndim != 1 or t.shape[0] < 2 or x.ndim != 5 or x.shape[0] != t.shape[0]:
        raise ValueError(
            f"straightness: the trajectory must hold N + 1 >= 2 times t (N + 1,) and the samples x (N + 1, B, C, H, W) "
            f"at them; got t {describe(t)} and x {describe(x)}. Use what flow_trajectory returns."
        )
