"""Every argument of dlcourse.latent (LatentSpace, measure_scaling_factor, encode_dataset) is checked: a scaling factor
of 0, NaN or below 0, a non-VAE, images out of [-1, 1], a bad batch size raise an error naming the argument."""

from __future__ import annotations

import pytest
import torch

from dlcourse.latent import LatentSpace, encode_dataset, measure_scaling_factor
from dlcourse.models import VAE, VAEConfig


@pytest.fixture(scope="module")
def vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(resolution=16, base_channels=8, channel_mults=(1, 2), groups=8))


@pytest.mark.parametrize(
    ("factor", "error", "match"),
    [
        (0.0, ValueError, r"LatentSpace: scaling_factor must be a finite number > 0[,;] got 0.0"),
        (float("nan"), ValueError, r"LatentSpace: scaling_factor must be a finite number > 0[,;] got nan"),
        (-0.18215, ValueError, r"LatentSpace: scaling_factor .* got -0.18215"),
        (float("inf"), ValueError, r"LatentSpace: scaling_factor .* got inf"),
        (torch.tensor(0.5), TypeError, r"LatentSpace: scaling_factor .*got a torch.float32 tensor of shape \(\)"),
        ("0.18215", TypeError, r"LatentSpace: scaling_factor must be a finite number > 0[,;] got the string '0.18215'"),
    ],
)
def test_the_scaling_factor_must_be_a_finite_positive_number(vae, factor, error, match):
    with pytest.raises(error, match=match):
        LatentSpace(vae, factor)


def test_the_space_needs_a_vae_and_images_in_minus_one_one(vae):
    with pytest.raises(TypeError, match=r"LatentSpace: vae must be a VAE"):
        LatentSpace(torch.nn.Conv2d(3, 4, 1), 1.0)
    space = LatentSpace(vae, 0.5)
    with pytest.raises(ValueError, match=r"x has values in \[.*\], but the VAE takes images in \[-1, 1\]"):
        space.encode(torch.rand(2, 3, 16, 16) * 255)
    assert space.encode(torch.rand(2, 3, 16, 16) * 255, check=False).shape == (2, 4, 8, 8)  # the check, skipped
    with pytest.raises(TypeError, match=r"latents must be a tensor: scaled latents \(B, 4, h, w\)"):
        space.decode([0.0])


@pytest.mark.parametrize(
    ("space", "images", "batch_size", "error", "match"),
    [
        ("vae", torch.zeros(4, 3, 16, 16), 2, TypeError, r"space must be a LatentSpace"),
        (None, torch.zeros(3, 16, 16), 2, ValueError, r"images must be images \(N, C, H, W\) in \[-1, 1\] \(4-D\)"),
        (None, torch.zeros(0, 3, 16, 16), 2, ValueError, r"images is empty"),
        (None, torch.zeros(4, 3, 16, 16, dtype=torch.uint8), 2, ValueError, r"images must be .*floating dtype"),
        (None, torch.zeros(4, 3, 16, 16), 0, ValueError, r"batch_size must be an integer >= 1[,;] got 0"),
        (None, torch.zeros(4, 3, 16, 16), 2.0, TypeError, r"batch_size must be an integer >= 1[,;] got 2.0"),
    ],
)
def test_encode_dataset_checks_its_arguments(vae, space, images, batch_size, error, match):
    space = LatentSpace(vae, 1.0) if space is None else space
    with pytest.raises(error, match=match):
        encode_dataset(space, images, batch_size)


def test_fit_checks_its_images_and_batch_size(vae):
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1[,;] got -1"):
        LatentSpace.fit(vae, torch.zeros(4, 3, 16, 16), batch_size=-1)
    with pytest.raises(TypeError, match=r"LatentSpace: vae must be a VAE"):
        LatentSpace.fit("vae", torch.zeros(4, 3, 16, 16))


@pytest.mark.parametrize(
    ("latents", "error", "match"),
    [
        (torch.randn(1, 4, 8, 8), ValueError, r"needs latents \(N >= 2, c, h, w\)[,;] got \(1, 4, 8, 8\)"),
        (torch.randn(4, 8, 8), ValueError, r"needs latents \(N >= 2, c, h, w\)[,;] got \(4, 8, 8\)"),
        (torch.ones(4, 4, 8, 8, dtype=torch.long), ValueError, r"latents must be .*floating dtype"),
        ([1.0, 2.0], TypeError, r"latents must be a tensor"),
        (torch.zeros(4, 4, 8, 8), ValueError, r"the latents' std is 0.0"),
        (torch.full((4, 4, 8, 8), float("nan")), ValueError, r"the latents' std is nan"),
    ],
)
def test_measure_scaling_factor_checks_its_latents(latents, error, match):
    with pytest.raises(error, match=match):
        measure_scaling_factor(latents)
