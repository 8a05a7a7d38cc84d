"""The denoiser a sampler calls: a model, or any function ``denoise(x_t, t) -> model output``.

Every sampler call in notebooks 03 and 04 goes through it, with a model as the denoiser (notebook 04 also counts
the network evaluations of the ODE solvers with a denoiser function).

A sampler needs one thing from the network: for x_t (B, C, H, W) and t, a LongTensor (B,) on x_t's device (a float32
one for the fractional timesteps of the Euler and Heun solvers), the model output (eps, v or x0, whatever it was
trained to predict). An nn.Module called as ``model(x_t, t)`` is such a function; so is
``lambda x, t: model(x, t, context=c)`` for a conditional model, and so is classifier-free guidance, written as a
wrapper that runs [unconditional; conditional] as one batch of 2B:

    def guided(x, t):
        both = model(torch.cat([x, x]), torch.cat([t, t]), context=torch.cat([c_null, c]))
        eps_u, eps_c = both.chunk(2)
        return eps_u + scale * (eps_c - eps_u)  # GLIDE's form; scale = 1 + w of Ho & Salimans 2022

A module is put in eval mode for the run (its train/eval flags restored afterwards); a function is called as
given, so put the models it calls in eval mode yourself (``model.eval()``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn

from dlcourse import fast_path
from dlcourse.cuda_graph import graphed_denoiser
from dlcourse.runtime import Precision

__all__ = ["Denoiser", "make_denoiser", "sampling_mode"]

Denoiser = Callable[[Tensor, Tensor], Tensor]  # denoise(x_t (B, C, H, W), t (B,)) -> model output (B, C, H, W)


def make_denoiser(
    denoiser: Denoiser,
    x: Tensor,
    precision: Precision | None = None,
    fast: bool = False,
    timestep_dtype: torch.dtype = torch.long,
) -> Callable[[Tensor, int | float], Tensor]:
    """The function a sampler calls at each step: ``denoise(x_t, t)`` with an int t -> ``denoiser(x_t, t (B,))``.

    x: (B, C, H, W), an example input (only its shape, dtype and device are used). timestep_dtype: the dtype of the
    t (B,) the denoiser gets: torch.long (the default, integer timesteps) or torch.float32 for the fractional
    timesteps of the Euler and Heun solvers (:mod:`dlcourse.sampling.solvers`; the U-Net's timestep embedding takes
    either). Returns the output in float32. The eager call is a plain call under ``precision.autocast()`` (fp32
    when precision is None). With ``fast=True`` and x on a CUDA GPU, the call replays a cached CUDA graph
    (:func:`dlcourse.cuda_graph.graphed_denoiser`), whose first call is checked against the eager call and which
    falls back to it, with one warning, if the capture or the check fails; on a CPU fast is quietly ignored.
    Call it under torch.inference_mode() / no_grad, as the samplers do.
    """

    def denoise(x_t: Tensor, t: int | float) -> Tensor:
        t_batch = torch.full((x_t.shape[0],), t, dtype=timestep_dtype, device=x_t.device)  # no host->device copy
        with precision.autocast() if precision is not None else nullcontext():
            output = denoiser(x_t, t_batch)
        if not isinstance(output, Tensor):
            raise TypeError(
                f"The denoiser must return the model output as a tensor (B, C, H, W); got {type(output).__name__}. "
                "For a model that returns an object (e.g. diffusers' UNet2DModel), wrap it: "
                "lambda x, t: model(x, t).sample."
            )
        return output.float()

    if fast and x.device.type == fast_path.graphs.device_type:
        return functools.partial(graphed_denoiser(denoiser, x, precision, timestep_dtype), eager=denoise)
    return denoise


@contextmanager
def sampling_mode(denoiser: Denoiser) -> Iterator[None]:
    """torch.inference_mode, and eval mode (dropout off) for a module, every submodule's flag restored on exit."""
    flags = [(module, module.training) for module in denoiser.modules()] if isinstance(denoiser, nn.Module) else []
    if isinstance(denoiser, nn.Module):
        denoiser.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        for module, training in flags:
            module.training = training
