"""The samplers: from pure noise x_T down to x_0, the loop "for each t: denoiser -> step", written out.

Taught in notebooks/03_ddpm_training.ipynb ("Algorithm 2, the whole loop", "Samples and a denoising
strip": :func:`ddpm_sample`) and notebooks/04_ddim_sampling.ipynb ("Steps x sampler, measured": both).

Both take a denoiser, a model ``model(x_t, t)`` or any function ``denoise(x_t, t)`` (see
:mod:`dlcourse.sampling.denoiser`), and share one signature. Randomness: the per-step noise is drawn from
``generator`` (a ``torch.Generator`` on the device of ``noise``), outside any CUDA graph, so "same noise, same
generator seed -> same image", and tests can feed diffusers the very same noise. No host synchronisation: the
loop passes int timesteps, whose schedule constants are 0-d tensors (a schedule left on the CPU is fine).
On a GPU the progress bar therefore counts steps launched; the GPU finishes them shortly after.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

from dlcourse.runtime import Precision
from dlcourse.sampling.checks import check_ddim_ending, check_eta, check_sampler_inputs
from dlcourse.sampling.denoiser import Denoiser, make_denoiser, sampling_mode
from dlcourse.sampling.spacing import timesteps
from dlcourse.sampling.steps import ddim_step, ddpm_step
from dlcourse.schedules import NoiseSchedule

__all__ = ["ddim_sample", "ddpm_sample"]

Callback = Callable[[int, int, Tensor, Tensor], None]


def _gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """z ~ N(0, I) shaped like x, drawn from ``generator`` (torch's global RNG when None)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def ddpm_sample(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    noise: Tensor,
    *,
    num_steps: int | None = None,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
    timestep_spacing: str = "trailing",
    steps_offset: int = 0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    precision: Precision | None = None,
    fast: bool = False,
    progress: bool = True,
) -> Tensor:
    """Ancestral DDPM sampling (Ho et al. 2020, Algorithm 2), from x_T = noise down to x_0.

    denoiser: a model ``model(x_t, t)`` or a function ``denoise(x_t, t)`` (x_t (B, C, H, W), t a LongTensor
    (B,)) that predicts ``prediction_type`` ("eps", "v" or "x0"); a module runs in eval mode (its flags restored
    afterwards), a function is called as given. noise: (B, C, H, W), the starting x_T (so "same noise, same
    image" given the same generator seed). num_steps: None for all T steps, fewer for strided DDPM as in
    diffusers' DDPMScheduler. timestep_spacing: which num_steps timesteps, see :func:`dlcourse.sampling.timesteps`;
    "trailing" (the default) starts at T-1, where x_T ~ N(0, I) is right; diffusers' default "leading" starts lower
    (notebook 04 measures both). steps_offset: only with "leading" (Stable Diffusion: 1).
    clip_x0: None (no clipping: latents) or a (low, high) range for the predicted x0, (-1, 1) for images.
    generator: draws the per-step noise z (on noise's device; None uses torch's global RNG).
    callback(step_index, t, x_t, x0_pred) is called after every step with the step's input x_t and the model's
    x0 estimate (a denoising strip); it should not call .item()/.cpu() if you care about speed. Its tensors are
    inference tensors: ``.clone()`` them outside inference mode if you need them in autograd.
    precision: its autocast wraps the denoiser call (None: fp32). fast: replay a CUDA graph of the denoiser call
    (ignored on a CPU; see :mod:`dlcourse.cuda_graph`: build a wrapper function once and reuse it).
    progress: a progress bar over the steps.
    Runs under torch.inference_mode. Returns x_0: (B, C, H, W) float32, an ordinary tensor (usable as training
    data).
    """
    check_sampler_inputs(denoiser, schedule, noise, prediction_type, clip_x0, generator, callback)
    T = schedule.num_timesteps
    ts = timesteps(T if num_steps is None else num_steps, T, timestep_spacing, steps_offset).tolist()
    with sampling_mode(denoiser):
        x = noise.float()  # x_T ~ N(0, I), Algorithm 2, line 1
        denoise = make_denoiser(denoiser, x, precision, fast)
        for i, t in enumerate(tqdm(ts, desc="DDPM", unit="step", leave=False, disable=not progress)):  # line 2
            prev_t = ts[i + 1] if i + 1 < len(ts) else -1  # -1: this step lands on the clean image
            model_output = denoise(x, t)
            z = None if prev_t < 0 else _gaussian_like(x, generator)  # Algorithm 2, line 3
            x_prev, x0_pred = ddpm_step(model_output, t, prev_t, x, schedule, prediction_type, z, clip_x0)  # line 4
            if callback is not None:
                callback(i, t, x, x0_pred)
            x = x_prev
    return x.clone()  # cloned outside inference mode: an ordinary tensor


