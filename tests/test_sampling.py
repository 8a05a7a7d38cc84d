"""Tests for dlcourse.sampling and dlcourse.cuda_graph: step functions and loops vs diffusers, DDIM(eta=1) vs
DDPM, determinism, callbacks, kwargs, errors, and (on a GPU) CUDA-graph replay vs eager."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcourse.cuda_graph import _cache_key, clear_graph_cache, num_cached_graphs
from dlcourse.models import UNet, UNetConfig
from dlcourse.runtime import Precision, select_precision
from dlcourse.sampling import (
    ddim_sample,
    ddim_step,
    ddpm_sample,
    ddpm_step,
    timesteps,
)
from dlcourse.schedules import NoiseSchedule, q_sample

T = 50
# A short schedule that still ends near pure noise (alpha_bar_{T-1} ~ 0.006), so every term of a step matters.
SCHEDULE = NoiseSchedule.from_name("linear", T, beta_start=1e-3, beta_end=0.2)
DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction", "x0": "sample"}
SHAPE = (2, 3, 8, 8)


def _diffusers_scheduler(cls_name: str, schedule: NoiseSchedule, prediction_type: str, clip: bool, **kwargs):
    diffusers = pytest.importorskip("diffusers")
    scheduler = getattr(diffusers, cls_name)(
        num_train_timesteps=schedule.num_timesteps,
        trained_betas=schedule.betas.tolist(),
        clip_sample=clip,
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
        **kwargs,
    )
    # Identical constants, so these tests isolate the step maths (test_schedules checks alpha_bar itself).
    scheduler.alphas_cumprod = schedule.alpha_bar.clone()
    return scheduler


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _prev(ts: list[int], i: int) -> int:
    return ts[i + 1] if i + 1 < len(ts) else -1


def _some_steps(ts: list[int]) -> list[int]:
    """Indices of the first, second, a middle, the second-to-last and the last step."""
    return sorted({0, 1, len(ts) // 2, len(ts) - 2, len(ts) - 1})


class TinyDenoiser(nn.Module):
    """A cheap deterministic stand-in for a U-Net whose output depends on both x and t."""

    def __init__(self, channels: int = 3, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x, t):
        return torch.tanh(self.conv(x)) + torch.cos(t.float() / 7).view(-1, 1, 1, 1)


def _tiny_unet(context_dim: int | None = None, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    config = UNetConfig(
        in_channels=3, resolution=8, base_channels=8, channel_mults=(1, 2), attention_resolutions=(4,),
        num_heads=2, groups=4, context_dim=context_dim, zero_init=False,
    )  # fmt: skip
    return UNet(config).eval()


def _diffusers_loop(scheduler, model, noise, num_steps, model_kwargs=None, **step_kwargs):
    """The loop a diffusers user writes by hand: set_timesteps, then model -> scheduler.step."""
    scheduler.set_timesteps(num_steps)
    x = noise.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_output = model(x, t.expand(x.shape[0]), **(model_kwargs or {}))
            x = scheduler.step(model_output, t, x, **step_kwargs).prev_sample
    return x


# ---------------------------------------------------------------------------------------------- timesteps


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
@pytest.mark.parametrize(
    "num_timesteps, num_steps", [(1000, 50), (1000, 7), (1000, 30), (1000, 1000), (50, 1), (50, 13)]
)
def test_timesteps_match_diffusers(spacing, num_timesteps, num_steps):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=num_timesteps, timestep_spacing=spacing)
    scheduler.set_timesteps(num_steps)
    ours = timesteps(num_steps, num_timesteps, spacing)
    assert ours.dtype == torch.long and ours.shape == (num_steps,)
    assert ours.tolist() == scheduler.timesteps.tolist()
    assert (ours.diff() < 0).all() and 0 <= ours.min() and ours.max() < num_timesteps


def test_timesteps_details():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, steps_offset=1)  # Stable Diffusion's setting
    scheduler.set_timesteps(50)
    assert timesteps(50, 1000, "leading", steps_offset=1).tolist() == scheduler.timesteps.tolist()
    assert timesteps(50, 1000).tolist()[:3] == [980, 960, 940] and timesteps(50, 1000)[-1] == 0
    # diffusers' "trailing" returns 62 steps ending at -1 for 61 requested; we return the 61 valid ones.
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, timestep_spacing="trailing")
    scheduler.set_timesteps(61)
    ours = timesteps(61, 1000, "trailing")
    assert len(scheduler.timesteps) == 62 and ours.tolist() == scheduler.timesteps.tolist()[:61] and ours[-1] == 15
    for spacing in ("leading", "trailing", "linspace"):
        assert timesteps(T, T, spacing).tolist() == list(range(T - 1, -1, -1))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(num_steps=51, num_timesteps=50), "more than the T=50"),
        (dict(num_steps=0, num_timesteps=50), "positive integer"),
        (dict(num_steps=2.5, num_timesteps=50), "positive integer"),
        (dict(num_steps=10, num_timesteps=50, spacing="uniform"), "Unknown timestep spacing"),
        (dict(num_steps=50, num_timesteps=50, steps_offset=1), "past T-1"),
        (dict(num_steps=10, num_timesteps=50, spacing="trailing", steps_offset=1), "only applies to 'leading'"),
    ],
)
def test_timesteps_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        timesteps(**kwargs)


# -------------------------------------------------------------------------------------- steps vs diffusers

STEP_CONFIGS = [(None, "leading"), (10, "leading"), (7, "leading"), (10, "trailing")]  # None: all T steps


@pytest.mark.parametrize("prediction_type", ["eps", "v", "x0"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("num_steps, spacing", STEP_CONFIGS)
def test_ddpm_step_matches_diffusers(prediction_type, clip, num_steps, spacing):
    scheduler = _diffusers_scheduler("DDPMScheduler", SCHEDULE, prediction_type, clip, timestep_spacing=spacing)
    if num_steps is not None:
        scheduler.set_timesteps(num_steps)
    ts = timesteps(num_steps or T, T, spacing).tolist()
    assert ts == scheduler.timesteps.tolist()
    x_t, model_output = _randn(*SHAPE, seed=0), _randn(*SHAPE, seed=1)
    for i in _some_steps(ts):
        t, prev_t = ts[i], _prev(ts, i)
        theirs = scheduler.step(model_output, t, x_t, generator=torch.Generator().manual_seed(i))
        noise = None if prev_t < 0 else _randn(*SHAPE, seed=i)  # diffusers draws the same numbers
        ours = ddpm_step(model_output, t, prev_t, x_t, SCHEDULE, prediction_type, noise, clip)
        torch.testing.assert_close(ours.x0_pred, theirs.pred_original_sample)
        torch.testing.assert_close(ours.x_prev, theirs.prev_sample, rtol=1e-5, atol=1e-5)
        if prev_t >= 0:  # the noise really enters: other noise, other sample
            other = ddpm_step(model_output, t, prev_t, x_t, SCHEDULE, prediction_type, -noise, clip)
            assert (other.x_prev - ours.x_prev).abs().max() > 1e-3


@pytest.mark.parametrize("prediction_type", ["eps", "v", "x0"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("num_steps, spacing", [(T, "leading"), (10, "leading"), (7, "leading"), (10, "trailing")])
def test_ddim_step_matches_diffusers(prediction_type, clip, eta, num_steps, spacing):
    scheduler = _diffusers_scheduler("DDIMScheduler", SCHEDULE, prediction_type, clip, timestep_spacing=spacing)
    scheduler.set_timesteps(num_steps)
    ts = timesteps(num_steps, T, spacing).tolist()
    assert ts == scheduler.timesteps.tolist()
    x_t, model_output = _randn(*SHAPE, seed=0), _randn(*SHAPE, seed=1)
    for i in _some_steps(ts):
        t, prev_t = ts[i], _prev(ts, i)
        assert max(prev_t, -1) == max(t - T // num_steps, -1)  # our "next timestep" is diffusers' prev_timestep
        noise = _randn(*SHAPE, seed=10 + i)
        theirs = scheduler.step(
            model_output, t, x_t, eta=eta, use_clipped_model_output=clip, variance_noise=noise
        )
        ours = ddim_step(model_output, t, prev_t, x_t, SCHEDULE, eta, prediction_type, noise if eta else None, clip)
        torch.testing.assert_close(ours.x0_pred, theirs.pred_original_sample)
        torch.testing.assert_close(ours.x_prev, theirs.prev_sample, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["eps", "v"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("num_steps", [T, 10])
def test_ddim_with_eta_1_is_ddpm(prediction_type, clip, num_steps):
    """Song et al. 2021, Sec. 4.1: eta = 1 makes sigma^2 DDPM's beta_tilde, and the two steps coincide."""
    ts = timesteps(num_steps, T).tolist()
    x_t, model_output = _randn(*SHAPE, seed=2), _randn(*SHAPE, seed=3)
    for i in _some_steps(ts):
        t, prev_t = ts[i], _prev(ts, i)
        noise = None if prev_t < 0 else _randn(*SHAPE, seed=i)
        ddim = ddim_step(model_output, t, prev_t, x_t, SCHEDULE, 1.0, prediction_type, noise, clip)
        ddpm = ddpm_step(model_output, t, prev_t, x_t, SCHEDULE, prediction_type, noise, clip)
        torch.testing.assert_close(ddim.x_prev, ddpm.x_prev, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ddim.x0_pred, ddpm.x0_pred)
    # ... and eta = 0 is a different (deterministic) step.
    ddim0 = ddim_step(model_output, 30, 20, x_t, SCHEDULE, 0.0, prediction_type, None, clip)
    ddpm = ddpm_step(model_output, 30, 20, x_t, SCHEDULE, prediction_type, torch.zeros(SHAPE), clip)
    assert (ddim0.x_prev - ddpm.x_prev).abs().max() > 1e-2


