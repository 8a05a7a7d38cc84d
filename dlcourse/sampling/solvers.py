"""ODE solvers over any denoiser: Euler, Heun and DPM-Solver++(2M), the loop "for each sigma: denoiser -> step".

Used in notebooks/04_ddim_sampling.ipynb ("Steps x sampler x spacing, measured": the Heun and DPM-Solver++ rows).

Deterministic DDIM already follows the probability-flow ODE (Song et al. 2021, Sec. 4.3); these solvers follow it
with other steps, in the VE coordinates x = x_t / sqrt(alpha_bar) = x0 + sigma eps (:mod:`dlcourse.sampling.sigmas`,
:mod:`dlcourse.sampling.solver_steps`). They take the arguments of :func:`~dlcourse.sampling.ddim_sample` that apply
(no eta and no generator: nothing random happens after the start) plus the sigmas to visit, and return the same thing.

- ``noise`` is x_T, as for every sampler of the course: the start is x = noise sqrt(1 + sigma_0^2) at the first
  sigma. diffusers' ``DPMSolverMultistepScheduler`` starts so too; its Euler and Heun pipelines start from
  noise * sigma_0 (``init_noise_sigma``, for the default "linspace" spacing: Karras et al. 2022, Algorithm 1,
  line 2, noise alone), a factor sqrt(1 + 1 / sigma_0^2) apart: 1 + 1e-9 on the cosine schedule, 1 + 2e-5 on DDPM's
  linear one. We keep one start for all samplers, so the same noise means the same thing in every row of a table.
- The denoiser is the course's usual ``denoise(x_t, t)``: the solvers hand it x_t = x / sqrt(1 + sigma^2) and the
  timestep diffusers would pass: fractional (a float32 t (B,)) for Euler and Heun, an integer (a LongTensor) for
  DPM-Solver++. The U-Net's timestep embedding takes either. With ``fast=True`` the float t is replayed from a CUDA
  graph of its own (:func:`dlcourse.cuda_graph.graphed_denoiser`).
- Network evaluations: Euler and DPM-Solver++ one per step; Heun two per step except the last (to sigma = 0, an Euler
  step), 2 num_steps - 1 in all.

With the same sigmas, model and starting x, each loop equals diffusers' scheduler loop (``EulerDiscreteScheduler``,
``HeunDiscreteScheduler``, ``DPMSolverMultistepScheduler`` at its defaults, with or without ``use_karras_sigmas``)
to float32 rounding, or, for Euler and Heun on the cosine schedule's default sigmas, to diffusers' own float32 error
(:mod:`dlcourse.sampling.solver_steps`, "Arithmetic"); tests/test_solvers.py checks it. Runs under
torch.inference_mode; no host synchronisation in the loop (the sigmas are Python floats, computed before it).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dlcourse.runtime import Precision
from dlcourse.sampling.checks import check_sampler_inputs
from dlcourse.sampling.denoiser import Denoiser, make_denoiser, sampling_mode
from dlcourse.sampling.sigmas import dpm_solver_sigmas, euler_sigmas, to_ve, to_vp
from dlcourse.sampling.solver_steps import dpm_solver_2m_step, euler_step, heun_step
from dlcourse.schedules import NoiseSchedule

__all__ = ["dpm_solver_sample", "euler_sample", "heun_sample"]

Callback = Callable[[int, int | float, Tensor, Tensor], None]


def euler_sample(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    noise: Tensor,
    *,
    num_steps: int = 50,
    sigmas: str = "default",
    rho: float = 7.0,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
    callback: Callback | None = None,
    precision: Precision | None = None,
    fast: bool = False,
    progress: bool = True,
) -> Tensor:
    """Euler's method on the probability-flow ODE (Karras et al. 2022, Algorithm 1 without its correction).

    denoiser, schedule, noise (B, C, H, W) = x_T, prediction_type, clip_x0, precision, fast, progress: as for
    :func:`~dlcourse.sampling.ddim_sample`. num_steps: network evaluations. sigmas: "default" (diffusers'
    EulerDiscreteScheduler: timesteps spaced evenly from T-1 to 0) or "karras" (Karras et al. 2022, Eq. (5), with
    rho); see :func:`~dlcourse.sampling.sigmas.euler_sigmas`. callback(step_index, t, x_t, x0_pred) after every step,
    with the float timestep, the network's input x_t (VP) and x0_pred. Returns x_0: (B, C, H, W) float32.
    """
    check_sampler_inputs(denoiser, schedule, noise, prediction_type, clip_x0, None, callback)
    plan = euler_sigmas(schedule, num_steps, sigmas, rho)
    sigma_values, ts = plan.sigmas.tolist(), plan.timesteps.tolist()
    with sampling_mode(denoiser):
        x = to_ve(noise.float(), sigma_values[0])  # x_T as x0 + sigma_0 eps
        denoise = make_denoiser(denoiser, x, precision, fast, timestep_dtype=torch.float32)
        for i, t in enumerate(tqdm(ts, desc="Euler", unit="step", leave=False, disable=not progress)):
            sigma, sigma_next = sigma_values[i], sigma_values[i + 1]
            x_t = to_vp(x, sigma)
            model_output = denoise(x_t, t)
            x_next, x0_pred = euler_step(model_output, sigma, sigma_next, x, prediction_type, clip_x0)
            if callback is not None:
                callback(i, t, x_t, x0_pred)
            x = x_next
    return x.clone()  # sigma = 0: x is x_0; cloned outside inference mode, an ordinary tensor


def heun_sample(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    noise: Tensor,
    *,
    num_steps: int = 50,
    sigmas: str = "default",
    rho: float = 7.0,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
    callback: Callback | None = None,
    precision: Precision | None = None,
    fast: bool = False,
    progress: bool = True,
) -> Tensor:
    """Heun's second-order method on the probability-flow ODE (Karras et al. 2022, Algorithm 1).

    The arguments of :func:`euler_sample` (the same sigmas: diffusers' HeunDiscreteScheduler uses
    EulerDiscreteScheduler's). Each step evaluates the network at sigma, takes an Euler step, evaluates it again at
    sigma_next and steps with the average slope; the last step, to sigma = 0, is Euler's: 2 num_steps - 1 network
    evaluations. The callback sees each step's first evaluation. Returns x_0: (B, C, H, W) float32.
    The correction grows with the step: it moves x by (sigma - sigma_next) / (2 sigma_next) times the change of
    x0_pred over the step. On the course's cosine schedule (sigma up to 2e4) the "default" sigmas take the first step
    from 2e4 to about 6, and Heun fails there; use sigmas="karras" (notebook 04 measures both).
    """
    check_sampler_inputs(denoiser, schedule, noise, prediction_type, clip_x0, None, callback)
    plan = euler_sigmas(schedule, num_steps, sigmas, rho)
    sigma_values, ts = plan.sigmas.tolist(), plan.timesteps.tolist()
    with sampling_mode(denoiser):
        x = to_ve(noise.float(), sigma_values[0])  # x_T as x0 + sigma_0 eps
        denoise = make_denoiser(denoiser, x, precision, fast, timestep_dtype=torch.float32)
        for i, t in enumerate(tqdm(ts, desc="Heun", unit="step", leave=False, disable=not progress)):
            sigma, sigma_next = sigma_values[i], sigma_values[i + 1]
            x_t = to_vp(x, sigma)
            model_output = denoise(x_t, t)  # Algorithm 1, line 4: D(x_i; sigma_i)
            x_next, x0_pred = euler_step(model_output, sigma, sigma_next, x, prediction_type, clip_x0)  # line 5
            if sigma_next != 0:  # line 6: correct every step but the last
                model_output_next = denoise(to_vp(x_next, sigma_next), ts[i + 1])  # line 7: D(x_{i+1}; sigma_{i+1})
                x_next, _ = heun_step(model_output, model_output_next, sigma, sigma_next, x, prediction_type, clip_x0)
            if callback is not None:
                callback(i, t, x_t, x0_pred)
            x = x_next
    return x.clone()


def dpm_solver_sample(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    noise: Tensor,
    *,
    num_steps: int = 50,
    sigmas: str = "default",
    rho: float = 7.0,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
    callback: Callback | None = None,
    precision: Precision | None = None,
    fast: bool = False,
    progress: bool = True,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): multistep, second order, on x0 predictions.

    The arguments of :func:`euler_sample`, with diffusers' DPMSolverMultistepScheduler's sigmas
    (:func:`~dlcourse.sampling.sigmas.dpm_solver_sigmas`: integer timesteps, so num_steps < T). One network
    evaluation a step: each step reuses the previous step's x0 prediction. The first step is first order (no
    history yet), and so is the last, to sigma = 0 (diffusers' ``lower_order_final`` with
    ``final_sigmas_type="zero"``). The callback gets integer timesteps. Returns x_0: (B, C, H, W) float32.
    """
    check_sampler_inputs(denoiser, schedule, noise, prediction_type, clip_x0, None, callback)
    plan = dpm_solver_sigmas(schedule, num_steps, sigmas, rho)
    sigma_values, ts = plan.sigmas.tolist(), plan.timesteps.tolist()
    with sampling_mode(denoiser):
        x = to_ve(noise.float(), sigma_values[0])  # x_T as x0 + sigma_0 eps
        denoise = make_denoiser(denoiser, x, precision, fast)
        last_x0_pred = None  # the multistep history: the previous step's x0 prediction
        for i, t in enumerate(tqdm(ts, desc="DPM-Solver++", unit="step", leave=False, disable=not progress)):
            sigma, sigma_next = sigma_values[i], sigma_values[i + 1]
            x_t = to_vp(x, sigma)
            model_output = denoise(x_t, t)
            second_order = last_x0_pred is not None and sigma_next != 0
            history = dict(last_x0_pred=last_x0_pred, last_sigma=sigma_values[i - 1]) if second_order else {}
            x_next, x0_pred = dpm_solver_2m_step(
                model_output, sigma, sigma_next, x, prediction_type=prediction_type, clip_x0=clip_x0, **history
            )
            if callback is not None:
                callback(i, t, x_t, x0_pred)
            x, last_x0_pred = x_next, x0_pred
    return x.clone()
