"""Tests of flow matching: the loss (dlcourse.training.flow_loss) through the one training loop, reflow's paired
noise, and the flow samplers (dlcourse.sampling.flow) against diffusers' FlowMatchEuler/HeunDiscreteScheduler,
the trajectory and its straightness, guidance on the velocity, and every input check."""

from __future__ import annotations

import math
import re
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from test_training import assert_same  # recursive torch.equal over a checkpoint
from torch import nn

from dlcourse.checkpoints import CheckpointError, load_checkpoint
from dlcourse.data import Shapes
from dlcourse.models import UNet, UNetConfig
from dlcourse.sampling import guided_denoiser
from dlcourse.sampling.flow import (
    flow_euler_sample,
    flow_euler_step,
    flow_heun_sample,
    flow_heun_step,
    flow_sigmas,
    resolution_shift,
)
from dlcourse.sampling.flow_paths import FlowTrajectory, flow_trajectory, reflow_pairs, straightness
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig, train
from dlcourse.training.flow_loss import TIMESTEP_SCALE, FlowMatchingLoss

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (2, 3, 8, 8)
QUIET = {"device": "cpu", "progress": False}
CONFIG = TrainConfig(steps=8, batch_size=8, lr=1e-3, warmup_steps=2, ema_decay=0.9, checkpoint_every=4, log_every=2)


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def tiny_unet(seed: int = 0, resolution: int = 8, **overrides) -> UNet:
    torch.manual_seed(seed)
    config = UNetConfig(
        in_channels=3, resolution=resolution, base_channels=8, channel_mults=(1, 2), attention_resolutions=(),
        num_heads=2, groups=4, zero_init=False, **overrides,
    )  # fmt: skip
    return UNet(config)


@pytest.fixture(scope="module")
def shapes16() -> torch.Tensor:
    return Shapes(resolution=16, seed=0, device="cpu").batch(0, 64).images


def refuse_calls(model: nn.Module) -> nn.Module:
    """Make any forward pass fail, to prove that a check ran before training started."""

    def hook(module, args):
        raise AssertionError("the model was called: training started before the input was refused")

    model.register_forward_pre_hook(hook)
    return model