def test_steps_are_vectorised_over_per_sample_timesteps():
    schedule = NoiseSchedule.from_name("linear", T, beta_start=1e-3, beta_end=0.2)
    x_t, model_output, noise = (_randn(4, 3, 8, 8, seed=s) for s in (0, 1, 2))
    t, prev_t = torch.tensor([49, 30, 5, 0]), torch.tensor([48, 20, 0, -1])
    for step, kwargs in ((ddpm_step, {}), (ddim_step, {"eta": 1.0}), (ddim_step, {"eta": 0.0})):
        batched = step(model_output, t, prev_t, x_t, schedule, noise=noise, **kwargs)
        for b in range(4):
            single = step(
                model_output[b : b + 1], int(t[b]), int(prev_t[b]), x_t[b : b + 1], schedule,
                noise=None if prev_t[b] < 0 else noise[b : b + 1], **kwargs,
            )  # fmt: skip
            torch.testing.assert_close(batched.x_prev[b : b + 1], single.x_prev)
            torch.testing.assert_close(batched.x0_pred[b : b + 1], single.x0_pred)
    # A 0-d tensor timestep is broadcast to the batch.
    torch.testing.assert_close(
        ddim_step(model_output, torch.tensor(30), torch.tensor(20), x_t, schedule).x_prev,
        ddim_step(model_output, 30, 20, x_t, schedule).x_prev,
    )


