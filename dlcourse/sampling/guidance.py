"""Classifier-free guidance as a denoiser function: the samplers run it like any model (Ho & Salimans 2022).

One network, trained with the prompt dropped some of the time (``TrainConfig.p_uncond``), predicts both
eps(x_t, prompt) and eps(x_t, empty prompt). Guidance moves the prediction away from the unconditional one:

    eps = eps_uncond + s * (eps_cond - eps_uncond)

- s is diffusers' ``guidance_scale`` (and GLIDE's): s = 1 is the plain conditional model, s = 0 the unconditional
  one, s > 1 guides. Ho & Salimans write the same thing as eps = (1 + w) eps_cond - w eps_uncond, so w = s - 1
  (:func:`guidance_scale_from_w`): their w = 0 is no guidance.
- A negative prompt takes the place of the empty one: the prediction moves away from it instead.

The two predictions come from **one** forward pass on a batch of 2B ([unconditional; conditional]), not two
calls: half the kernel launches, and the same cost in FLOPs. The same formula holds for v and x0 predictions
(each is linear in eps at a fixed x_t).

Taught in notebooks/06_classifier_free_guidance.ipynb, "Guidance, on the page" (the same function with two forward
passes, checked equal to this one).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dlcourse.sampling.denoiser import Denoiser
from dlcourse.sampling.guidance_checks import check_guidance_w, check_guided_batch, check_guided_denoiser

__all__ = ["guidance_scale_from_w", "guided_denoiser"]


def guidance_scale_from_w(w: float) -> float:
    """diffusers' guidance scale s from Ho & Salimans' guidance weight w: s = 1 + w."""
    check_guidance_w(w)
    return 1.0 + w


def guided_denoiser(
    unet: Callable[..., Tensor],
    context: Tensor,
    uncond_context: Tensor,
    guidance_scale: float,
    *,
    context_mask: Tensor | None = None,
    uncond_mask: Tensor | None = None,
) -> Denoiser:
    """denoise(x_t, t) = out_uncond + s * (out_cond - out_uncond), from one forward of 2B.

    unet: called as unet(x (2B, C, H, W), t (2B,), context=(2B, L, D), context_mask=(2B, L) or None).
    context, context_mask: the prompts' token embeddings (B, L, D) and mask (B, L); uncond_context, uncond_mask:
    the empty prompt's (or a negative prompt's), (1, L, D) / (1, L) for all rows or (B, L, D) / (B, L).
    guidance_scale: s >= 0 (0: unconditional, 1: conditional, > 1: guided).
    """
    check_guided_denoiser(unet, context, uncond_context, guidance_scale, context_mask, uncond_mask)
    both = torch.cat([uncond_context.expand_as(context), context])  # (2B, L, D): [unconditional; conditional]
    both_mask = None if context_mask is None else torch.cat([uncond_mask.expand_as(context_mask), context_mask])

    def denoise(x_t: Tensor, t: Tensor) -> Tensor:
        check_guided_batch(x_t, context.shape[0])
        out = unet(torch.cat([x_t, x_t]), torch.cat([t, t]), context=both, context_mask=both_mask)
        out_uncond, out_cond = out.chunk(2)
        return out_uncond + guidance_scale * (out_cond - out_uncond)  # Ho & Salimans 2022, Eq. (6) with s = 1 + w

    return denoise