class Recorder(nn.Module):
    """A one-conv velocity model that remembers the x_t and timesteps it was called with."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, t):
        self.calls.append((x.detach().clone(), t.detach().clone()))
        return self.conv(x) * torch.cos(t / 300).view(-1, 1, 1, 1)


# ------------------------------------------------------------------------------------------------------- the loss


def test_the_loss_is_the_formula_by_hand():
    x0, eps, t = _randn(*SHAPE, seed=0), _randn(*SHAPE, seed=1), torch.tensor([0.25, 0.9])
    model = Recorder()
    loss = FlowMatchingLoss()(model, x0, t=t, eps=eps)
    x_t = (1 - t.view(-1, 1, 1, 1)) * x0 + t.view(-1, 1, 1, 1) * eps
    with torch.no_grad():
        expected = F.mse_loss(model(x_t, 1000 * t), eps - x0)
    assert torch.equal(model.calls[0][0], x_t) and torch.equal(model.calls[0][1], torch.tensor([250.0, 900.0]))
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)
    # the paired noise of reflow is the eps the loss uses, and it is not passed to the model
    paired = FlowMatchingLoss(paired_noise="noise")(model, x0, t=t, model_kwargs={"noise": eps})
    assert torch.equal(paired, loss)


@pytest.mark.parametrize("loss", [FlowMatchingLoss(), FlowMatchingLoss("logit_normal", logit_mean=0.3, logit_std=0.7)])
def test_the_loss_draws_t_then_eps_from_the_generator(loss):
    x0, model = _randn(*SHAPE, seed=0), Recorder()
    value = loss(model, x0, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    if loss.t_distribution == "uniform":
        t = torch.rand(2, generator=g)
    else:
        t = torch.sigmoid(0.3 + 0.7 * torch.randn(2, generator=g))
    eps = torch.randn(SHAPE, generator=g)
    assert torch.equal(value, FlowMatchingLoss()(model, x0, t=t, eps=eps))
    assert torch.equal(model.calls[0][1], TIMESTEP_SCALE * t)


def test_t_has_the_right_distribution():
    g = torch.Generator().manual_seed(0)
    t = FlowMatchingLoss("logit_normal", logit_mean=0.5, logit_std=0.8).sample_t(100_000, "cpu", g)
    logit = torch.log(t / (1 - t))
    assert 0 < t.min() and t.max() < 1
    assert abs(logit.mean() - 0.5) < 0.01 and abs(logit.std() - 0.8) < 0.01
    sd3 = FlowMatchingLoss("logit_normal").sample_t(100_000, "cpu", g)  # m = 0, s = 1: symmetric about 1/2
    assert abs(sd3.median() - 0.5) < 0.01 and abs(torch.logit(sd3).std() - 1) < 0.01
    uniform = FlowMatchingLoss().sample_t(100_000, "cpu", g)
    assert abs(uniform.mean() - 0.5) < 0.005 and abs(uniform.var() - 1 / 12) < 0.002
    assert 0 <= uniform.min() and uniform.max() < 1


def test_train_with_the_flow_loss_lowers_it(shapes16):
    config = TrainConfig(steps=45, batch_size=8, lr=1e-3, warmup_steps=5, log_every=15, ema_decay=0.9)
    result = train(tiny_unet(resolution=16), shapes16, None, config, loss_fn=FlowMatchingLoss(), **QUIET)
    history = result.loss_history
    assert len(history) == 45 and all(math.isfinite(v) for v in history)
    first, last = sum(history[:15]) / 15, sum(history[-15:]) / 15
    assert last < 0.75 * first, (first, last)


@pytest.mark.parametrize("loss", [FlowMatchingLoss(), FlowMatchingLoss("logit_normal")])
def test_a_flow_run_in_pieces_equals_the_whole_run_bit_for_bit(tmp_path, shapes16, loss):
    whole, pieces = tmp_path / "whole.pt", tmp_path / "pieces.pt"
    model = lambda: tiny_unet(resolution=16, dropout=0.1)  # noqa: E731 (dropout: the CPU RNG state matters too)
    train(model(), shapes16, None, CONFIG, loss_fn=loss, checkpoint_path=whole, **QUIET)
    for until in (3, 6, 8):
        result = train(model(), shapes16, None, CONFIG, loss_fn=loss, checkpoint_path=pieces, until=until, **QUIET)
        assert result.steps == until
    a, b = load_checkpoint(whole), load_checkpoint(pieces)
    for key in ("model", "ema", "optimizer", "loss_history", "rng", "step", "fingerprint"):
        assert_same(a[key], b[key], key)
    # another loss setting is another run: its checkpoint is not continued
    other = replace(loss, t_distribution="uniform" if loss.t_distribution == "logit_normal" else "logit_normal")
    with pytest.raises(CheckpointError, match="t_distribution"):
        train(model(), shapes16, None, replace(CONFIG, steps=12), loss_fn=other, checkpoint_path=whole, **QUIET)


def test_reflow_trains_on_the_pairs_it_is_given(shapes16):
    """Each example's x_t lies on the line from its own sample to its own noise: the pairs stay together."""
    noise, samples = reflow_pairs(tiny_unet(resolution=16), _randn(32, 3, 16, 16, seed=3), num_steps=4, progress=False)
    assert torch.equal(samples, flow_euler_sample(tiny_unet(resolution=16), noise, num_steps=4, progress=False))
    model = Recorder()
    config = TrainConfig(steps=6, batch_size=8, lr=1e-2, warmup_steps=0, log_every=2)
    data = {"x0": samples, "noise": noise}
    result = train(model, data, None, config, loss_fn=FlowMatchingLoss(paired_noise="noise"), data_range=None,
                   **QUIET)  # fmt: skip
    assert len(result.loss_history) == 6 and all(math.isfinite(v) for v in result.loss_history)
    for x_t, timesteps in model.calls:  # Recorder.forward takes no "noise": it was not passed to the model
        t = (timesteps / TIMESTEP_SCALE).view(-1, 1, 1, 1, 1)
        on_lines = (1 - t) * samples + t * noise  # (B, N, C, H, W): x_t if it came from pair n
        distance = (on_lines - x_t[:, None]).abs().flatten(2).amax(-1)  # (B, N)
        assert (distance.min(dim=1).values < 1e-5).all()