def test_ddim_step_is_invertible_with_the_true_noise():
    """With the exact eps, a DDIM step moves along q's path in both directions (inversion: prev_t > t)."""
    x0, eps = _randn(*SHAPE, seed=0).clamp(-1, 1), _randn(*SHAPE, seed=1)
    x10 = q_sample(x0, torch.full((2,), 10), eps, SCHEDULE.alpha_bar)
    x30 = q_sample(x0, torch.full((2,), 30), eps, SCHEDULE.alpha_bar)
    torch.testing.assert_close(ddim_step(eps, 10, 30, x10, SCHEDULE, clip_x0=False).x_prev, x30, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ddim_step(eps, 30, 10, x30, SCHEDULE, clip_x0=False).x_prev, x10, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ddim_step(eps, 30, -1, x30, SCHEDULE, clip_x0=False).x_prev, x0, atol=1e-5, rtol=1e-5)


def test_step_errors():
    x, out = torch.zeros(SHAPE), torch.zeros(SHAPE)
    with pytest.raises(ValueError, match="needs noise"):
        ddpm_step(out, 10, 9, x, SCHEDULE)
    with pytest.raises(ValueError, match="eta=0.5 > 0 adds noise"):
        ddim_step(out, 10, 9, x, SCHEDULE, eta=0.5)
    with pytest.raises(ValueError, match="prev_t must be < t"):
        ddpm_step(out, 10, 10, x, SCHEDULE, noise=x)
    with pytest.raises(ValueError, match="below it when eta > 0"):
        ddim_step(out, 10, 20, x, SCHEDULE, eta=1.0, noise=x)
    with pytest.raises(ValueError, match="eta must be a number in"):
        ddim_step(out, 10, 9, x, SCHEDULE, eta=-0.1)
    with pytest.raises(ValueError, match="in \\[0, T-1\\]"):
        ddim_step(out, T, 9, x, SCHEDULE)
    with pytest.raises(ValueError, match="shape of x_t"):
        ddim_step(torch.zeros(2, 6, 8, 8), 10, 9, x, SCHEDULE)
    with pytest.raises(ValueError, match="integer tensor"):
        ddim_step(out, torch.tensor([10.0, 10.0]), 9, x, SCHEDULE)
    with pytest.raises(ValueError, match="prediction_type must be one of"):
        ddim_step(out, 10, 9, x, SCHEDULE, prediction_type="epsilon")
    # No noise is needed on the final step.
    assert ddpm_step(out, 0, -1, x, SCHEDULE).x_prev.shape == SHAPE


