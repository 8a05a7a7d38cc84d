"""Tests for dlcourse.models.vae and dlcourse.latent: shapes, the KL term, training, scaling, clear errors."""

from __future__ import annotations

import pytest
import torch

from dlcourse.data import Shapes
from dlcourse.latent import LatentSpace, encode_dataset, measure_scaling_factor
from dlcourse.models import VAE, DiagonalGaussian, VAEConfig, VAELoss
from dlcourse.training import TrainConfig, train

TINY = dict(resolution=16, base_channels=8, groups=4)


@pytest.mark.parametrize("mults, f", [((1, 2, 2), 4), ((1, 2, 2, 2), 8)])
def test_encoder_and_decoder_shapes_for_f_4_and_8(mults, f):
    config = VAEConfig(resolution=32, base_channels=8, groups=4, channel_mults=mults, latent_channels=4)
    assert config.downsampling_factor == f
    vae = VAE(config)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    posterior = vae.encode(x)
    assert posterior.mean.shape == posterior.logvar.shape == (2, 4, 32 // f, 32 // f)
    assert vae.decode(posterior.sample()).shape == x.shape
    x_hat, _ = vae(x)
    assert x_hat.shape == x.shape


def test_kl_is_zero_exactly_at_the_prior_and_positive_elsewhere():
    zeros = torch.zeros(3, 4, 2, 2)
    assert torch.equal(DiagonalGaussian(zeros, zeros).kl(), torch.zeros(3))
    g = torch.Generator().manual_seed(0)
    for mean, logvar in [(torch.randn(3, 4, 2, 2, generator=g), zeros), (zeros, torch.randn(3, 4, 2, 2, generator=g))]:
        assert (DiagonalGaussian(mean, logvar).kl() > 0).all()
    # Closed form against torch.distributions for a random Gaussian.
    mean, logvar = torch.randn(2, 4, 2, 2, generator=g), torch.randn(2, 4, 2, 2, generator=g)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    expected = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(DiagonalGaussian(mean, logvar).kl(), expected)


def test_the_sample_is_reparameterised_and_follows_the_generator():
    mean, logvar = torch.full((1, 4, 8, 8), 2.0, requires_grad=True), torch.full((1, 4, 8, 8), -2.0)
    q = DiagonalGaussian(mean, logvar)
    a, b = q.sample(torch.Generator().manual_seed(1)), q.sample(torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    a.sum().backward()
    assert torch.equal(mean.grad, torch.ones_like(mean))  # dz/dmean = 1: gradients flow through the sample
    assert abs(a.mean().item() - 2.0) < 0.2 and abs(a.std().item() - torch.tensor(-1.0).exp().item()) < 0.1


def test_vae_loss_is_reconstruction_plus_weighted_kl():
    vae = VAE(VAEConfig(**TINY))
    x = Shapes(resolution=16, seed=0).batch(0, 4).images
    x_hat, q = vae(x, generator=torch.Generator().manual_seed(0))
    for reconstruction, error in [("l1", (x_hat - x).abs().mean()), ("mse", (x_hat - x).pow(2).mean())]:
        for w in (0.0, 1e-3):
            loss_fn = VAELoss(kl_weight=w, reconstruction=reconstruction)
            loss = loss_fn(vae, x, generator=torch.Generator().manual_seed(0))
            torch.testing.assert_close(loss, error + w * q.kl().mean() / x[0].numel())
    with pytest.raises(ValueError, match="'l1' or 'mse'"):
        VAELoss(reconstruction="l2")
    with pytest.raises(ValueError, match=">= 0"):
        VAELoss(kl_weight=-1.0)


def test_a_short_vae_run_through_train_lowers_the_reconstruction_loss(tmp_path):
    torch.manual_seed(0)
    vae = VAE(VAEConfig(**TINY))
    images = Shapes(resolution=16, seed=0).batch(0, 64).images
    config = TrainConfig(steps=40, batch_size=16, lr=2e-3, warmup_steps=5, log_every=5, seed=0)
    held_out = Shapes(resolution=16, seed=1).batch(0, 32).images

    def reconstruction_error(model):
        with torch.no_grad():
            return (model.decode(model.encode(held_out).mean) - held_out).abs().mean().item()

    before = reconstruction_error(vae)
    result = train(vae, images, None, config, loss_fn=VAELoss(), progress=False)
    first, last = sum(result.loss_history[:5]) / 5, sum(result.loss_history[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    assert reconstruction_error(result.model) < 0.6 * before  # on images it never saw
    # Resume is bit-for-bit for the autoencoder too.
    path = tmp_path / "vae.pt"
    half = TrainConfig(**{**config.__dict__, "steps": 20, "checkpoint_every": 20})
    torch.manual_seed(0)
    a = VAE(VAEConfig(**TINY))
    train(a, images, None, half, loss_fn=VAELoss(), checkpoint_path=path, progress=False)
    torch.manual_seed(0)
    b = VAE(VAEConfig(**TINY))
    train(b, images, None, TrainConfig(**{**half.__dict__, "steps": 40}), loss_fn=VAELoss(), checkpoint_path=path,
          progress=False)
    torch.manual_seed(0)
    c = VAE(VAEConfig(**TINY))
    train(c, images, None, TrainConfig(**{**half.__dict__, "steps": 40}), loss_fn=VAELoss(), progress=False)
    for p, q in zip(b.parameters(), c.parameters(), strict=True):
        assert torch.equal(p, q)


def test_a_vae_checkpoint_for_another_config_is_refused_by_name(tmp_path):
    from dlcourse.checkpoints import CheckpointError

    images = Shapes(resolution=16, seed=0).batch(0, 16).images
    config = TrainConfig(steps=2, batch_size=8, checkpoint_every=2, seed=0)
    path = tmp_path / "vae.pt"
    train(VAE(VAEConfig(**TINY)), images, None, config, loss_fn=VAELoss(), checkpoint_path=path, progress=False)
    with pytest.raises(CheckpointError, match="latent_channels"):
        train(VAE(VAEConfig(**TINY, latent_channels=3)), images, None, config, loss_fn=VAELoss(),
              checkpoint_path=path, progress=False)
    with pytest.raises(CheckpointError, match="kl_weight"):
        train(VAE(VAEConfig(**TINY)), images, None, config, loss_fn=VAELoss(kl_weight=1e-3),
              checkpoint_path=path, progress=False)


def test_the_ddpm_loss_still_needs_a_schedule():
    with pytest.raises(TypeError, match="needs one"):
        train(VAE(VAEConfig(**TINY)), Shapes(resolution=16, seed=0).batch(0, 8).images, None,
              TrainConfig(steps=1, batch_size=4), progress=False)


def test_images_and_latents_swapped_or_mis_shaped_are_refused_clearly():
    vae = VAE(VAEConfig(**TINY))  # 16 px, f = 4, 4 latent channels
    images, latents = torch.zeros(2, 3, 16, 16), torch.zeros(2, 4, 4, 4)
    with pytest.raises(ValueError, match=r"expected latents \(B, 4, 4, 4\).*look like images"):
        vae.decode(images)
    with pytest.raises(ValueError, match=r"expected images \(B, 3, 16, 16\).*look like latents"):
        vae.encode(latents)
    with pytest.raises(ValueError, match="latent_channels=4"):
        vae.decode(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match="built for 16x16"):
        vae.encode(torch.zeros(2, 3, 32, 32))


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(resolution=18), "not divisible by the downsampling factor f=4"),
        (dict(base_channels=6), "divisible by groups"),
        (dict(channel_mults=()), "non-empty"),
        (dict(latent_channels=0), "latent_channels must be a positive integer"),
    ],
)
def test_bad_vae_configs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**{**TINY, **bad})