# ------------------------------------------------------------------------------------------- the times, the steps


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("num_steps", [1, 7, 28])
def test_flow_sigmas_match_diffusers(shift, num_steps):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(num_steps)
    ours = flow_sigmas(num_steps, shift, spacing="diffusers")
    assert ours.dtype == torch.float32 and ours.shape == (num_steps + 1,)
    assert torch.equal(ours, scheduler.sigmas) and torch.equal(TIMESTEP_SCALE * ours[:-1], scheduler.timesteps)
    assert ours[0] == 1 and ours[-1] == 0 and (ours.diff() < 0).all()
    uniform = flow_sigmas(num_steps, shift)  # the default differs (negative control) except for one step
    assert num_steps == 1 or not torch.equal(uniform, scheduler.sigmas)


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_uniform_flow_sigmas_are_equal_steps_then_shifted(shift):
    ts = flow_sigmas(4, shift)
    assert ts.shape == (5,) and ts[0] == 1 and ts[-1] == 0
    torch.testing.assert_close(ts.double(), resolution_shift(torch.linspace(1, 0, 5, dtype=torch.float64), shift))
    # diffusers' times end at t = 1/1000 before 0: with two steps the second moves by a thousandth of the path
    two = flow_sigmas(2, spacing="diffusers")
    assert two[1] - two[2] < 2e-3 and torch.equal(flow_sigmas(2), torch.tensor([1.0, 0.5, 0.0]))


def test_resolution_shift():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.equal(resolution_shift(t, 1.0), t)
    shifted = resolution_shift(t, 3.0)
    assert shifted[0] == 0 and shifted[-1] == 1 and (shifted >= t).all()  # more time spent near the noise
    assert resolution_shift(0.5, 3.0) == 0.75  # 3 * 0.5 / (1 + 2 * 0.5)
    torch.testing.assert_close(resolution_shift(resolution_shift(t, 3.0), 1 / 3), t)  # shift 1/s undoes shift s


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_euler_step_matches_diffusers_step_for_step(shift):
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    scheduler.set_timesteps(10)
    ts = flow_sigmas(10, shift, spacing="diffusers").tolist()
    for i, timestep in enumerate(scheduler.timesteps):
        v, x = _randn(*SHAPE, seed=2 * i), _randn(*SHAPE, seed=2 * i + 1)
        theirs = scheduler.step(v, timestep, x).prev_sample
        x_next, x0_pred = flow_euler_step(v, ts[i], ts[i + 1], x)
        assert torch.equal(x_next, theirs), i
        torch.testing.assert_close(x0_pred, x - ts[i] * v, rtol=0, atol=0)