# ---------------------------------------------------------------------------------------- loops vs diffusers


@pytest.mark.parametrize("eta, spacing", [(0.0, "leading"), (1.0, "leading"), (0.0, "trailing")])
def test_ddim_sample_matches_diffusers_loop(eta, spacing):
    model = _tiny_unet()
    scheduler = _diffusers_scheduler("DDIMScheduler", SCHEDULE, "eps", True, timestep_spacing=spacing)
    noise = _randn(*SHAPE, seed=5)
    theirs = _diffusers_loop(
        scheduler, model, noise, 10, eta=eta, use_clipped_model_output=True, generator=torch.Generator().manual_seed(7)
    )
    ours = ddim_sample(
        model, SCHEDULE, noise, num_steps=10, eta=eta, timestep_spacing=spacing,
        generator=torch.Generator().manual_seed(7),
    )  # fmt: skip
    assert ours.shape == SHAPE and ours.dtype == torch.float32
    assert ours.abs().max() <= 1 and ours.std() > 0.1  # a clipped, non-trivial image
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("prediction_type, num_timesteps", [("eps", 1000), ("v", T)])
def test_ddpm_sample_matches_diffusers_loop(prediction_type, num_timesteps):
    schedule = NoiseSchedule.from_name("linear", 1000) if num_timesteps == 1000 else SCHEDULE
    model = TinyDenoiser()
    scheduler = _diffusers_scheduler("DDPMScheduler", schedule, prediction_type, True)
    noise = _randn(*SHAPE, seed=6)
    theirs = _diffusers_loop(scheduler, model, noise, num_timesteps, generator=torch.Generator().manual_seed(3))
    ours = ddpm_sample(
        model, schedule, noise, prediction_type=prediction_type, generator=torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_ddim_sample_with_eta_1_at_full_steps_is_ddpm_sample():
    model, noise = TinyDenoiser(), _randn(*SHAPE, seed=2)
    ddim = ddim_sample(model, SCHEDULE, noise, num_steps=T, eta=1.0, generator=torch.Generator().manual_seed(5))
    ddpm = ddpm_sample(model, SCHEDULE, noise, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(ddim, ddpm, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ddim, ddim_sample(model, SCHEDULE, noise, num_steps=T))  # eta = 0 differs


def test_strided_ddpm_sample_matches_diffusers_loop():
    """DDPM with fewer steps; linspace spacing also checks that each step lands on the next visited timestep."""
    model = TinyDenoiser()
    scheduler = _diffusers_scheduler("DDPMScheduler", SCHEDULE, "x0", False, timestep_spacing="linspace")
    noise = _randn(*SHAPE, seed=8)
    theirs = _diffusers_loop(scheduler, model, noise, 13, generator=torch.Generator().manual_seed(4))
    ours = ddpm_sample(
        model, SCHEDULE, noise, num_steps=13, prediction_type="x0", clip_x0=False, timestep_spacing="linspace",
        generator=torch.Generator().manual_seed(4),
    )  # fmt: skip
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------- sampler behaviour


def test_ddim_eta_0_is_deterministic_and_eta_1_is_not():
    model = _tiny_unet()
    noise = _randn(*SHAPE, seed=0)
    gen_a, gen_b = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    state = gen_a.get_state()
    a = ddim_sample(model, SCHEDULE, noise, num_steps=10, generator=gen_a)
    b = ddim_sample(model, SCHEDULE, noise, num_steps=10, generator=gen_b)
    assert torch.equal(a, b) and torch.equal(gen_a.get_state(), state)  # eta = 0 never touches the generator
    assert not torch.allclose(a, ddim_sample(model, SCHEDULE, _randn(*SHAPE, seed=9), num_steps=10))
    seeded = [ddim_sample(model, SCHEDULE, noise, num_steps=10, eta=1.0, generator=torch.Generator().manual_seed(s))
              for s in (1, 1, 2)]  # fmt: skip
    assert torch.equal(seeded[0], seeded[1]) and not torch.allclose(seeded[0], seeded[2])


@pytest.mark.parametrize("sampler, num_steps", [(ddim_sample, 10), (ddpm_sample, None)])
def test_callback_sees_every_step(sampler, num_steps):
    calls = []

    def callback(i, t, x_t, x0_pred):
        calls.append((i, t, x_t.clone(), x0_pred.clone()))

    noise = _randn(*SHAPE, seed=0)
    kwargs = {} if num_steps is None else {"num_steps": num_steps}
    generator = torch.Generator().manual_seed(0)
    out = sampler(TinyDenoiser(), SCHEDULE, noise, callback=callback, generator=generator, **kwargs)
    expected_ts = timesteps(num_steps or T, T).tolist()
    assert [c[0] for c in calls] == list(range(len(expected_ts)))
    assert [c[1] for c in calls] == expected_ts and all(isinstance(c[1], int) for c in calls)
    assert torch.equal(calls[0][2], noise)  # the first x_t is the noise we passed
    assert all(c[3].abs().max() <= 1 for c in calls)  # clipped x0 predictions
    torch.testing.assert_close(calls[-1][3], out)  # the last step lands on its x0 prediction
    assert not torch.allclose(calls[1][2], calls[2][2])


def test_model_kwargs_are_forwarded():
    """ddim_sample with a context == the same loop written by hand with ddim_step."""
    model = _tiny_unet(context_dim=6)
    noise, context = _randn(*SHAPE, seed=0), _randn(2, 5, 6, seed=1)
    ours = ddim_sample(model, SCHEDULE, noise, num_steps=8, model_kwargs={"context": context})
    ts = timesteps(8, T).tolist()
    x = noise
    with torch.no_grad():
        for i, t in enumerate(ts):
            x = ddim_step(model(x, torch.full((2,), t), context=context), t, _prev(ts, i), x, SCHEDULE).x_prev
    torch.testing.assert_close(ours, x)
    other = ddim_sample(model, SCHEDULE, noise, num_steps=8, model_kwargs={"context": -context})
    assert not torch.allclose(ours, other)


def test_sampling_mode_precision_and_output():
    seen = []

    class Recorder(TinyDenoiser):
        def forward(self, x, t):
            seen.append((self.training, torch.is_inference_mode_enabled(), torch.is_autocast_enabled("cpu")))
            return super().forward(x, t)

    model = Recorder()
    model.train()
    model.conv.eval()  # a mixed state must come back as it was
    noise = _randn(*SHAPE, seed=0)
    out = ddim_sample(model, SCHEDULE, noise, num_steps=3)
    assert seen == [(False, True, False)] * 3
    assert model.training and not model.conv.training
    assert out.dtype == torch.float32 and not out.is_inference() and not out.requires_grad
    nn.functional.mse_loss(model(out, torch.zeros(2)), out).backward()  # usable as training data

    seen.clear()
    bf16 = Precision("cpu", torch.bfloat16, False, "test: bf16 autocast on the CPU")
    out_bf16 = ddim_sample(model, SCHEDULE, noise, num_steps=3, precision=bf16)
    assert seen == [(False, True, True)] * 3 and out_bf16.dtype == torch.float32
    torch.testing.assert_close(out_bf16, out, atol=0.1, rtol=0)


def test_fast_on_cpu_runs_the_eager_path():
    model = _tiny_unet()
    noise = _randn(*SHAPE, seed=0)
    eager = ddim_sample(model, SCHEDULE, noise, num_steps=5)
    assert torch.equal(ddim_sample(model, SCHEDULE, noise, num_steps=5, fast=True), eager)
    assert num_cached_graphs(model) == 0


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda m, n: ddim_sample(m, SCHEDULE, n, eta=-1.0), ValueError, "eta must be a number in"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, eta=1.5), ValueError, "eta must be a number in"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, num_steps=T + 1), ValueError, "more than the T=50"),
        (lambda m, n: ddpm_sample(m, SCHEDULE, n, num_steps=0), ValueError, "positive integer"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n[0]), ValueError, "float tensor \\(B, C, H, W\\)"),
        (lambda m, n: ddpm_sample(m, SCHEDULE, n.long()), ValueError, "float tensor"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, prediction_type="epsilon"), ValueError, "diffusers calls 'eps'"),
        (lambda m, n: ddpm_sample(m, SCHEDULE, n, timestep_spacing="even"), ValueError, "Unknown timestep spacing"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, callback=3), TypeError, "callback must be callable"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, model_kwargs=[1]), TypeError, "model_kwargs must be a dict"),
        (lambda m, n: ddim_sample(m, SCHEDULE.betas, n), TypeError, "NoiseSchedule"),
    ],
)
def test_sampler_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(TinyDenoiser(), _randn(*SHAPE, seed=0))


