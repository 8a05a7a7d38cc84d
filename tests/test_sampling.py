"""Tests for dlcourse.sampling and dlcourse.cuda_graph: step functions and loops vs diffusers, DDIM(eta=1) vs
DDPM, determinism, callbacks, denoiser functions (conditioning, classifier-free guidance), x0 clipping, progress
bars, errors, and (on a GPU) CUDA-graph replay vs eager, for modules and for functions."""

from __future__ import annotations

import gc
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dlcourse.cuda_graph import _cache_key, _graphs, clear_graph_cache, graphed_denoiser, num_cached_graphs
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


def _clip(clip: bool) -> tuple[float, float] | None:
    """diffusers' clip_sample (a bool, range [-1, 1]) as our clip_x0."""
    return (-1, 1) if clip else None


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


def _diffusers_loop(scheduler, model, noise, num_steps, **step_kwargs):
    """The loop a diffusers user writes by hand: set_timesteps, then model -> scheduler.step."""
    scheduler.set_timesteps(num_steps)
    x = noise.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_output = model(x, t.expand(x.shape[0]))
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
    assert timesteps(50, 1000, "leading").tolist()[:3] == [980, 960, 940] and timesteps(50, 1000, "leading")[-1] == 0
    # The course's default is trailing (notebook 04): it starts at T-1 whatever the number of steps.
    assert timesteps(50, 1000).tolist() == timesteps(50, 1000, "trailing").tolist()
    assert timesteps(50, 1000).tolist()[:3] == [999, 979, 959] and timesteps(50, 1000)[-1] == 19
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
        (dict(num_steps=50, num_timesteps=50, spacing="leading", steps_offset=1), "past T-1"),
        (dict(num_steps=10, num_timesteps=50, steps_offset=1), "got spacing 'trailing'. Pass"),  # the default
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
        ours = ddpm_step(model_output, t, prev_t, x_t, SCHEDULE, prediction_type, noise, _clip(clip))
        torch.testing.assert_close(ours.x0_pred, theirs.pred_original_sample)
        torch.testing.assert_close(ours.x_prev, theirs.prev_sample, rtol=1e-5, atol=1e-5)
        if prev_t >= 0:  # the noise really enters: other noise, other sample
            other = ddpm_step(model_output, t, prev_t, x_t, SCHEDULE, prediction_type, -noise, _clip(clip))
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
        ours = ddim_step(
            model_output, t, prev_t, x_t, SCHEDULE, eta, prediction_type, noise if eta else None, _clip(clip)
        )
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
        ddim = ddim_step(model_output, t, prev_t, x_t, SCHEDULE, 1.0, prediction_type, noise, _clip(clip))
        ddpm = ddpm_step(model_output, t, prev_t, x_t, SCHEDULE, prediction_type, noise, _clip(clip))
        torch.testing.assert_close(ddim.x_prev, ddpm.x_prev, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ddim.x0_pred, ddpm.x0_pred)
    # ... and eta = 0 is a different (deterministic) step.
    ddim0 = ddim_step(model_output, 30, 20, x_t, SCHEDULE, 0.0, prediction_type, None, _clip(clip))
    ddpm = ddpm_step(model_output, 30, 20, x_t, SCHEDULE, prediction_type, torch.zeros(SHAPE), _clip(clip))
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
    torch.testing.assert_close(ddim_step(eps, 10, 30, x10, SCHEDULE).x_prev, x30, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ddim_step(eps, 30, 10, x30, SCHEDULE).x_prev, x10, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ddim_step(eps, 30, -1, x30, SCHEDULE).x_prev, x0, atol=1e-5, rtol=1e-5)


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
        model, SCHEDULE, noise, num_steps=10, eta=eta, clip_x0=(-1, 1), timestep_spacing=spacing,
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
        model, schedule, noise, prediction_type=prediction_type, clip_x0=(-1, 1),
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
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
        model, SCHEDULE, noise, num_steps=13, prediction_type="x0", clip_x0=None, timestep_spacing="linspace",
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
    out = sampler(TinyDenoiser(), SCHEDULE, noise, clip_x0=(-1, 1), callback=callback, generator=generator, **kwargs)
    expected_ts = timesteps(num_steps or T, T).tolist()
    assert [c[0] for c in calls] == list(range(len(expected_ts)))
    assert [c[1] for c in calls] == expected_ts and all(isinstance(c[1], int) for c in calls)
    assert torch.equal(calls[0][2], noise)  # the first x_t is the noise we passed
    assert all(c[3].abs().max() <= 1 for c in calls)  # clipped x0 predictions
    torch.testing.assert_close(calls[-1][3], out)  # the last step lands on its x0 prediction
    assert not torch.allclose(calls[1][2], calls[2][2])


