"""Every argument of dlcourse.models.vae (VAE, DiagonalGaussian, VAELoss) and VAEConfig is checked: a bad one raises
an error that names it, says what it got and what it needs."""

from __future__ import annotations

import pytest
import torch

from dlcourse.models import VAE, DiagonalGaussian, VAEConfig, VAELoss

CONFIG = dict(resolution=16, base_channels=8, channel_mults=(1, 2), groups=8)


@pytest.fixture(scope="module")
def vae() -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(**CONFIG))


def images(*shape: int, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    return torch.rand(shape) * (high - low) + low


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (images(2, 3, 16, 16, low=0, high=255), ValueError, r"x has values in \[.*\], but .* images in \[-1, 1\]"),
        (images(2, 3, 16, 16) * float("nan"), ValueError, r"x has values in \[nan"),
        ((images(2, 3, 16, 16) * 127 + 128).to(torch.uint8), ValueError, r"x has dtype torch.uint8.*x.float\(\) / 255"),
        ([[0.0]], TypeError, r"x must be a tensor.*got \[\[0.0\]\]"),
        (images(2, 3, 8, 8), ValueError, r"expected images \(B, 3, 16, 16\)[,;] got \(2, 3, 8, 8\).*resize"),
        (images(3, 16, 16), ValueError, r"expected images \(B, 3, 16, 16\)[,;] got \(3, 16, 16\)"),
        (images(2, 4, 8, 8), ValueError, r"look like latents"),
    ],
)
def test_encode_refuses_what_is_not_a_float_image_batch_in_minus_one_one(vae, x, error, match):
    with pytest.raises(error, match=match):
        vae.encode(x)


def test_the_range_check_costs_one_sync_and_can_be_skipped(vae):
    x = images(2, 3, 16, 16, low=0, high=255)
    assert vae.encode(x, check=False).mean.shape == (2, 4, 8, 8)  # skipped, as VAELoss does in a training step
    assert vae(x, check=False)[0].shape == x.shape
    with pytest.raises(ValueError, match="x has values"):
        vae(x)


@pytest.mark.parametrize(
    ("z", "error", "match"),
    [
        ("latents", TypeError, r"z must be a tensor: latents \(B, 4, 8, 8\)"),
        (torch.zeros(2, 4, 8, 8, dtype=torch.long), ValueError, r"z must be float latents[,;] got dtype torch.int64"),
        (torch.zeros(2, 3, 16, 16), ValueError, r"look like images"),
        (torch.zeros(2, 2, 8, 8), ValueError, r"latent_channels=4"),
    ],
)
def test_decode_refuses_what_is_not_a_float_latent_batch(vae, z, error, match):
    with pytest.raises(error, match=match):
        vae.decode(z)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device")
def test_inputs_on_another_device_than_the_weights_are_named(vae):
    with pytest.raises(ValueError, match=r"x is on cuda:0 but the VAE's weights are on cpu"):
        vae.encode(images(1, 3, 16, 16, low=-1).cuda())


def test_the_config_and_the_generator_are_checked(vae):
    with pytest.raises(TypeError, match=r"config must be a VAEConfig or None"):
        VAE({"resolution": 16})
    posterior = vae.encode(images(2, 3, 16, 16))
    with pytest.raises(TypeError, match=r"generator must be None or a torch.Generator[,;] got 0"):
        posterior.sample(0)


@pytest.mark.parametrize(
    ("mean", "logvar", "error", "match"),
    [
        (torch.zeros(2, 4), "zeros", TypeError, r"logvar must be a tensor"),
        (torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 4), ValueError, r"mean must be .*floating dtype"),
        (torch.zeros(2, 4), torch.zeros(2, 5), ValueError, r"mean and logvar must have the same shape"),
    ],
)
def test_a_diagonal_gaussian_needs_a_mean_and_logvar_of_one_shape(mean, logvar, error, match):
    with pytest.raises(error, match=match):
        DiagonalGaussian(mean, logvar)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"kl_weight": -1e-6}, ValueError, r"VAELoss: kl_weight must be a finite number >= 0[,;] got -1e-06"),
        ({"kl_weight": float("nan")}, ValueError, r"VAELoss: kl_weight must be a finite number >= 0[,;] got nan"),
        ({"kl_weight": float("inf")}, ValueError, r"VAELoss: kl_weight .* got inf"),
        ({"kl_weight": "1e-6"}, TypeError, r"VAELoss: kl_weight must be a finite number"),
        ({"kl_weight": True}, TypeError, r"VAELoss: kl_weight must be a finite number"),
        ({"reconstruction": "l2"}, ValueError, r"VAELoss.reconstruction must be 'l1' or 'mse', got 'l2'"),
    ],
)
def test_the_vae_loss_settings_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match):
        VAELoss(**kwargs)


def test_the_vae_loss_refuses_conditions_it_would_ignore(vae):
    loss = VAELoss()
    x0 = images(2, 3, 16, 16)
    assert torch.isfinite(loss(vae, x0))
    with pytest.raises(ValueError, match=r"VAELoss .* takes no conditions.*\['class_labels'\]"):
        loss(vae, x0, model_kwargs={"class_labels": torch.zeros(2, dtype=torch.long)})
    with pytest.raises(TypeError, match=r"VAELoss: model must be the VAE being trained"):
        loss("vae", x0)


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"channel_mults": 2}, ValueError, r"VAEConfig.channel_mults must be a tuple of positive integers .*, got 2"),
        ({"channel_mults": (1, True)}, ValueError, r"VAEConfig.channel_mults .* got \(1, True\)"),
        ({"channel_mults": ()}, ValueError, r"VAEConfig.channel_mults must be a non-empty tuple"),
        ({"mid_attention": "yes"}, ValueError, r"VAEConfig.mid_attention must be True or False, got 'yes'"),
        ({"resolution": 16.0}, ValueError, r"VAEConfig.resolution must be a positive integer[,;] got 16.0"),
        ({"latent_channels": 0}, ValueError, r"VAEConfig.latent_channels must be a positive integer[,;] got 0"),
        ({"resolution": 17}, ValueError, r"resolution=17 is not divisible by the downsampling factor f=2"),
        ({"groups": 3}, ValueError, r"GroupNorm needs channels divisible by groups=3"),
    ],
)
def test_every_config_field_is_checked(changes, error, match):
    with pytest.raises(error, match=match):
        VAEConfig(**{**CONFIG, **changes})