def test_steps_by_hand_and_per_image_times():
    x, v, v_next = _randn(*SHAPE, seed=0), _randn(*SHAPE, seed=1), _randn(*SHAPE, seed=2)
    x_next, x0_pred = flow_heun_step(v, v_next, 0.8, 0.5, x)
    torch.testing.assert_close(x_next, x - 0.3 * (v + v_next) / 2)
    torch.testing.assert_close(x0_pred, x - 0.8 * v)
    # one time per image: each image takes its own step
    t, t_next = torch.tensor([0.8, 0.4]), torch.tensor([0.5, 0.1])
    batched = flow_euler_step(v, t, t_next, x)
    for b in range(2):
        single = flow_euler_step(v[b : b + 1], t[b].item(), t_next[b].item(), x[b : b + 1])
        for got, expected in zip(batched, single, strict=True):
            torch.testing.assert_close(got[b : b + 1], expected)
    # a step up in time and back down returns to x (the ODE runs both ways; a constant v is exact)
    up, _ = flow_euler_step(v, 0.2, 0.7, x)
    torch.testing.assert_close(flow_euler_step(v, 0.7, 0.2, up).x_prev, x)


# ------------------------------------------------------------------------------------------------- the samplers


def _diffusers_loop(scheduler, model, noise, num_steps):
    scheduler.set_timesteps(num_steps)
    x = noise.clone()
    with torch.no_grad():
        for t in scheduler.timesteps:
            x = scheduler.step(model(x, t.expand(x.shape[0])), t, x).prev_sample
    return x


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_euler_sample_matches_the_diffusers_loop(shift):
    diffusers = pytest.importorskip("diffusers")
    model, noise = tiny_unet().eval(), _randn(*SHAPE, seed=7)
    theirs = _diffusers_loop(diffusers.FlowMatchEulerDiscreteScheduler(shift=shift), model, noise, 6)
    ours = flow_euler_sample(model, noise, num_steps=6, shift=shift, spacing="diffusers", progress=False)
    assert torch.equal(ours, theirs)
    # negative controls: another shift, or the course's uniform times, is another loop, and the comparison sees it
    other = flow_euler_sample(model, noise, num_steps=6, shift=4.0 - shift, spacing="diffusers", progress=False)
    assert (other - theirs).abs().max() > 1e-3
    uniform = flow_euler_sample(model, noise, num_steps=6, shift=shift, progress=False)
    assert (uniform - theirs).abs().max() > 1e-4


@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_flow_heun_sample_matches_the_diffusers_loop(shift):
    diffusers = pytest.importorskip("diffusers")
    model, noise = tiny_unet().eval(), _randn(*SHAPE, seed=8)
    theirs = _diffusers_loop(diffusers.FlowMatchHeunDiscreteScheduler(shift=shift), model, noise, 5)
    calls = []
    counted = lambda x, t: calls.append(1) or model(x, t)  # noqa: E731
    ours = flow_heun_sample(counted, noise, num_steps=5, shift=shift, spacing="diffusers", progress=False)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)  # diffusers divides and multiplies by t
    assert len(calls) == 2 * 5 - 1  # the last step, to t = 0, is an Euler step
    euler = flow_euler_sample(model, noise, num_steps=5, shift=shift, progress=False)
    assert (euler - theirs).abs().max() > 1e-3  # negative control: Euler is not Heun


def test_heun_is_more_accurate_than_euler():
    """dx/dt = x from x_1 = noise: the exact x_0 is noise / e."""
    noise = _randn(*SHAPE, seed=0)
    exact = noise / math.e
    euler = flow_euler_sample(lambda x, t: x, noise, num_steps=10, progress=False)
    heun = flow_heun_sample(lambda x, t: x, noise, num_steps=10, progress=False)
    assert (heun - exact).abs().max() < (euler - exact).abs().max() / 5


@pytest.mark.parametrize("sampler", [flow_euler_sample, flow_heun_sample])
def test_callback_sees_every_step_and_a_function_equals_the_module(sampler):
    model, noise, seen = tiny_unet().train(), _randn(*SHAPE, seed=1), []
    out = sampler(model, noise, num_steps=4, callback=lambda *args: seen.append(args), progress=False)
    assert model.training  # run in eval mode, its flag restored
    assert [i for i, *_ in seen] == [0, 1, 2, 3] and [t for _, t, *_ in seen] == flow_sigmas(4).tolist()[:-1]
    assert torch.equal(seen[0][2], noise)
    with torch.no_grad():
        model.eval()
        for _, t, x_t, x0_pred in seen:
            torch.testing.assert_close(x0_pred, x_t - t * model(x_t, torch.full((2,), 1000 * t)))
    assert torch.equal(sampler(lambda x, t: model(x, t), noise, num_steps=4, progress=False), out)
    assert not out.is_inference()


