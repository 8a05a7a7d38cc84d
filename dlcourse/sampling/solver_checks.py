"""Input checks for the ODE solvers (:mod:`dlcourse.sampling.sigmas`, :mod:`dlcourse.sampling.solver_steps`,
:mod:`dlcourse.sampling.solvers`), kept out of the files a notebook reads.

Each check raises an error that says what was wrong and how to fix it. Like :mod:`dlcourse.sampling.checks`, they
read Python values, shapes and dtypes, and the sigma schedules (small CPU tensors built before the loop), never the
images: reading a GPU tensor's value would be a host synchronisation.
"""

from __future__ import annotations

import math
import numbers

from torch import Tensor

from dlcourse.parameterization import check_prediction_type
from dlcourse.sampling.checks import check_clip_x0

__all__ = [
    "check_decreasing_sigmas",
    "check_dpm_solver_step",
    "check_heun_step",
    "check_karras_args",
    "check_num_steps",
    "check_rho",
    "check_solver_sigmas_args",
    "check_solver_step",
    "check_timestep_pair",
]


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_num_steps(num_steps: int) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral) or num_steps < 1:
        raise ValueError(
            f"num_steps must be a positive integer (the number of solver steps, from the noisiest sigma to 0); "
            f"got {num_steps!r}."
        )


def check_rho(rho: float) -> None:
    if not _is_number(rho) or rho <= 0:
        raise ValueError(
            f"rho must be a positive number (Karras et al. 2022, Eq. (5): the steps are evenly spaced in "
            f"sigma^(1/rho); 7 is the paper's value, 1 spaces them evenly in sigma); got {rho!r}."
        )


def check_karras_args(num_steps: int, sigma_min: float, sigma_max: float, rho: float) -> None:
    """The arguments of :func:`dlcourse.sampling.sigmas.karras_sigmas`."""
    check_num_steps(num_steps)
    check_rho(rho)
    if not _is_number(sigma_min) or not _is_number(sigma_max) or not 0 < sigma_min < sigma_max:
        raise ValueError(
            f"karras_sigmas needs 0 < sigma_min < sigma_max (the least and the most noise the solver visits; the "
            f"final sigma = 0 is added for you); got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}. For a "
            "schedule, they are vp_sigmas(schedule.alpha_bar)[0] and [-1]."
        )


def check_solver_sigmas_args(num_steps: int, kind: str, rho: float, kinds: tuple[str, ...]) -> None:
    """The arguments of :func:`~dlcourse.sampling.sigmas.euler_sigmas` and ``dpm_solver_sigmas``."""
    check_num_steps(num_steps)
    if kind not in kinds:
        raise ValueError(
            f"sigmas must be one of {kinds}: 'default' for the scheduler's own spacing (diffusers' default), "
            f"'karras' for Karras et al. 2022, Eq. (5) (diffusers' use_karras_sigmas=True); got {kind!r}."
        )
    check_rho(rho)
    if kind != "karras" and rho != 7.0:
        raise ValueError(
            f"rho={rho} only applies to sigmas='karras' (Karras et al. 2022, Eq. (5)); got sigmas={kind!r}. "
            "Pass sigmas='karras' with it, or drop rho."
        )


def check_decreasing_sigmas(sigmas: Tensor, num_steps: int, kind: str, solver: str, num_timesteps: int) -> None:
    """A solver's sigmas (N + 1,), which end at 0, must decrease strictly: each step needs a noise level of its own."""
    values = sigmas.tolist()
    for i in range(len(values) - 1):
        if not values[i] > values[i + 1]:
            raise ValueError(
                f"The {solver} sigmas ({kind!r}) for num_steps={num_steps} are not strictly decreasing: sigma[{i}] = "
                f"{values[i]:.6g}, sigma[{i + 1}] = {values[i + 1]:.6g}, a step that goes nowhere (and a second-order "
                "step would divide by its zero length). Use fewer steps: with 'default' sigmas DPM-Solver++ calls the "
                f"network at integer timesteps, so it takes at most T-1 = {num_timesteps - 1} steps."
            )


def check_solver_step(
    model_output: Tensor,
    sigma: float,
    sigma_next: float,
    x: Tensor,
    prediction_type: str,
    clip_x0: tuple[float, float] | None,
) -> None:
    """The arguments every step of :mod:`dlcourse.sampling.solver_steps` takes."""
    check_prediction_type(prediction_type)
    check_clip_x0(clip_x0)
    if model_output.shape != x.shape:
        raise ValueError(
            f"model_output must have the shape of x, {tuple(x.shape)}; got {tuple(model_output.shape)}. A model "
            "that also predicts a variance outputs 2C channels: split it and pass the first C."
        )
    if not _is_number(sigma) or sigma <= 0:
        raise ValueError(
            f"sigma must be a positive number, the noise level of x (x = x0 + sigma eps); got {sigma!r}. "
            "At sigma = 0 x is the clean image: there is no step left to take."
        )
    if not _is_number(sigma_next) or sigma_next < 0 or sigma_next == sigma:
        raise ValueError(
            f"sigma_next must be a number >= 0 other than sigma = {sigma!r} (0: the step lands on the clean image); "
            f"got {sigma_next!r}."
        )


def check_heun_step(model_output_next: Tensor, x: Tensor, sigma_next: float) -> None:
    if model_output_next.shape != x.shape:
        raise ValueError(
            f"model_output_next must have the shape of x, {tuple(x.shape)}; got {tuple(model_output_next.shape)}. "
            "It is the network's output at Euler's x_next, at sigma_next."
        )
    if sigma_next == 0:
        raise ValueError(
            "heun_step needs sigma_next > 0: its correction evaluates the network at sigma_next. The step to "
            "sigma = 0 is Euler's (Karras et al. 2022, Algorithm 1, line 6): use euler_step for it."
        )


def check_dpm_solver_step(
    sigma: float, sigma_next: float, last_x0_pred: Tensor | None, last_sigma: float | None, x: Tensor
) -> None:
    if sigma_next > sigma:
        raise ValueError(
            f"DPM-Solver++ steps go down in noise: sigma_next must be below sigma; got sigma={sigma}, "
            f"sigma_next={sigma_next}."
        )
    if (last_x0_pred is None) != (last_sigma is None):
        raise ValueError(
            "Pass last_x0_pred and last_sigma together (the previous step's x0 prediction and its sigma) for a "
            "second-order step, or neither for a first-order one."
        )
    if last_x0_pred is None:
        return
    if last_x0_pred.shape != x.shape:
        raise ValueError(f"last_x0_pred must have the shape of x, {tuple(x.shape)}; got {tuple(last_x0_pred.shape)}.")
    if not _is_number(last_sigma) or not last_sigma > sigma:
        raise ValueError(f"last_sigma, the previous step's sigma, must be above sigma = {sigma}; got {last_sigma!r}.")
    if sigma_next == 0:
        raise ValueError(
            "The step to sigma = 0 must be first order (pass no last_x0_pred): its log-SNR step h is infinite, so "
            "the second-order weight r = h_last / h is 0 and the correction 1 / (2 r) infinite. diffusers does the "
            "same (lower_order_final, final_sigmas_type='zero')."
        )


def check_timestep_pair(t: object, prev_t: object) -> None:
    """probability_flow_euler_step takes int timesteps (ddim_step's checks do the rest)."""
    for name, value in (("t", t), ("prev_t", prev_t)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(
                f"probability_flow_euler_step takes int timesteps; got {name}={value!r}. For per-image timesteps, "
                "use ddim_step (the same step)."
            )
