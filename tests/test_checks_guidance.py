"""Every argument of dlcourse.sampling.guidance is checked: a NaN, infinite or negative guidance scale (an
anti-prompt), mismatched contexts or masks, and an x_t of another batch raise an error naming the argument."""

from __future__ import annotations

import pytest
import torch

from dlcourse.sampling import guidance_scale_from_w, guided_denoiser

B, L, D = 3, 5, 8


def echo(x, t, context, context_mask=None):
    """A stand-in U-Net: its output depends on the context, so guidance combines two different predictions."""
    return x + context.mean(dim=(1, 2)).view(-1, 1, 1, 1)


def contexts():
    g = torch.Generator().manual_seed(0)
    context, uncond = torch.randn(B, L, D, generator=g), torch.randn(1, L, D, generator=g)
    mask, uncond_mask = torch.ones(B, L, dtype=torch.bool), torch.ones(1, L, dtype=torch.bool)
    return context, uncond, mask, uncond_mask


@pytest.mark.parametrize(
    ("scale", "error", "match"),
    [
        (float("nan"), ValueError, r"guidance_scale must be a finite number >= 0[,;] got nan"),
        (float("inf"), ValueError, r"guidance_scale must be a finite number >= 0[,;] got inf"),
        (-1.0, ValueError, r"guidance_scale must be a finite number >= 0[,;] got -1.0\..*negative prompt"),
        ("7.5", TypeError, r"guidance_scale must be a finite number >= 0[,;] got the string '7.5'"),
        (None, TypeError, r"guidance_scale must be a finite number >= 0[,;] got None"),
        (torch.tensor(7.5), TypeError, r"guidance_scale .*got a torch.float32 tensor of shape \(\)"),
    ],
)
def test_the_guidance_scale_must_be_finite_and_not_negative(scale, error, match):
    context, uncond, mask, uncond_mask = contexts()
    with pytest.raises(error, match=match):
        guided_denoiser(echo, context, uncond, scale, context_mask=mask, uncond_mask=uncond_mask)


def test_scale_zero_is_the_unconditional_model_and_is_allowed():
    context, uncond, mask, uncond_mask = contexts()
    x, t = torch.randn(B, 1, 4, 4), torch.zeros(B, dtype=torch.long)
    out = guided_denoiser(echo, context, uncond, 0, context_mask=mask, uncond_mask=uncond_mask)(x, t)
    torch.testing.assert_close(out, echo(x, t, uncond.expand_as(context)))


@pytest.mark.parametrize(
    ("w", "error", "match"),
    [
        (float("nan"), ValueError, r"w must be a finite number >= -1[,;] got nan"),
        (-2.0, ValueError, r"w must be a finite number >= -1[,;] got -2.0"),
        ("2", TypeError, r"w must be a finite number >= -1[,;] got the string '2'"),
    ],
)
def test_the_guidance_weight_w_gives_a_scale_of_at_least_zero(w, error, match):
    assert guidance_scale_from_w(-1.0) == 0.0
    with pytest.raises(error, match=match):
        guidance_scale_from_w(w)


def _replace(name, value):
    context, uncond, mask, uncond_mask = contexts()
    args = {"unet": echo, "context": context, "uncond_context": uncond, "guidance_scale": 3.0,
            "context_mask": mask, "uncond_mask": uncond_mask, name: value}  # fmt: skip
    return args


@pytest.mark.parametrize(
    ("name", "value", "error", "match"),
    [
        ("unet", "unet", TypeError, r"unet must be called as unet\(x, t, context=\.\.\., context_mask=\.\.\.\)"),
        ("context", torch.randn(B, D), ValueError, r"context must be .* embeddings \(B, L, D\) \(3-D\)"),
        ("context", torch.ones(B, L, D, dtype=torch.long), ValueError, r"context must be .*floating dtype"),
        ("context", [[0.0]], TypeError, r"context must be a tensor"),
        ("uncond_context", torch.randn(1, L + 1, D), ValueError, r"must have the same L and D"),
        ("uncond_context", torch.randn(2, L, D), ValueError, r"uncond_context \(1 or B, L, D\)"),
        ("uncond_context", torch.randn(1, L, D, dtype=torch.float64), ValueError, r"uncond_context must have"),
        ("context_mask", torch.ones(B, L), ValueError, r"context_mask must be a bool tensor of shape \(3, 5\)"),
        ("uncond_mask", torch.ones(1, L + 1, dtype=torch.bool), ValueError, r"uncond_mask must be .* \(1, 5\)"),
        ("uncond_mask", None, ValueError, r"got context_mask but uncond_mask=None"),
        ("context_mask", "mask", TypeError, r"context_mask must be a tensor"),
    ],
)
def test_contexts_and_masks_are_checked_against_each_other(name, value, error, match):
    with pytest.raises(error, match=match):
        guided_denoiser(**_replace(name, value))


def test_the_denoiser_refuses_an_x_t_with_another_batch_size():
    context, uncond, mask, uncond_mask = contexts()
    denoise = guided_denoiser(echo, context, uncond, 3.0, context_mask=mask, uncond_mask=uncond_mask)
    with pytest.raises(ValueError, match=r"x_t must be \(B, C, H, W\) with B = 3, one image per prompt"):
        denoise(torch.randn(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))