def test_guidance_on_the_velocity():
    """guided_denoiser combines the two velocities linearly: v_u + s (v_c - v_u), checked against a loop by hand."""
    unet = tiny_unet(context_dim=6).eval()
    context, uncond = _randn(2, 3, 6, seed=1), torch.zeros(1, 3, 6)
    noise, ts = _randn(*SHAPE, seed=2), flow_sigmas(3).tolist()
    x = noise.clone()
    with torch.no_grad():
        for t, t_next in zip(ts[:-1], ts[1:], strict=True):
            timesteps = torch.full((2,), 1000 * t)
            v_u, v_c = unet(x, timesteps, context=uncond.expand(2, -1, -1)), unet(x, timesteps, context=context)
            x = x + (t_next - t) * (v_u + 2.5 * (v_c - v_u))
    guided = flow_euler_sample(guided_denoiser(unet, context, uncond, 2.5), noise, num_steps=3, progress=False)
    torch.testing.assert_close(guided, x, rtol=1e-4, atol=1e-5)
    conditional = flow_euler_sample(lambda x, t: unet(x, t, context=context), noise, num_steps=3, progress=False)
    at_1 = flow_euler_sample(guided_denoiser(unet, context, uncond, 1.0), noise, num_steps=3, progress=False)
    torch.testing.assert_close(at_1, conditional, rtol=1e-4, atol=1e-5)
    assert (guided - conditional).abs().max() > 1e-3


# ---------------------------------------------------------------------------------- trajectory and straightness


@pytest.mark.parametrize("solver", ["euler", "heun"])
def test_straightness_is_0_for_a_straight_flow_and_not_for_a_curved_one(solver):
    noise, direction = _randn(*SHAPE, seed=0), _randn(*SHAPE, seed=1)
    straight = flow_trajectory(lambda x, t: direction, noise, num_steps=8, solver=solver, progress=False)
    assert straight.x.shape == (9, *SHAPE) and torch.equal(straight.t, flow_sigmas(8))
    assert torch.equal(straight.x[0], noise)
    torch.testing.assert_close(straight.x[-1], noise - direction)
    assert straightness(straight) < 1e-10
    curved = flow_trajectory(lambda x, t: direction * torch.cos(3 * t / 1000).view(-1, 1, 1, 1) + x, noise,
                             num_steps=8, shift=3.0, solver=solver, progress=False)  # fmt: skip
    assert straightness(curved) > 0.05
    sampler = flow_euler_sample if solver == "euler" else flow_heun_sample
    torch.testing.assert_close(
        curved.x[-1], sampler(lambda x, t: direction * torch.cos(3 * t / 1000).view(-1, 1, 1, 1) + x, noise,
                              num_steps=8, shift=3.0, progress=False), rtol=0, atol=0,
    )  # fmt: skip


def test_straightness_is_the_sum_by_hand():
    t = torch.tensor([1.0, 0.6, 0.0])
    x = torch.stack([torch.full((1, 1, 1, 1), value) for value in (2.0, 1.0, 0.0)])  # velocities 2.5, then 5/3
    straight = 2.0  # x_1 - x_0
    expected = 0.4 * (straight - 2.5) ** 2 + 0.6 * (straight - 5 / 3) ** 2
    torch.testing.assert_close(straightness(FlowTrajectory(t, x)), torch.tensor(expected))