# ---------------------------------------------------------------------- denoiser functions and guidance


def _guided(model, context_null, context, scale):
    """Classifier-free guidance as a learner writes it: one forward of 2B = [unconditional; conditional]."""

    def denoise(x, t):
        both = model(torch.cat([x, x]), torch.cat([t, t]), context=torch.cat([context_null, context]))
        eps_u, eps_c = both.chunk(2)
        return eps_u + scale * (eps_c - eps_u)

    return denoise


@pytest.mark.parametrize("sampler, kwargs", [(ddim_sample, {"num_steps": 10}), (ddim_sample, {"eta": 1.0}),
                                             (ddpm_sample, {})])  # fmt: skip
def test_a_function_denoiser_equals_the_module(sampler, kwargs):
    model, noise = _tiny_unet(), _randn(*SHAPE, seed=0)
    as_module = sampler(model, SCHEDULE, noise, generator=torch.Generator().manual_seed(1), **kwargs)
    as_function = sampler(
        lambda x, t: model(x, t), SCHEDULE, noise, generator=torch.Generator().manual_seed(1), **kwargs
    )
    assert torch.equal(as_function, as_module)
    assert not torch.allclose(as_module, sampler(model, SCHEDULE, -noise, **kwargs))  # the model does matter


def test_a_module_runs_in_eval_mode_and_a_function_as_given():
    seen = []

    class Recorder(TinyDenoiser):
        def forward(self, x, t):
            seen.append(self.training)
            return super().forward(x, t)

    model, noise = Recorder().train(), _randn(*SHAPE, seed=0)
    ddim_sample(model, SCHEDULE, noise, num_steps=2)
    assert seen == [False, False] and model.training
    seen.clear()
    ddim_sample(lambda x, t: model(x, t), SCHEDULE, noise, num_steps=2)
    assert seen == [True, True] and model.training


def test_a_conditional_model_through_a_function():
    """ddim_sample(lambda x, t: model(x, t, context=c)) == the same loop written by hand with ddim_step."""
    model = _tiny_unet(context_dim=6)
    noise, context = _randn(*SHAPE, seed=0), _randn(2, 5, 6, seed=1)
    ours = ddim_sample(lambda x, t: model(x, t, context=context), SCHEDULE, noise, num_steps=8)
    ts = timesteps(8, T).tolist()
    x = noise
    with torch.no_grad():
        for i, t in enumerate(ts):
            x = ddim_step(model(x, torch.full((2,), t), context=context), t, _prev(ts, i), x, SCHEDULE).x_prev
    torch.testing.assert_close(ours, x)
    other = ddim_sample(lambda x, t: model(x, t, context=-context), SCHEDULE, noise, num_steps=8)
    assert not torch.allclose(ours, other)


@pytest.mark.parametrize("sampler, kwargs", [(ddim_sample, {"num_steps": 8}), (ddim_sample, {"eta": 1.0}),
                                             (ddpm_sample, {"num_steps": 10})])  # fmt: skip