def test_scaled_latents_have_unit_std_and_round_trip_shapes():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(**TINY))
    with torch.no_grad():  # spread the latents far from unit variance, as a trained VAE's are
        vae.conv_moments.weight.mul_(7.0)
    images = Shapes(resolution=16, seed=0).batch(0, 128).images
    space = LatentSpace.fit(vae, images, generator=torch.Generator().manual_seed(0))
    z = encode_dataset(space, Shapes(resolution=16, seed=1).batch(0, 64).images, batch_size=16)
    assert z.shape == (64, 4, 4, 4)
    assert abs(z.std().item() - 1.0) < 0.1, z.std().item()
    unscaled = encode_dataset(LatentSpace(vae, 1.0), images, generator=torch.Generator().manual_seed(0))
    assert abs(space.scaling_factor - 1 / unscaled.std().item()) < 1e-6
    decoded = space.decode(z)
    assert decoded.shape == (64, 3, 16, 16) and decoded.min() >= -1 and decoded.max() <= 1
    with pytest.raises(ValueError, match="collapsed"):
        measure_scaling_factor(torch.zeros(4, 4, 2, 2))


def test_encode_draws_a_sample_of_the_posterior_and_a_seeded_generator_draws_it_again():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(**TINY))
    images = Shapes(resolution=16, seed=0).batch(0, 64).images
    space = LatentSpace(vae, 2.0)
    z = space.encode(images, torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, space.encode(images, torch.Generator().manual_seed(3)))
    assert not torch.equal(z, space.encode(images, torch.Generator().manual_seed(4)))
    with torch.no_grad():
        q = vae.encode(images)
    eps = (z / space.scaling_factor - q.mean) / q.std  # the standardised draw: N(0, 1) for a sample of q(z | x)
    assert abs(eps.mean().item()) < 0.05 and abs(eps.std().item() - 1.0) < 0.05, (eps.mean(), eps.std())


def test_encode_noise_denoise_decode_keeps_the_input_shape_and_range_and_never_clips_latents():
    from dlcourse.models import UNet, UNetConfig
    from dlcourse.sampling import ddpm_sample
    from dlcourse.schedules import NoiseSchedule

    torch.manual_seed(0)
    vae = VAE(VAEConfig(**TINY))
    images = Shapes(resolution=16, seed=0).batch(0, 8).images
    space = LatentSpace.fit(vae, images)
    z0 = space.encode(images)  # (8, 4, 4, 4)
    schedule = NoiseSchedule.from_name("cosine", 50)
    t = torch.full((8,), 49)
    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(1))
    z_T = schedule.q_sample(z0, t, eps, check=False)  # latents have no fixed range
    unet = UNet(UNetConfig(in_channels=4, resolution=4, base_channels=8, channel_mults=(1, 2), groups=4,
                           num_heads=2, attention_resolutions=(2,)))
    z = ddpm_sample(unet, schedule, z_T, num_steps=10, prediction_type="v", progress=False)
    decoded = space.decode(z)
    assert decoded.shape == images.shape and decoded.min() >= -1 and decoded.max() <= 1

    # A denoiser that predicts x0 = 3 everywhere: the latent sampler returns 3s, not values clamped to [-1, 1].
    def far_out(x_t, t):
        return torch.full_like(x_t, 3.0)

    z = ddpm_sample(far_out, schedule, z_T, num_steps=10, prediction_type="x0", progress=False)
    torch.testing.assert_close(z, torch.full_like(z, 3.0))
