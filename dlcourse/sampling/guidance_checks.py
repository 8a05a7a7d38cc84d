"""Input checks of classifier-free guidance and of ``generate`` (text to image), kept out of the files a notebook
reads; the checks of the steps and samplers are in :mod:`dlcourse.sampling.checks`.

Each check raises an error that says what was wrong and how to fix it, from Python values, shapes and dtypes only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dlcourse.argument_checks import check_int, check_number, check_tensor, describe

__all__ = [
    "check_generate_inputs",
    "check_guidance_scale",
    "check_guidance_w",
    "check_guided_batch",
    "check_guided_denoiser",
]

_NEGATIVE_HINT = (
    "A scale below 0 would push the samples away from the prompt itself (an anti-prompt); to move away from a "
    "prompt, keep s >= 0 and pass that prompt's embedding as uncond_context (a negative prompt)."
)


def check_guidance_scale(guidance_scale: float, caller: str = "guided_denoiser") -> None:
    """A finite number s >= 0: 0 is the unconditional model, 1 the conditional one, above 1 guidance (GLIDE's s)."""
    check_number(
        caller, "guidance_scale", guidance_scale, 0,
        fix="s = 0 samples the unconditional model, s = 1 the conditional one, s > 1 guides (3 to 8 is typical; "
        f"Ho & Salimans' weight w is s - 1: guidance_scale_from_w(w)). {_NEGATIVE_HINT}",
    )


def check_guidance_w(w: float) -> None:
    """Ho & Salimans' guidance weight w = s - 1: a finite number >= -1 (w = -1 is the unconditional model)."""
    check_number(
        "guidance_scale_from_w", "w", w, -1,
        fix="Ho & Salimans' w = 0 is the conditional model and w = -1 the unconditional one; s = 1 + w must not "
        f"be negative. {_NEGATIVE_HINT}",
    )


def check_guided_denoiser(
    unet: Callable,
    context: Tensor,
    uncond_context: Tensor,
    guidance_scale: float,
    context_mask: Tensor | None,
    uncond_mask: Tensor | None,
) -> None:
    """The arguments of :func:`dlcourse.sampling.guided_denoiser`; metadata only, checked once, not per step."""
    if not callable(unet):
        raise TypeError(
            f"guided_denoiser: unet must be called as unet(x, t, context=..., context_mask=...), e.g. model.unet of a "
            f"TextConditionedUNet; got {describe(unet)}."
        )
    check_tensor("guided_denoiser", "context", context, "the prompts' embeddings (B, L, D)", ndim=3, floating=True)
    check_tensor("guided_denoiser", "uncond_context", uncond_context,
                 "the empty (or negative) prompt's embeddings (1 or B, L, D)", ndim=3, floating=True)  # fmt: skip
    if uncond_context.shape[1:] != context.shape[1:] or uncond_context.shape[0] not in (1, context.shape[0]):
        raise ValueError(
            f"context (B, L, D) and uncond_context (1 or B, L, D) must have the same L and D (encode both with the "
            f"same tokenizer and text encoder); got {tuple(context.shape)} and {tuple(uncond_context.shape)}."
        )
    if uncond_context.device != context.device or uncond_context.dtype != context.dtype:
        raise ValueError(
            f"uncond_context must have context's device and dtype ({context.device}, {context.dtype}); got "
            f"{uncond_context.device}, {uncond_context.dtype}. Encode both with the same text encoder."
        )
    check_guidance_scale(guidance_scale)
    if (context_mask is None) != (uncond_mask is None):
        given, missing = ("context_mask", "uncond_mask") if uncond_mask is None else ("uncond_mask", "context_mask")
        raise ValueError(
            f"pass a mask for both contexts or for neither; got {given} but {missing}=None. Pass both masks "
            "Tokenizer.encode returned, or neither."
        )
    for name, mask, emb in (("context_mask", context_mask, context), ("uncond_mask", uncond_mask, uncond_context)):
        if mask is None:
            continue
        check_tensor("guided_denoiser", name, mask, "a bool padding mask (B, L) from Tokenizer.encode")
        if mask.dtype != torch.bool or tuple(mask.shape) != tuple(emb.shape[:2]) or mask.device != emb.device:
            raise ValueError(
                f"{name} must be a bool tensor of shape {tuple(emb.shape[:2])} on {emb.device}, like its embeddings "
                f"{tuple(emb.shape)}; got {describe(mask)}. Use the mask Tokenizer.encode returned with them."
            )


def check_guided_batch(x_t: Tensor, batch: int) -> None:
    """The guided denoiser's x_t has one image per prompt. Pure Python: it runs at every sampling step."""
    if not isinstance(x_t, Tensor) or x_t.ndim != 4 or x_t.shape[0] != batch:
        raise ValueError(
            f"x_t must be (B, C, H, W) with B = {batch}, one image per prompt of the context; got {describe(x_t)}. "
            "Tokenise one prompt per image (repeat a prompt to draw several images of it)."
        )


def check_generate_inputs(model, prompts, negative_prompt, guidance_scale, seed) -> None:
    """The arguments of :func:`dlcourse.sampling.generate` that its pieces would not name clearly."""
    if not all(hasattr(model, name) for name in ("encode_prompts", "unet", "config")):
        raise TypeError(
            f"generate takes a text-to-image model with encode_prompts, unet and config (a TextConditionedUNet, e.g. "
            f"shapes_text2img().model); got {type(model).__name__}. For a model without text, use ddim_sample."
        )
    if model.training:
        raise ValueError(
            "generate got a model in training mode (any dropout on, every call perturbed): sample with model.eval(), "
            "e.g. train(...).ema_model.eval()."
        )
    texts = {"prompts": prompts, "negative_prompt": negative_prompt}
    for name, value in texts.items():
        if isinstance(value, str):
            continue
        if not isinstance(value, list | tuple) or not value or not all(isinstance(p, str) for p in value):
            raise ValueError(f"{name} must be a string or a non-empty list of strings; got {value!r}.")
    n = 1 if isinstance(prompts, str) else len(prompts)
    if not isinstance(negative_prompt, str) and len(negative_prompt) not in (1, n):
        raise ValueError(
            f"{n} prompts but {len(negative_prompt)} negative prompts; pass one negative prompt (a string) for all, "
            "or one per prompt."
        )
    check_guidance_scale(guidance_scale, caller="generate")
    check_int("generate", "seed", seed, fix="It seeds the starting noise x_T.")