def ddim_sample(
    denoiser: Denoiser,
    schedule: NoiseSchedule,
    noise: Tensor,
    *,
    num_steps: int = 50,
    eta: float = 0.0,
    prediction_type: str = "eps",
    clip_x0: tuple[float, float] | None = None,
    timestep_spacing: str = "trailing",
    steps_offset: int = 0,
    set_alpha_to_one: bool = True,
    start_step: int = 0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
    precision: Precision | None = None,
    fast: bool = False,
    progress: bool = True,
) -> Tensor:
    """DDIM sampling (Song et al. 2021, Eq. (12)) in num_steps strided steps, from x_T = noise down to x_0.

    The same arguments as :func:`ddpm_sample`, plus eta in [0, 1]: 0 (the default) is deterministic, so the
    image is a function of ``noise`` alone (the generator is never used, which makes interpolating between two
    noises meaningful); 1 adds DDPM's posterior variance at every step.
    Each step lands on the next timestep of the sequence (the DDIM paper's sub-sequence tau, Sec. 4.2). For
    "leading" spacing and for "trailing" (the default) with T divisible by num_steps that is t - T // num_steps,
    so the loop equals diffusers' DDIMScheduler loop with the same ``timestep_spacing``. For the other spacings
    DDIMScheduler still steps to t - T // num_steps, which is not a visited timestep; we do not copy that
    (DDPMScheduler does as we do).
    set_alpha_to_one: True (the default) ends on the clean image (alpha_bar = 1); False ends on alpha_bar_0, one
    tiny step short of it, as diffusers' ``DDIMScheduler(set_alpha_to_one=False)``: Stable Diffusion's setting.
    start_step: skip the first start_step timesteps of the sequence; ``noise`` is then x at timestep
    ``timesteps(...)[start_step]``, e.g. an encoded image noised to it (img2img, SDEdit: Meng et al. 2022).
    Returns x_0: (B, C, H, W) float32, an ordinary tensor.
    """
    check_eta(eta)
    check_sampler_inputs(denoiser, schedule, noise, prediction_type, clip_x0, generator, callback)
    ts = timesteps(num_steps, schedule.num_timesteps, timestep_spacing, steps_offset).tolist()
    check_ddim_ending(ts, set_alpha_to_one, start_step)
    final_prev_t = -1 if set_alpha_to_one else 0  # -1: alpha_bar = 1, the clean image; 0: alpha_bar_0
    ts = ts[start_step:]
    with sampling_mode(denoiser):
        x = noise.float()  # x_T ~ N(0, I)
        denoise = make_denoiser(denoiser, x, precision, fast)
        for i, t in enumerate(tqdm(ts, desc="DDIM", unit="step", leave=False, disable=not progress)):
            prev_t = ts[i + 1] if i + 1 < len(ts) else final_prev_t
            model_output = denoise(x, t)
            z = None if eta == 0 or prev_t < 0 else _gaussian_like(x, generator)  # none when landing on alpha_bar = 1
            x_prev, x0_pred = ddim_step(model_output, t, prev_t, x, schedule, eta, prediction_type, z, clip_x0)
            if callback is not None:
                callback(i, t, x, x0_pred)
            x = x_prev
    return x.clone()  # cloned outside inference mode: an ordinary tensor