# ------------------------------------------------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: FlowMatchingLoss("normal"), ValueError, "t_distribution must be one of ('uniform', 'logit_normal')"),
        (lambda: FlowMatchingLoss("logit_normal", logit_std=0), ValueError, "logit_std must be a finite number > 0"),
        (lambda: FlowMatchingLoss(logit_std=-1.0), ValueError, "logit_std"),
        (lambda: FlowMatchingLoss(logit_mean=float("nan")), ValueError, "logit_mean must be a finite number"),
        (lambda: FlowMatchingLoss(logit_mean="0"), TypeError, "logit_mean"),
        (lambda: FlowMatchingLoss(paired_noise=3), ValueError, "paired_noise must be None"),
        (lambda: FlowMatchingLoss(paired_noise="x0"), ValueError, "paired_noise must be None"),
    ],
)
def test_bad_loss_settings_are_refused(make, error, match):
    with pytest.raises(error, match=re.escape(match)):
        make()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x: FlowMatchingLoss()(Recorder(), x, t=torch.tensor([500.0, 100.0])), ValueError,
         "pass t, not 1000 t"),
        (lambda x: FlowMatchingLoss()(Recorder(), x, t=torch.tensor([-0.1, 0.5])), ValueError, "[-0.1, 0.5]"),
        (lambda x: FlowMatchingLoss()(Recorder(), x, t=torch.tensor([0.1, 0.2, 0.3])), ValueError, "shape (2,)"),
        (lambda x: FlowMatchingLoss()(Recorder(), x, t=torch.tensor([0, 1])), ValueError, "floating dtype"),
        (lambda x: FlowMatchingLoss()(Recorder(), x, eps=x[:1]), ValueError, "eps has shape (1, 3, 8, 8)"),
        (lambda x: FlowMatchingLoss()(Recorder(), x, NoiseSchedule.from_name("linear")), ValueError,
         "flow matching has none"),
        (lambda x: FlowMatchingLoss()(Recorder(), x[0]), ValueError, "x0 must be"),
        (lambda x: FlowMatchingLoss(paired_noise="noise")(Recorder(), x, model_kwargs={"noise": x}, eps=x), ValueError,
         "pass one of them"),
        (lambda x: FlowMatchingLoss(paired_noise="noise")(Recorder(), x, model_kwargs={}), ValueError,
         "needs each example's noise in model_kwargs['noise']"),
        (lambda x: FlowMatchingLoss(paired_noise="noise")(Recorder(), x, model_kwargs={"noise": x[:, :1]}),
         ValueError, "the paired noise 'noise' has shape (2, 1, 8, 8)"),
    ],
)  # fmt: skip
def test_bad_loss_calls_are_refused(call, error, match):
    with pytest.raises(error, match=re.escape(match)):
        call(_randn(*SHAPE, seed=0))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda d: {"schedule": NoiseSchedule.from_name("linear")}, ValueError, "Pass schedule=None"),
        (lambda d: {"loss_fn": FlowMatchingLoss(paired_noise="noise")}, ValueError,
         "reads each example's noise from the data entry 'noise'"),
        (lambda d: {"data": {"x0": d, "noise": d, "class_labels": torch.zeros(64, dtype=torch.long)},
                    "loss_fn": FlowMatchingLoss(paired_noise="noise"), "config": replace(CONFIG, p_uncond=0.1)},
         ValueError, "breaking the (noise, sample) pairs"),
        (lambda d: {"data": {"x0": d, "class_labels": torch.zeros(64, dtype=torch.long)}}, ValueError,
         "the flow matching loss calls model(x_t, t, **conditions) with the data's conditions ['class_labels']"),
    ],
    ids=["schedule", "no-paired-noise", "dropout", "model-takes"],
)  # fmt: skip
def test_bad_flow_training_is_refused_before_training(make, error, match, shapes16):
    inputs = {"data": shapes16, "schedule": None, "config": CONFIG, "loss_fn": FlowMatchingLoss(), **make(shapes16)}
    with pytest.raises(error, match=re.escape(match)):
        train(refuse_calls(tiny_unet(resolution=16)), inputs.pop("data"), inputs.pop("schedule"), inputs.pop("config"),
              **inputs, **QUIET)  # fmt: skip