def test_guidance_at_scale_1_is_the_conditional_prediction(sampler, kwargs):
    """Classifier-free guidance as a wrapper: scale 1 gives the conditional model, 0 the unconditional one."""
    model = _tiny_unet(context_dim=6)
    noise, context, null = _randn(*SHAPE, seed=0), _randn(2, 5, 6, seed=1), torch.zeros(2, 5, 6)

    def run(denoiser):
        return sampler(denoiser, SCHEDULE, noise, generator=torch.Generator().manual_seed(2), **kwargs)

    conditional = run(lambda x, t: model(x, t, context=context))
    unconditional = run(lambda x, t: model(x, t, context=null))
    torch.testing.assert_close(run(_guided(model, null, context, 1.0)), conditional, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(run(_guided(model, null, context, 0.0)), unconditional, rtol=1e-4, atol=1e-4)
    guided = run(_guided(model, null, context, 3.0))
    assert (guided - conditional).abs().max() > 1e-2 and (conditional - unconditional).abs().max() > 1e-2


# ------------------------------------------------------------------------------------ x0 clipping, progress

LATENT_X0 = 5 * torch.tanh(3 * _randn(*SHAPE, seed=11))  # a "latent" mostly near +-5, far outside [-1, 1]


def _oracle(x0, prediction_type):
    """The perfect denoiser for a data set of one example x0: what a network trained on it would predict."""

    def denoise(x_t, t):
        alpha_bar = SCHEDULE.alpha_bar[t].view(-1, 1, 1, 1)
        if prediction_type == "x0":
            return x0.expand_as(x_t)
        return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()  # Ho et al. 2020, Eq. (4) solved for eps

    return denoise


@pytest.mark.parametrize("sampler, kwargs", [(ddpm_sample, {}), (ddpm_sample, {"num_steps": 10}),
                                             (ddim_sample, {}), (ddim_sample, {"eta": 1.0})])  # fmt: skip
@pytest.mark.parametrize("prediction_type", ["eps", "x0"])
def test_latents_outside_minus_1_1_are_not_clipped_by_default(sampler, kwargs, prediction_type):
    denoise, noise = _oracle(LATENT_X0, prediction_type), _randn(*SHAPE, seed=0)
    assert LATENT_X0.abs().max() > 4.9

    def run(**clip):
        return sampler(denoise, SCHEDULE, noise, prediction_type=prediction_type, **clip, **kwargs,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip

    unclipped = run()
    assert unclipped.abs().max() > 4.9  # the sampler lands on the oracle's x0, far outside [-1, 1]
    torch.testing.assert_close(unclipped, LATENT_X0, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(run(clip_x0=None), unclipped, rtol=0, atol=0)
    clipped = run(clip_x0=(-1, 1))  # what an image model asks for
    torch.testing.assert_close(clipped, LATENT_X0.clamp(-1, 1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("clip_x0", [True, False])
def test_a_bool_clip_x0_is_refused(clip_x0):
    x, model = torch.zeros(SHAPE), TinyDenoiser()
    calls = [
        lambda: ddpm_sample(model, SCHEDULE, x, clip_x0=clip_x0),
        lambda: ddim_sample(model, SCHEDULE, x, clip_x0=clip_x0),
        lambda: ddpm_step(x, 10, 9, x, SCHEDULE, noise=x, clip_x0=clip_x0),
        lambda: ddim_step(x, 10, 9, x, SCHEDULE, clip_x0=clip_x0),
    ]
    for call in calls:
        with pytest.raises(TypeError, match=r"clip_x0=\(-1, 1\) to clip .* or clip_x0=None"):
            call()


def test_progress_bar_shows_and_changes_nothing(capsys):
    model, noise = _tiny_unet(), _randn(*SHAPE, seed=0)
    for sampler, name in ((ddim_sample, "DDIM"), (ddpm_sample, "DDPM")):
        with_bar = sampler(model, SCHEDULE, noise, num_steps=5, generator=torch.Generator().manual_seed(0))
        assert f"{name}: " in capsys.readouterr().err  # e.g. "DDIM:   0%|   | 0/5"
        without = sampler(model, SCHEDULE, noise, num_steps=5, generator=torch.Generator().manual_seed(0),
                          progress=False)  # fmt: skip
        assert capsys.readouterr().err == ""
        assert torch.equal(with_bar, without)


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
        (lambda m, n: ddim_sample(m, SCHEDULE.betas, n), TypeError, "NoiseSchedule"),
        (lambda m, n: ddim_sample("unet", SCHEDULE, n), TypeError, "denoiser must be a model called as"),
        (lambda m, n: ddim_sample(lambda x, t: (m(x, t),), SCHEDULE, n), TypeError, "return the model output as"),
        (lambda m, n: ddpm_sample(m, SCHEDULE, n, clip_x0=(1, -1)), ValueError, "low < high"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, clip_x0=1.0), ValueError, "\\(low, high\\) pair"),
        (lambda m, n: ddim_step(n, 10, 9, n, SCHEDULE, clip_x0=(-1, 0, 1)), ValueError, "\\(low, high\\) pair"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, num_steps=5, start_step=5), ValueError, "from 0 \\(start from"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, start_step=-1), ValueError, "strength"),
        (lambda m, n: ddim_sample(m, SCHEDULE, n, set_alpha_to_one=False), ValueError, "steps_offset=1"),
    ],
)
def test_sampler_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(TinyDenoiser(), _randn(*SHAPE, seed=0))


