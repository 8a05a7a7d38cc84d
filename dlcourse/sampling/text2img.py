"""Text to image with the course's text model: prompts -> embeddings -> guided DDIM -> images.

Nothing new is computed here; it is the three pieces of notebooks 04 and 06 in a row:

1. the prompts and the negative prompt (the empty prompt by default) are tokenised and embedded once,
   ``model.encode_prompts(ids, mask)``: (N, L, D) and (1 or N, L, D);
2. :func:`~dlcourse.sampling.guided_denoiser` wraps ``model.unet`` into denoise(x_t, t) =
   out_neg + s * (out_cond - out_neg) (Ho & Salimans 2022, Eq. (6) with s = 1 + w), one forward of 2N;
3. :func:`~dlcourse.sampling.ddim_sample` runs it from x_T ~ N(0, I), drawn from ``seed`` on the model's device,
   so the same seed gives the same starting noise whatever the prompts or the scale (a sweep changes one thing).

Taught in notebooks/06_classifier_free_guidance.ipynb, "Sampling with a prompt" (written there on the page and
checked equal to this function); notebooks 07 and 09 call it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlcourse.sampling.guidance import guided_denoiser
from dlcourse.sampling.guidance_checks import check_generate_inputs
from dlcourse.sampling.samplers import ddim_sample
from dlcourse.schedules import NoiseSchedule

__all__ = ["generate"]


def generate(
    model: nn.Module,
    tokenizer,
    prompts: str | Sequence[str],
    *,
    schedule: NoiseSchedule,
    guidance_scale: float,
    prediction_type: str,
    negative_prompt: str | Sequence[str] = "",
    seed: int = 0,
    num_steps: int = 50,
    clip_x0: tuple[float, float] | None = None,
    fast: bool = False,
    progress: bool = False,
) -> Tensor:
    """Images (N, C, R, R) float32, one per prompt, sampled with classifier-free guidance at ``guidance_scale``.

    model: a :class:`~dlcourse.models.TextConditionedUNet` in eval mode (``model.encode_prompts`` gives the
        context, ``model.unet`` denoises; C and R are ``model.config.in_channels`` and ``.resolution``).
    tokenizer: its :class:`~dlcourse.models.Tokenizer` (prompts -> ids (N, L), mask (N, L)).
    prompts: one prompt or N; negative_prompt: what guidance moves away from, one for all or one per prompt
        ("" is the unconditional prediction: plain guidance).
    schedule, prediction_type: the model's, as training used them; guidance_scale: s (1 = the conditional model).
    seed: x_T ~ N(0, I) of shape (N, C, R, R) from torch.Generator(model's device).manual_seed(seed).
    num_steps, clip_x0, fast, progress: as :func:`~dlcourse.sampling.ddim_sample` (clip_x0=(-1, 1) for images).
    """
    check_generate_inputs(model, prompts, negative_prompt, guidance_scale, seed)
    device = next(model.parameters()).device
    ids, mask = tokenizer.encode(prompts, device)  # (N, L) each
    negative_ids, negative_mask = tokenizer.encode(negative_prompt, device)  # (1 or N, L)
    with torch.no_grad():
        context, away = model.encode_prompts(ids, mask), model.encode_prompts(negative_ids, negative_mask)
    denoise = guided_denoiser(model.unet, context, away, guidance_scale, context_mask=mask, uncond_mask=negative_mask)
    shape = (ids.shape[0], model.config.in_channels, model.config.resolution, model.config.resolution)
    noise = torch.randn(shape, device=device, generator=torch.Generator(device).manual_seed(seed))  # x_T
    return ddim_sample(denoise, schedule, noise, num_steps=num_steps, prediction_type=prediction_type,
                       clip_x0=clip_x0, fast=fast, progress=progress)