def test_graph_cache_key():
    """What makes the fast path capture again (checked on the CPU; the capture itself needs a GPU)."""
    model, x = _tiny_unet(context_dim=6), torch.zeros(SHAPE)
    context = {"context": torch.zeros(2, 5, 6)}
    key = _cache_key(model, x, context, torch.float32)
    assert key == _cache_key(model, x.clone(), {"context": torch.ones(2, 5, 6)}, torch.float32)  # new values
    with torch.no_grad():
        next(model.parameters()).add_(1)  # in-place update: same memory, the graph sees it
    assert key == _cache_key(model, x, context, torch.float32)
    assert key != _cache_key(model, torch.zeros(4, 3, 8, 8), context, torch.float32)  # batch size
    assert key != _cache_key(model, x, {"context": torch.zeros(2, 7, 6)}, torch.float32)  # context length
    assert key != _cache_key(model, x, {**context, "context_mask": None}, torch.float32)
    assert key != _cache_key(model, x, context, torch.bfloat16)
    assert key != _cache_key(model.double(), x, context, torch.float32)  # new parameter tensors
    with pytest.raises(TypeError, match="neither a tensor nor hashable"):
        _cache_key(model, x, {"context": [1, 2]}, torch.float32)


# ------------------------------------------------------------------------------------------- GPU fast path

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.mark.gpu
@needs_cuda
def test_cuda_graph_equals_eager():
    device = torch.device("cuda")
    model = _tiny_unet(context_dim=6).to(device)
    clear_graph_cache()
    noise = torch.randn(4, 3, 8, 8, device=device, generator=torch.Generator(device).manual_seed(0))
    context = torch.randn(4, 5, 6, device=device, generator=torch.Generator(device).manual_seed(1))

    def both(sampler, **kwargs):
        return [sampler(model, SCHEDULE, noise, fast=fast, **kwargs) for fast in (False, True)]

    eager, fast = both(ddim_sample, num_steps=10, model_kwargs={"context": context})
    assert num_cached_graphs(model) == 1
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    # New context values, same shapes: the cached graph is reused and sees them.
    eager, fast = both(ddim_sample, num_steps=20, model_kwargs={"context": -context})
    assert num_cached_graphs(model) == 1
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    # Stochastic DDPM with a CUDA generator, schedule on the device: the graph uses the same random numbers.
    schedule = NoiseSchedule.from_name("linear", T, beta_start=1e-3, beta_end=0.2).to(device)
    eager, fast = [
        ddpm_sample(model, schedule, noise, model_kwargs={"context": context}, fast=fast,
                    generator=torch.Generator(device).manual_seed(3))
        for fast in (False, True)
    ]  # fmt: skip
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    # In-place weight updates (an optimizer step) are seen by the replay.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.05)
    eager, fast = both(ddim_sample, num_steps=10, model_kwargs={"context": context})
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    # A new batch size captures a second graph; mixed precision is captured with its autocast.
    ddim_sample(model, SCHEDULE, noise[:2], num_steps=3, model_kwargs={"context": context[:2]}, fast=True)
    assert num_cached_graphs(model) == 2
    precision = select_precision(device)
    eager, fast = both(ddim_sample, num_steps=10, model_kwargs={"context": context}, precision=precision)
    torch.testing.assert_close(fast, eager, rtol=0, atol=2e-2)
    assert num_cached_graphs(model) == 3
    clear_graph_cache(model)
    assert num_cached_graphs(model) == 0