def test_the_ddpm_loss_without_a_schedule_is_still_refused(shapes16):
    with pytest.raises(TypeError, match=re.escape("the DDPM loss needs one") + ".*FlowMatchingLoss"):
        train(refuse_calls(tiny_unet(resolution=16)), shapes16, None, CONFIG, **QUIET)


def _wrong_shape(x, t):
    return x[:, :1]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda n: flow_sigmas(0), ValueError, "flow_sigmas: num_steps must be an integer >= 1"),
        (lambda n: flow_sigmas(2.5), TypeError, "num_steps"),
        (lambda n: flow_sigmas(10, shift=0), ValueError, "shift must be a finite number > 0"),
        (lambda n: flow_sigmas(10, spacing="linear"), ValueError, "spacing must be 'uniform'"),
        (lambda n: flow_sigmas(10, shift=float("inf")), ValueError, "shift"),
        (lambda n: resolution_shift(0.5, -1), ValueError, "resolution_shift: shift"),
        (lambda n: flow_euler_sample(tiny_unet(), n, num_steps=0), ValueError, "flow_euler_sample: num_steps"),
        (lambda n: flow_heun_sample("model", n, num_steps=2), TypeError, "velocity must be a model"),
        (lambda n: flow_euler_sample(tiny_unet(), n[0], num_steps=2), ValueError, "noise must be the starting x_1"),
        (lambda n: flow_euler_sample(tiny_unet(), n.long(), num_steps=2), ValueError, "a float tensor"),
        (lambda n: flow_euler_sample(tiny_unet(), n, num_steps=2, callback=3), TypeError, "callback must be"),
        (lambda n: flow_euler_sample(lambda x, t: None, n, num_steps=2, progress=False), TypeError,
         "must return the velocity as a tensor"),
        (lambda n: flow_heun_sample(_wrong_shape, n, num_steps=2, progress=False), ValueError,
         "a velocity of x_t's shape (2, 3, 8, 8)"),
        (lambda n: flow_trajectory(tiny_unet(), n, num_steps=2, solver="rk4"), ValueError,
         "solver must be one of ('euler', 'heun')"),
        (lambda n: reflow_pairs(tiny_unet(), n, num_steps=2, solver="dpm"), ValueError, "reflow_pairs: solver"),
        (lambda n: flow_euler_step(n, 1.5, 0.5, n), ValueError, "t must be a time in [0, 1], got 1.5"),
        (lambda n: flow_euler_step(n, 999, 979, n), ValueError, "the network's timestep is 1000 t"),
        (lambda n: flow_euler_step(n, torch.tensor([1, 0]), 0.5, n), ValueError, "t must be a float"),
        (lambda n: flow_euler_step(n, torch.ones(3), 0.5, n), ValueError, "or a (2,) tensor"),
        (lambda n: flow_euler_step(n[:, :1], 1.0, 0.5, n), ValueError, "v must have the shape of x_t"),
        (lambda n: flow_heun_step(n, None, 1.0, 0.5, n), TypeError, "v_next must be a velocity"),
        (lambda n: flow_euler_step(n, 1.0, True, n), ValueError, "t_next must be a time"),
        (lambda n: straightness((torch.ones(3), n)), TypeError, "a FlowTrajectory"),
        (lambda n: straightness(FlowTrajectory(torch.ones(1), n[None])), ValueError, "N + 1 >= 2 times"),
    ],
)  # fmt: skip
def test_bad_sampler_inputs_are_refused(call, error, match):
    with pytest.raises(error, match=re.escape(match)):
        call(_randn(*SHAPE, seed=0))
