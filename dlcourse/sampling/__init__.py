"""Sampling: run the reverse process from pure noise x_T down to an image x_0, with DDPM or DDIM.

Taught in notebooks/03_ddpm_training.ipynb (DDPM, Ho et al. 2020, Algorithm 2) and
notebooks/04_ddim_sampling.ipynb (DDIM, Song et al. 2021). Read the files in this order:

1. :mod:`~dlcourse.sampling.steps`: one reverse step as a pure function, :func:`ddpm_step` and
   :func:`ddim_step`, (model output, x_t) -> (x_prev, x0_pred). Their numbers equal diffusers'.
2. :mod:`~dlcourse.sampling.spacing`: which timesteps a sampler visits (all T, or num_steps spaced like
   diffusers').
3. :mod:`~dlcourse.sampling.samplers`: :func:`ddpm_sample` and :func:`ddim_sample`, the loop
   "for each t: denoiser -> step".
4. :mod:`~dlcourse.sampling.denoiser`: what the loop calls: a model ``model(x_t, t)`` or any function
   ``denoise(x_t, t)`` (a conditional model, classifier-free guidance), eager or replayed from a CUDA graph
   (:mod:`dlcourse.cuda_graph`);
5. :mod:`~dlcourse.sampling.guidance`: classifier-free guidance as such a function, one forward of 2B;
6. :mod:`~dlcourse.sampling.sigmas`, :mod:`~dlcourse.sampling.solver_steps`, :mod:`~dlcourse.sampling.solvers`: the
   same model's probability-flow ODE in sigma coordinates (DDIM is its Euler step) and higher-order solvers on it,
   :func:`heun_sample` and :func:`dpm_solver_sample` (DPM-Solver++(2M)), equal to diffusers' schedulers;
7. :mod:`~dlcourse.sampling.flow`: a flow model's samplers (Euler, Heun on dx/dt = v), and
   :mod:`~dlcourse.sampling.flow_paths`: the path it takes, how straight it is, and reflow's (noise, sample) pairs
   (notebook 10, flow matching);
8. :mod:`~dlcourse.sampling.text2img`: :func:`generate`, prompts -> images with the course's text model
   (notebook 06), the pieces above in a row.

:mod:`~dlcourse.sampling.checks` and :mod:`~dlcourse.sampling.guidance_checks` hold the input checks. Conventions
(the same as diffusers and :mod:`dlcourse.schedules`): timesteps are 0-indexed, t in {0, ..., T-1}; ``prev_t`` is
the timestep a step lands on, ``prev_t < 0`` the clean image. ``clip_x0`` is an explicit choice: None (the default,
no clipping; latents are never clipped) or a (low, high) range, ``(-1, 1)`` for the course's images. """

from dlcourse.sampling.denoiser import Denoiser, make_denoiser
from dlcourse.sampling.flow import (
    flow_euler_sample,
    flow_euler_step,
    flow_heun_sample,
    flow_heun_step,
    flow_sigmas,
    resolution_shift,
)
from dlcourse.sampling.flow_paths import FlowTrajectory, ReflowPairs, flow_trajectory, reflow_pairs, straightness
from dlcourse.sampling.guidance import guidance_scale_from_w, guided_denoiser
from dlcourse.sampling.samplers import ddim_sample, ddpm_sample
from dlcourse.sampling.sigmas import (
    SIGMA_KINDS,
    SolverSigmas,
    dpm_solver_sigmas,
    euler_sigmas,
    karras_sigmas,
    sigma_to_t,
    t_to_sigma,
    to_ve,
    to_vp,
    vp_sigmas,
)
from dlcourse.sampling.solver_steps import dpm_solver_2m_step, euler_step, heun_step, probability_flow_euler_step
from dlcourse.sampling.solvers import dpm_solver_sample, euler_sample, heun_sample
from dlcourse.sampling.spacing import TIMESTEP_SPACINGS, timesteps
from dlcourse.sampling.steps import FINAL_ALPHA_BAR, StepOutput, ddim_step, ddpm_step
from dlcourse.sampling.text2img import generate

__all__ = [
    "FINAL_ALPHA_BAR",
    "SIGMA_KINDS",
    "TIMESTEP_SPACINGS",
    "Denoiser",
    "FlowTrajectory",
    "ReflowPairs",
    "SolverSigmas",
    "StepOutput",
    "ddim_sample",
    "ddim_step",
    "ddpm_sample",
    "ddpm_step",
    "dpm_solver_2m_step",
    "dpm_solver_sample",
    "dpm_solver_sigmas",
    "euler_sample",
    "euler_sigmas",
    "euler_step",
    "flow_euler_sample",
    "flow_euler_step",
    "flow_heun_sample",
    "flow_heun_step",
    "flow_sigmas",
    "flow_trajectory",
    "generate",
    "guidance_scale_from_w",
    "guided_denoiser",
    "heun_sample",
    "heun_step",
    "karras_sigmas",
    "make_denoiser",
    "probability_flow_euler_step",
    "reflow_pairs",
    "resolution_shift",
    "sigma_to_t",
    "straightness",
    "t_to_sigma",
    "timesteps",
    "to_ve",
    "to_vp",
    "vp_sigmas",
]