_SCALE = 2.0  # a global a denoiser function reads
_RUN = SimpleNamespace(scale=2.0)  # a global object whose attribute a denoiser function reads


def _scaled_by_a_global(x, t):
    return _SCALE * x


def _scaled_by_an_attribute(x, t):
    return _RUN.scale * x


def test_graph_cache_key(monkeypatch):
    """What makes the fast path capture again (checked on the CPU; the capture itself needs a GPU)."""
    model, x = _tiny_unet(context_dim=6), torch.zeros(SHAPE)
    key = _cache_key(model, x, torch.float32)
    with torch.no_grad():
        next(model.parameters()).add_(1)  # in-place update: same memory, the graph sees it
    assert key == _cache_key(model, x.clone(), torch.float32)
    assert key != _cache_key(model, torch.zeros(4, 3, 8, 8), torch.float32)  # batch size
    assert key != _cache_key(model, x, torch.bfloat16)

    # A function: what it reads through its closure, the globals it names and the functions it calls.
    context, null, scale = torch.zeros(2, 5, 6), torch.zeros(2, 5, 6), 3.0

    def guided(x, t):
        return _guided(model, null, context, scale)(x, t)

    key = _cache_key(guided, x, torch.float32)
    context.add_(1)  # in place: the graph sees the new values
    assert key == _cache_key(guided, x, torch.float32)
    context = torch.ones(2, 5, 6)  # a new tensor: the graph would read the old one's memory
    assert key != _cache_key(guided, x, torch.float32)
    key = _cache_key(guided, x, torch.float32)
    scale = 5.0  # a Python number is baked into a graph
    assert key != _cache_key(guided, x, torch.float32)
    key = _cache_key(guided, x, torch.float32)
    model.double()  # new parameter tensors
    assert key != _cache_key(guided, x, torch.float32)

    key = _cache_key(_scaled_by_a_global, x, torch.float32)
    monkeypatch.setitem(_scaled_by_a_global.__globals__, "_SCALE", 4.0)
    assert key != _cache_key(_scaled_by_a_global, x, torch.float32)
    key = _cache_key(_scaled_by_an_attribute, x, torch.float32)
    monkeypatch.setattr(_RUN, "scale", 4.0)
    assert key != _cache_key(_scaled_by_an_attribute, x, torch.float32)

    def scaled(x, t, scale=3.0):
        return scale * x

    key = _cache_key(scaled, x, torch.float32)
    scaled.__defaults__ = (4.0,)
    assert key != _cache_key(scaled, x, torch.float32)


def test_graph_cache_needs_a_weak_reference():
    class Slotted:  # no __weakref__ slot: cannot be held weakly
        __slots__ = ()

        def __call__(self, x, t):
            return x

    with pytest.raises(TypeError, match="cannot be weakly referenced"):
        graphed_denoiser(Slotted(), torch.zeros(SHAPE))


# ------------------------------------------------------------------------------------------- GPU fast path

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
# A graph that falls back still gives the eager result: these tests pass only if none does.
no_fallback = pytest.mark.filterwarnings("error::dlcourse.fast_path.FastPathWarning")


@pytest.fixture
def no_tf32(monkeypatch):
    """Full fp32 convolutions and matmuls, so batch composition cannot change results beyond round-off."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)


@pytest.mark.gpu
@needs_cuda
@no_fallback
def test_cuda_graph_equals_eager(no_tf32):
    device = torch.device("cuda")
    model = _tiny_unet(context_dim=6).to(device)
    clear_graph_cache()
    noise = torch.randn(4, 3, 8, 8, device=device, generator=torch.Generator(device).manual_seed(0))
    context = torch.randn(4, 5, 6, device=device, generator=torch.Generator(device).manual_seed(1))

    def conditional(x, t):
        return model(x, t, context=context)

    def both(sampler, denoiser, **kwargs):
        return [sampler(denoiser, SCHEDULE, noise, fast=fast, progress=False, **kwargs) for fast in (False, True)]

    eager, fast = both(ddim_sample, conditional, num_steps=10, clip_x0=(-1, 1))
    assert num_cached_graphs(conditional) == 1
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    # New context values in place, same tensor: the cached graph is reused and sees them.
    context.neg_()
    eager, fast = both(ddim_sample, conditional, num_steps=20, clip_x0=(-1, 1))
    assert num_cached_graphs(conditional) == 1
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    # A new context tensor: captured again (a replay would read the old tensor's memory).
    context = torch.randn(4, 5, 6, device=device, generator=torch.Generator(device).manual_seed(2))
    eager, fast = both(ddim_sample, conditional, num_steps=10, clip_x0=(-1, 1))
    assert num_cached_graphs(conditional) == 2
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    # Stochastic DDPM with a CUDA generator, schedule on the device: the graph uses the same random numbers.
    schedule = NoiseSchedule.from_name("linear", T, beta_start=1e-3, beta_end=0.2).to(device)
    eager, fast = [
        ddpm_sample(conditional, schedule, noise, clip_x0=(-1, 1), fast=fast, progress=False,
                    generator=torch.Generator(device).manual_seed(3))
        for fast in (False, True)
    ]  # fmt: skip
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)

    # A module: in-place weight updates (an optimizer step) are seen by the replay.
    plain = _tiny_unet().to(device)
    eager, fast = both(ddim_sample, plain, num_steps=10)
    assert num_cached_graphs(plain) == 1
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for p in plain.parameters():
            p.mul_(1.05)
    eager, fast = both(ddim_sample, plain, num_steps=10)
    torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    # A new batch size captures a second graph; mixed precision is captured with its autocast.
    ddim_sample(plain, SCHEDULE, noise[:2], num_steps=3, fast=True, progress=False)
    assert num_cached_graphs(plain) == 2
    precision = select_precision(device)
    eager, fast = both(ddim_sample, plain, num_steps=10, clip_x0=(-1, 1), precision=precision)
    torch.testing.assert_close(fast, eager, rtol=0, atol=2e-2)
    assert num_cached_graphs(plain) == 3
    clear_graph_cache(plain)
    assert num_cached_graphs(plain) == 0


@pytest.mark.gpu
@needs_cuda
@no_fallback
def test_guidance_through_the_cuda_graph(no_tf32):
    """The fast path applies to a guidance wrapper: scale 1 still gives the conditional model's samples."""
    device = torch.device("cuda")
    model = _tiny_unet(context_dim=6).to(device)
    noise = torch.randn(2, 3, 8, 8, device=device, generator=torch.Generator(device).manual_seed(0))
    context = torch.randn(2, 5, 6, device=device, generator=torch.Generator(device).manual_seed(1))
    null = torch.zeros_like(context)
    guided_1, guided_3 = _guided(model, null, context, 1.0), _guided(model, null, context, 3.0)

    def run(denoiser, fast):
        return ddim_sample(denoiser, SCHEDULE, noise, num_steps=10, fast=fast, progress=False)

    conditional = run(lambda x, t: model(x, t, context=context), fast=True)
    torch.testing.assert_close(run(guided_1, fast=True), conditional, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(run(guided_1, fast=True), run(guided_1, fast=False), rtol=1e-5, atol=1e-5)
    fast_3 = run(guided_3, fast=True)
    torch.testing.assert_close(fast_3, run(guided_3, fast=False), rtol=1e-5, atol=1e-5)
    assert (fast_3 - conditional).abs().max() > 1e-2
    assert num_cached_graphs(guided_1) == 1 and num_cached_graphs(guided_3) == 1
    # The cache holds denoisers weakly: a wrapper that goes takes its graphs with it.
    cached = len(_graphs)
    del guided_3
    gc.collect()
    assert len(_graphs) == cached - 1
