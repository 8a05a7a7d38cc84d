"""Tests for the ODE solvers (dlcourse.sampling.sigmas, solver_steps, solvers): sigmas, single steps and whole loops
against diffusers' EulerDiscreteScheduler, HeunDiscreteScheduler and DPMSolverMultistepScheduler (each with a
negative control that must differ), DDIM eta=0 == an Euler step of the probability-flow ODE, network evaluations,
float timesteps through the fast path's seam, and the input checks' errors."""

from __future__ import annotations

import math
import warnings
from contextlib import nullcontext

import pytest
import torch
from torch import nn

from dlcourse import fast_path
from dlcourse.cuda_graph import clear_graph_cache, num_cached_graphs
from dlcourse.fast_path import FastPathWarning
from dlcourse.models import UNet, UNetConfig
from dlcourse.sampling import ddim_sample, ddim_step, timesteps
from dlcourse.sampling.sigmas import (
    dpm_solver_sigmas,
    euler_sigmas,
    karras_sigmas,
    sigma_to_t,
    t_to_sigma,
    to_ve,
    to_vp,
    vp_sigmas,
)
from dlcourse.sampling.solver_steps import dpm_solver_2m_step, euler_step, heun_step, probability_flow_euler_step
from dlcourse.sampling.solvers import dpm_solver_sample, euler_sample, heun_sample
from dlcourse.schedules import NoiseSchedule, q_sample

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    # diffusers' schedulers call np.array on torch tensors, which numpy 2 warns about for this torch: not our code
    pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"),
]

SCHEDULES = {"cosine": NoiseSchedule.from_name("cosine", 1000), "linear": NoiseSchedule.from_name("linear", 1000)}
DIFFUSERS_PREDICTION = {"eps": "epsilon", "v": "v_prediction"}
SCHEDULERS = {"euler": "EulerDiscreteScheduler", "heun": "HeunDiscreteScheduler", "dpm": "DPMSolverMultistepScheduler"}
SAMPLERS = {"euler": euler_sample, "heun": heun_sample, "dpm": dpm_solver_sample}
PLANS = {"euler": euler_sigmas, "heun": euler_sigmas, "dpm": dpm_solver_sigmas}
SHAPE = (2, 3, 8, 8)
STEPS = 8


def _scheduler(solver: str, schedule: NoiseSchedule, prediction_type: str, karras: bool, **kwargs):
    diffusers = pytest.importorskip("diffusers")
    scheduler = getattr(diffusers, SCHEDULERS[solver])(
        num_train_timesteps=schedule.num_timesteps,
        trained_betas=schedule.betas.tolist(),
        prediction_type=DIFFUSERS_PREDICTION[prediction_type],
        use_karras_sigmas=karras,
        **kwargs,
    )
    scheduler.alphas_cumprod = schedule.alpha_bar.clone()  # identical constants: the tests isolate the solver maths
    return scheduler


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _state(sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A VE sample x = x0 + sigma eps with x0 in [-1, 1], and a random model output."""
    x0 = 2 * torch.rand(SHAPE, generator=torch.Generator().manual_seed(seed)) - 1
    return x0 + sigma * _randn(*SHAPE, seed=seed + 100), _randn(*SHAPE, seed=seed + 200)


def _assert_step_close(ours: torch.Tensor, theirs: torch.Tensor, x: torch.Tensor, magnified: float = 1.0) -> None:
    """Equal to about ten float32 roundings of the step's input (a step at sigma = 2e4 handles numbers of size 2e4),
    times what the step magnifies them by."""
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6 * (1 + x.abs().max().item()) * magnified)


class TrainedLike(nn.Module):
    """A tiny U-Net that guesses a bounded x0 and outputs the eps or v consistent with it at t's noise level, as a
    trained network does (an untrained one's eps at sigma = 2e4 implies an x0 of size 1e4). x_t may be float64: the
    U-Net runs in float32, the rest in x_t's dtype (for diffusers' float64 Heun loop)."""

    def __init__(self, schedule: NoiseSchedule, prediction_type: str):
        super().__init__()
        torch.manual_seed(0)
        self.unet = UNet(UNetConfig(in_channels=3, resolution=8, base_channels=8, channel_mults=(1, 2),
                                    attention_resolutions=(4,), num_heads=2, groups=4, zero_init=False))  # fmt: skip
        alpha_bar = schedule.alpha_bar.double()
        self.register_buffer("log_sigmas", ((1 - alpha_bar) / alpha_bar).sqrt().log())
        self.prediction_type = prediction_type

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x0 = torch.tanh(3 * self.unet(x_t.float(), t)).to(x_t.dtype)
        t = t.double()
        low = t.floor().long().clamp(0, self.log_sigmas.shape[0] - 2)
        log_sigma = self.log_sigmas[low] + (t - low) * (self.log_sigmas[low + 1] - self.log_sigmas[low])
        alpha_bar = (1 / (1 + (2 * log_sigma).exp())).view(-1, 1, 1, 1)
        eps = ((x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()).to(x_t.dtype)
        v = alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0  # Salimans & Ho 2022
        return eps if self.prediction_type == "eps" else v.to(x_t.dtype)


_MODELS: dict[tuple[str, str], TrainedLike] = {}


def _model(schedule_name: str, prediction_type: str) -> TrainedLike:
    key = (schedule_name, prediction_type)
    if key not in _MODELS:
        _MODELS[key] = TrainedLike(SCHEDULES[schedule_name], prediction_type).eval()
    return _MODELS[key]


def _diffusers_loop(scheduler, model, noise: torch.Tensor, num_steps: int) -> torch.Tensor:
    """The loop a diffusers user writes. It starts where ours does: at x_T = noise, i.e. noise sqrt(1 + sigma_0^2)
    in the VE coordinates of Euler and Heun (their pipelines use noise * sigma_0: solvers.py's docstring)."""
    scheduler.set_timesteps(num_steps)
    scheduler.set_begin_index(0)  # see test_dpm_solver_karras_repeats_timesteps_at_the_top
    sigma_0 = scheduler.sigmas[0].item()
    x = noise if type(scheduler).__name__ == SCHEDULERS["dpm"] else noise * (1 + sigma_0**2) ** 0.5
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_output = model(scheduler.scale_model_input(x, t), t.expand(x.shape[0]))
            x = scheduler.step(model_output, t, x).prev_sample
    return x


# ------------------------------------------------------------------------------------------------------ sigmas


def test_sigmas_are_the_vp_schedule_seen_as_ve():
    schedule = SCHEDULES["cosine"]
    alpha_bar = schedule.alpha_bar
    sigmas = vp_sigmas(alpha_bar)
    torch.testing.assert_close(1 / (1 + sigmas.double() ** 2), alpha_bar.double(), rtol=1e-6, atol=0)
    assert (sigmas.diff() > 0).all() and sigmas[0] < 0.02 and sigmas[-1] > 1e4  # about 2e4 at the cosine's top
    # x_t / sqrt(alpha_bar_t) = x0 + sigma_t eps: the VE process at noise level sigma_t.
    x0, eps, t = 2 * torch.rand(SHAPE) - 1, _randn(*SHAPE, seed=0), 500
    x_t = q_sample(x0, torch.full((2,), t), eps, alpha_bar)
    sigma = sigmas[t].item()
    torch.testing.assert_close(to_ve(x_t, sigma), x0 + sigma * eps, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(to_vp(to_ve(x_t, sigma), sigma), x_t)


def test_karras_sigmas_follow_eq_5_and_match_diffusers():
    diffusers = pytest.importorskip("diffusers")
    sigmas = karras_sigmas(10, 0.002, 80.0)  # the paper's EDM range
    assert sigmas.shape == (11,) and sigmas[0] == 80.0 and sigmas[-2] == pytest.approx(0.002) and sigmas[-1] == 0
    assert (sigmas.diff() < 0).all()
    inv_rho = sigmas[:-1] ** (1 / 7)
    torch.testing.assert_close(inv_rho.diff(), inv_rho.diff()[:1].expand(9))  # even steps in sigma^(1/rho)
    torch.testing.assert_close(karras_sigmas(5, 1.0, 5.0, rho=1.0)[:-1], torch.linspace(5, 1, 5, dtype=torch.float64))
    assert karras_sigmas(1, 1.0, 5.0).tolist() == pytest.approx([5.0, 0.0])  # one step: sigma_max, then the image
    scheduler = diffusers.EulerDiscreteScheduler()
    theirs = scheduler._convert_to_karras(torch.tensor([80.0, 0.002], dtype=torch.float64), 10)
    torch.testing.assert_close(sigmas[:-1], torch.from_numpy(theirs), rtol=1e-12, atol=0)


@pytest.mark.parametrize("schedule_name", ["cosine", "linear"])
def test_sigma_to_t_matches_diffusers_and_inverts_the_schedule(schedule_name):
    diffusers = pytest.importorskip("diffusers")
    alpha_bar = SCHEDULES[schedule_name].alpha_bar
    sigmas = karras_sigmas(25, vp_sigmas(alpha_bar)[0].item(), vp_sigmas(alpha_bar)[-1].item())[:-1]
    log_sigmas = vp_sigmas(alpha_bar).log().numpy()
    theirs = [float(diffusers.EulerDiscreteScheduler()._sigma_to_t(s, log_sigmas)) for s in sigmas.numpy()]
    torch.testing.assert_close(sigma_to_t(sigmas, alpha_bar), torch.tensor(theirs, dtype=torch.float64))
    integer_t = torch.tensor([0, 1, 17, 500, 998, 999])
    torch.testing.assert_close(sigma_to_t(vp_sigmas(alpha_bar)[integer_t], alpha_bar), integer_t.double(), atol=1e-4,
                               rtol=0)  # fmt: skip
    torch.testing.assert_close(t_to_sigma(integer_t, alpha_bar), vp_sigmas(alpha_bar)[integer_t].double())
    assert vp_sigmas(alpha_bar)[17] < t_to_sigma(torch.tensor([17.5]), alpha_bar) < vp_sigmas(alpha_bar)[18]


@pytest.mark.parametrize("solver", ["euler", "heun", "dpm"])
@pytest.mark.parametrize("kind", ["default", "karras"])
@pytest.mark.parametrize("schedule_name, num_steps", [("cosine", 10), ("cosine", 7), ("linear", 50), ("linear", 2)])
def test_sigmas_and_timesteps_match_diffusers(solver, kind, schedule_name, num_steps):
    schedule = SCHEDULES[schedule_name]
    scheduler = _scheduler(solver, schedule, "eps", kind == "karras")
    scheduler.set_timesteps(num_steps)
    plan = PLANS[solver](schedule, num_steps, kind)
    sigmas, ts = scheduler.sigmas, scheduler.timesteps
    if solver == "heun":  # diffusers lists each inner sigma and timestep twice (its two calls per step)
        sigmas, ts = torch.cat([sigmas[:1], sigmas[1:-1:2], sigmas[-1:]]), torch.cat([ts[:1], ts[1::2]])
    assert plan.sigmas.dtype == torch.float32 and plan.sigmas.shape == (num_steps + 1,) and plan.sigmas[-1] == 0
    torch.testing.assert_close(plan.sigmas, sigmas, rtol=1e-6, atol=0)
    assert plan.timesteps.dtype == ts.dtype  # float32 (fractional) for Euler and Heun, int64 for DPM-Solver++
    torch.testing.assert_close(plan.timesteps, ts, rtol=1e-6, atol=1e-4)


def test_one_step_starts_from_pure_noise_unlike_diffusers_linspace():
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.EulerDiscreteScheduler()
    scheduler.set_timesteps(1)
    assert scheduler.timesteps.tolist() == [0.0]  # numpy's linspace of one point is its start: the least noise
    plan = euler_sigmas(SCHEDULES["linear"], 1)
    assert plan.timesteps.tolist() == [999.0] and plan.sigmas[0] == vp_sigmas(SCHEDULES["linear"].alpha_bar)[-1]


def test_dpm_solver_karras_repeats_timesteps_at_the_top():
    """On the cosine schedule Eq. (5)'s first sigmas all round to t = 999: distinct sigmas, repeated timesteps.
    diffusers' step then starts at the second 999 (its img2img rule) and runs off the end; its loops above call
    set_begin_index(0). Ours walks the sigmas in order."""
    plan = dpm_solver_sigmas(SCHEDULES["cosine"], 10, "karras")
    assert plan.timesteps[:3].tolist() == [999, 999, 999] and (plan.sigmas.diff() < 0).all()
    scheduler = _scheduler("dpm", SCHEDULES["cosine"], "eps", True)
    scheduler.set_timesteps(10)
    with pytest.raises(IndexError):
        for t in scheduler.timesteps:
            scheduler.step(torch.zeros(SHAPE), t, torch.zeros(SHAPE))


# ------------------------------------------------------------------------------------------ steps vs diffusers

CASES = [(s, k, p) for s in ("cosine", "linear") for k in ("default", "karras") for p in ("eps", "v")]


@pytest.mark.parametrize("schedule_name, kind, prediction_type", CASES)
def test_euler_step_matches_diffusers(schedule_name, kind, prediction_type):
    schedule = SCHEDULES[schedule_name]
    scheduler = _scheduler("euler", schedule, prediction_type, kind == "karras")
    scheduler.set_timesteps(STEPS)
    sigmas = euler_sigmas(schedule, STEPS, kind).sigmas.tolist()
    for i, t in enumerate(scheduler.timesteps):
        x, model_output = _state(sigmas[i], seed=i)
        theirs = scheduler.step(model_output, t, x)
        ours = euler_step(model_output, sigmas[i], sigmas[i + 1], x, prediction_type)
        _assert_step_close(ours.x_prev, theirs.prev_sample, x)
        _assert_step_close(ours.x0_pred, theirs.pred_original_sample, x)


@pytest.mark.parametrize("schedule_name, kind, prediction_type", CASES)
def test_heun_step_matches_diffusers(schedule_name, kind, prediction_type):
    """Each step is two calls of diffusers' step: the Euler step, then the correction at Euler's point. Its second
    call gets our Euler point (their Euler arithmetic loses about 1e-3 at sigma = 2e4: see
    test_heun_in_float32_is_closer_to_float64_than_diffusers). The correction computes the slope at sigma_next and
    multiplies it by (sigma - sigma_next) / 2: it magnifies the rounding of its input by
    (sigma - sigma_next) / sigma_next, 3500x on the cosine schedule's first default step, about 1 elsewhere."""
    schedule = SCHEDULES[schedule_name]
    scheduler = _scheduler("heun", schedule, prediction_type, kind == "karras")
    scheduler.set_timesteps(STEPS)
    sigmas, ts, calls = euler_sigmas(schedule, STEPS, kind).sigmas.tolist(), scheduler.timesteps, 0
    for i in range(STEPS):
        x, model_output = _state(sigmas[i], seed=i)
        theirs = scheduler.step(model_output, ts[calls], x)  # its first call: the Euler step
        calls += 1
        euler = euler_step(model_output, sigmas[i], sigmas[i + 1], x, prediction_type)
        _assert_step_close(euler.x_prev, theirs.prev_sample, x)
        _assert_step_close(euler.x0_pred, theirs.pred_original_sample, x)
        if sigmas[i + 1] > 0:  # its second call, at Euler's x_next: the correction
            model_output_next = _randn(*SHAPE, seed=300 + i)
            theirs = scheduler.step(model_output_next, ts[calls], euler.x_prev)
            calls += 1
            ours = heun_step(model_output, model_output_next, sigmas[i], sigmas[i + 1], x, prediction_type)
            _assert_step_close(ours.x_prev, theirs.prev_sample, x, 1 + (sigmas[i] - sigmas[i + 1]) / sigmas[i + 1])
    assert calls == len(ts) == 2 * STEPS - 1


@pytest.mark.parametrize("schedule_name, kind, prediction_type", CASES)
@pytest.mark.parametrize("num_steps", [STEPS, 20])  # diffusers' lower_order_final rule changes at 15 steps
def test_dpm_solver_2m_step_matches_diffusers(schedule_name, kind, prediction_type, num_steps):
    """diffusers works on x_t (VP), we on x_t / sqrt(alpha_bar): each is fed the same sample in its coordinates."""
    schedule = SCHEDULES[schedule_name]
    scheduler = _scheduler("dpm", schedule, prediction_type, kind == "karras")
    scheduler.set_timesteps(num_steps)
    scheduler.set_begin_index(0)
    sigmas, history = dpm_solver_sigmas(schedule, num_steps, kind).sigmas.tolist(), {}
    for i, t in enumerate(scheduler.timesteps):
        x, model_output = _state(sigmas[i], seed=i)
        theirs = scheduler.step(model_output, t, to_vp(x, sigmas[i])).prev_sample
        ours = dpm_solver_2m_step(model_output, sigmas[i], sigmas[i + 1], x, prediction_type=prediction_type,
                                  **(history if sigmas[i + 1] > 0 else {}))  # fmt: skip
        _assert_step_close(to_vp(ours.x_prev, sigmas[i + 1]), theirs, to_vp(x, sigmas[i]))
        history = {"last_x0_pred": ours.x0_pred, "last_sigma": sigmas[i]}


def test_dpm_solver_first_order_is_the_euler_step():
    """DPM-Solver++(1) = DDIM = Euler (Lu et al. 2022); the second-order term is what differs."""
    x, model_output = _state(3.0, seed=0)
    first = dpm_solver_2m_step(model_output, 3.0, 1.5, x, prediction_type="v")
    torch.testing.assert_close(first.x_prev, euler_step(model_output, 3.0, 1.5, x, "v").x_prev)
    second = dpm_solver_2m_step(model_output, 3.0, 1.5, x, _randn(*SHAPE, seed=5), 6.0, prediction_type="v")
    assert (second.x_prev - first.x_prev).abs().max() > 1e-2


# ------------------------------------------------------------------------------------------ loops vs diffusers

# Euler and Heun on the cosine schedule with the default sigmas take their first step from sigma = 2e4 to 5.7, where
# diffusers' float32 arithmetic keeps the image to about 1e-3 (Heun: a few 1e-2); see solver_steps.py.
ILL_CONDITIONED = {("euler", "cosine", "default"), ("heun", "cosine", "default")}


@pytest.mark.parametrize("solver", ["euler", "heun", "dpm"])
@pytest.mark.parametrize("schedule_name, kind, prediction_type", CASES)
def test_sampler_matches_diffusers_loop(solver, schedule_name, kind, prediction_type):
    schedule, model, noise = SCHEDULES[schedule_name], _model(schedule_name, prediction_type), _randn(*SHAPE, seed=1)
    theirs = _diffusers_loop(_scheduler(solver, schedule, prediction_type, kind == "karras"), model, noise, STEPS)
    ours = SAMPLERS[solver](model, schedule, noise, num_steps=STEPS, sigmas=kind, prediction_type=prediction_type,
                            progress=False)  # fmt: skip
    assert ours.shape == SHAPE and ours.dtype == torch.float32 and 0.3 < ours.std() and ours.abs().max() <= 1 + 1e-4
    tolerance = 5e-5  # images in [-1, 1]: 5e-5 relative to their scale
    if (solver, schedule_name, kind) in ILL_CONDITIONED:  # within diffusers' own float32 error: its change when the
        nudged = torch.nextafter(noise, 2 * noise)  # noise moves by one float32 step
        scheduler = _scheduler(solver, schedule, prediction_type, kind == "karras")
        tolerance += 2 * (_diffusers_loop(scheduler, model, nudged, STEPS) - theirs).abs().max().item()
        assert tolerance < 0.15
    torch.testing.assert_close(ours, theirs, rtol=0, atol=tolerance)


NEGATIVE_CONTROLS = [  # (solver, what changes on our side, on theirs): each must change the images
    ("euler", {"sigmas": "karras"}, {}),
    ("euler", {"sigmas": "karras", "rho": 3.0}, {"use_karras_sigmas": True}),
    ("heun", {"prediction_type": "v"}, {}),
    ("heun", {}, {"use_karras_sigmas": True}),
    ("dpm", {}, {"solver_order": 1}),
    ("dpm", {"sigmas": "karras"}, {}),
]


@pytest.mark.parametrize("schedule_name", ["linear", "cosine"])
@pytest.mark.parametrize("solver, ours_change, theirs_change", NEGATIVE_CONTROLS)
def test_parity_can_fail(schedule_name, solver, ours_change, theirs_change):
    """The parity tests above compare real differences: change one setting on one side and the images differ by
    more than the loosest tolerance they allow (0.15, ill-conditioned cases; 5e-5 elsewhere)."""
    schedule, model, noise = SCHEDULES[schedule_name], _model(schedule_name, "eps"), _randn(*SHAPE, seed=1)
    theirs_change = dict(theirs_change)
    scheduler = _scheduler(solver, schedule, "eps", theirs_change.pop("use_karras_sigmas", False), **theirs_change)
    theirs = _diffusers_loop(scheduler, model, noise, STEPS)
    ours = SAMPLERS[solver](model, schedule, noise, num_steps=STEPS, progress=False,
                            **{"prediction_type": "eps", **ours_change})  # fmt: skip
    assert (ours - theirs).abs().max() > 0.3


def test_heun_in_float32_is_closer_to_float64_than_diffusers():
    """Where diffusers' float32 arithmetic cancels (the cosine schedule's first default step, from sigma = 2e4 to 5.7),
    ours keeps float32's precision. The reference is Algorithm 1 in float64 (our steps, which the step tests above
    check against diffusers'); diffusers' own loop fed float64 agrees with it to the rounding of its float32 sigmas."""
    schedule, model, noise = SCHEDULES["cosine"], _model("cosine", "v"), _randn(*SHAPE, seed=1)
    plan = euler_sigmas(schedule, STEPS)
    sigmas, ts = plan.sigmas.tolist(), plan.timesteps.tolist()
    x = to_ve(noise.double(), sigmas[0])
    with torch.no_grad():
        for i in range(STEPS):
            model_output = model(to_vp(x, sigmas[i]), torch.full((2,), ts[i]))
            x_next, _ = euler_step(model_output, sigmas[i], sigmas[i + 1], x, "v")
            if sigmas[i + 1] > 0:
                model_output_next = model(to_vp(x_next, sigmas[i + 1]), torch.full((2,), ts[i + 1]))
                x_next, _ = heun_step(model_output, model_output_next, sigmas[i], sigmas[i + 1], x, "v")
            x = x_next
    theirs_64 = _diffusers_loop(_scheduler("heun", schedule, "v", False), model, noise.double(), STEPS)
    theirs = _diffusers_loop(_scheduler("heun", schedule, "v", False), model, noise, STEPS)
    ours = heun_sample(model, schedule, noise, num_steps=STEPS, prediction_type="v", progress=False)
    assert (theirs_64 - x).abs().max() < 1e-2
    assert (theirs.double() - x).abs().max() > 1e-2 and (ours.double() - x).abs().max() < 1e-4


# --------------------------------------------------------------------------------- DDIM is Euler on the PF-ODE


@pytest.mark.parametrize("schedule_name", ["cosine", "linear"])
@pytest.mark.parametrize("prediction_type", ["eps", "v", "x0"])
@pytest.mark.parametrize("clip_x0", [None, (-1, 1)])
def test_ddim_eta_0_is_an_euler_step_of_the_probability_flow_ode(schedule_name, prediction_type, clip_x0):
    """Exact up to float32 rounding: in (sigma, x / sqrt(alpha_bar)) an Euler step with the prediction held fixed is
    x0_pred + sigma_prev eps_pred, DDIM's Eq. (12) over sqrt(alpha_bar_prev) (with clipping too: both then use the
    eps implied by the clipped x0). Includes the last step (prev_t = -1) and inversion (prev_t > t)."""
    schedule = SCHEDULES[schedule_name]
    for t, prev_t in [(999, 899), (600, 580), (300, 100), (50, 0), (10, -1), (100, 300)]:
        x_t, model_output = _randn(*SHAPE, seed=t), _randn(*SHAPE, seed=t + 1)
        ddim = ddim_step(model_output, t, prev_t, x_t, schedule, 0.0, prediction_type, None, clip_x0)
        euler = probability_flow_euler_step(model_output, t, prev_t, x_t, schedule, prediction_type, clip_x0)
        torch.testing.assert_close(euler.x0_pred, ddim.x0_pred, rtol=1e-5, atol=2e-5)
        torch.testing.assert_close(euler.x_prev, ddim.x_prev, rtol=1e-5, atol=2e-5)
    # The coordinates matter: the same Euler step taken on x_t itself, not on x_t / sqrt(alpha_bar), is not DDIM.
    sigma, sigma_prev = vp_sigmas(schedule.alpha_bar[[600, 400]]).tolist()
    on_x_t = euler_step(model_output, sigma, sigma_prev, x_t, prediction_type, clip_x0)
    ddim = ddim_step(model_output, 600, 400, x_t, schedule, 0.0, prediction_type, None, clip_x0)
    assert (on_x_t.x_prev - ddim.x_prev).abs().max() > 1e-2


def test_euler_on_ddims_sigmas_is_ddim_sample():
    """The whole loop: Euler steps through the sigmas of DDIM's timesteps give ddim_sample's images."""
    schedule, model, noise = SCHEDULES["cosine"], _model("cosine", "v"), _randn(*SHAPE, seed=3)
    ts = timesteps(10, 1000).tolist()
    x = noise
    with torch.no_grad():
        for i, t in enumerate(ts):
            prev_t = ts[i + 1] if i + 1 < len(ts) else -1
            model_output = model(x, torch.full((2,), t))
            x = probability_flow_euler_step(model_output, t, prev_t, x, schedule, "v").x_prev
    torch.testing.assert_close(x, ddim_sample(model, schedule, noise, num_steps=10, prediction_type="v",
                                              progress=False), rtol=1e-4, atol=1e-4)  # fmt: skip


# ----------------------------------------------------------------------------------------- sampler behaviour


class Counter(nn.Module):
    """Counts network evaluations and records the timesteps' dtype."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.calls, self.dtypes = model, 0, set()

    def forward(self, x, t):
        self.calls += 1
        self.dtypes.add(t.dtype)
        return self.model(x, t)


@pytest.mark.parametrize("solver, evaluations, dtype", [("euler", lambda n: n, torch.float32),
                                                        ("heun", lambda n: 2 * n - 1, torch.float32),
                                                        ("dpm", lambda n: n, torch.long)])  # fmt: skip
def test_network_evaluations_and_timestep_dtype(solver, evaluations, dtype):
    counter, noise = Counter(_model("linear", "eps")), _randn(*SHAPE, seed=0)
    for num_steps in (1, 2, 5):
        counter.calls = 0
        SAMPLERS[solver](counter, SCHEDULES["linear"], noise, num_steps=num_steps, progress=False)
        assert counter.calls == evaluations(num_steps)
    assert counter.dtypes == {dtype}


@pytest.mark.parametrize("solver", ["euler", "heun", "dpm"])
def test_callback_determinism_and_function_denoisers(solver, capsys):
    model, noise, calls = _model("cosine", "v"), _randn(*SHAPE, seed=0), []

    def run(denoiser, **kwargs):
        return SAMPLERS[solver](denoiser, SCHEDULES["cosine"], noise, num_steps=5, prediction_type="v", **kwargs)

    out = run(model, callback=lambda i, t, x_t, x0_pred: calls.append((i, t, x_t.clone(), x0_pred.clone())))
    assert "%" in capsys.readouterr().err  # the progress bar
    plan = PLANS[solver](SCHEDULES["cosine"], 5)
    assert [c[0] for c in calls] == list(range(5)) and [c[1] for c in calls] == plan.timesteps.tolist()
    torch.testing.assert_close(calls[0][2], noise)  # the first network input is x_T
    torch.testing.assert_close(calls[-1][3], out)  # the last step lands on its x0 prediction
    assert torch.equal(run(model, progress=False), out) and capsys.readouterr().err == ""
    assert torch.equal(run(lambda x, t: model(x, t), progress=False), out)
    assert not torch.allclose(run(lambda x, t: model(x, t + 100), progress=False), out)
    assert torch.equal(run(model, progress=False, fast=True), out)  # on a CPU fast is ignored
    clipped = run(lambda x, t: 3 * model(x, t), progress=False, clip_x0=(-0.5, 0.5))
    assert clipped.abs().max() <= 0.5 + 1e-6


class HealthyGraphs:
    """The fast path's seam (dlcourse.fast_path.graphs) on the CPU: "captures" a call by keeping it, "replays" it by
    calling it again on the static buffers (tests/test_fast_fallback.py has the failing ones)."""

    device_type = "cpu"

    def __init__(self):
        self.captures = self.replays = 0

    def card(self, device):
        return "a fake graph on the CPU"

    def side_stream(self, device):
        return nullcontext()

    def no_host_sync(self):
        return nullcontext()

    def capture(self, fn, device, generators=()):
        self.captures += 1

        def replay():
            self.replays += 1
            return fn()

        return replay


def test_fractional_timesteps_replay_through_a_float_graph(monkeypatch):
    """fast=True with Euler and Heun: a graph whose static t is float32 (a long one would truncate 888.8 to 888),
    cached apart from the long-t graph of DDIM and DPM-Solver++."""
    clear_graph_cache()
    model, schedule, noise = _model("linear", "eps"), SCHEDULES["linear"], _randn(*SHAPE, seed=0)
    eager = {solver: SAMPLERS[solver](model, schedule, noise, num_steps=7, progress=False) for solver in SAMPLERS}
    assert euler_sigmas(schedule, 7).timesteps[1] % 1 != 0  # fractional timesteps: 832.5, ...
    fake = HealthyGraphs()
    monkeypatch.setattr(fast_path, "graphs", fake)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastPathWarning)
        for solver in SAMPLERS:
            fast = SAMPLERS[solver](model, schedule, noise, num_steps=7, fast=True, progress=False)
            torch.testing.assert_close(fast, eager[solver], rtol=0, atol=0)
        ddim_sample(model, schedule, noise, num_steps=7, fast=True, progress=False)
    assert fake.captures == 2 and num_cached_graphs(model) == 2  # one float-t graph, one long-t graph
    assert fake.replays == 7 + 13 + 7 + 7  # one a call (a graph's first call replays once, to check it)
    clear_graph_cache()


# ---------------------------------------------------------------------------------------------------- errors


def _call_step(**changes):
    x, model_output = _state(2.0, seed=0)
    kwargs = {"model_output": model_output, "sigma": 2.0, "sigma_next": 1.0, "x": x, **changes}
    return kwargs


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: euler_sigmas(SCHEDULES["linear"], 0), ValueError, "num_steps must be a positive integer"),
        (lambda: dpm_solver_sigmas(SCHEDULES["linear"], 2.5), ValueError, "num_steps must be a positive integer"),
        (lambda: euler_sigmas(SCHEDULES["linear"], 10, "exponential"), ValueError, "sigmas must be one of"),
        (lambda: euler_sigmas(SCHEDULES["linear"], 10, "karras", rho=0), ValueError, "rho must be a positive"),
        (lambda: euler_sigmas(SCHEDULES["linear"], 10, rho=3.0), ValueError, "only applies to sigmas='karras'"),
        (lambda: dpm_solver_sigmas(SCHEDULES["linear"], 1000), ValueError,
         "not strictly decreasing.*at most T-1 = 999 steps"),
        (lambda: karras_sigmas(10, 5.0, 1.0), ValueError, "0 < sigma_min < sigma_max"),
        (lambda: karras_sigmas(10, 0.0, 1.0), ValueError, "0 < sigma_min < sigma_max"),
        (lambda: euler_step(**_call_step(sigma=0.0)), ValueError, "sigma must be a positive number"),
        (lambda: euler_step(**_call_step(sigma_next=2.0)), ValueError, "other than sigma"),
        (lambda: euler_step(**_call_step(sigma_next=-1.0)), ValueError, "sigma_next must be a number >= 0"),
        (lambda: euler_step(**_call_step(model_output=torch.zeros(2, 6, 8, 8))), ValueError, "shape of x"),
        (lambda: euler_step(**_call_step(), prediction_type="epsilon"), ValueError, "diffusers calls 'eps'"),
        (lambda: euler_step(**_call_step(), clip_x0=True), TypeError, "clip_x0 is a range now"),
        (lambda: heun_step(model_output_next=torch.zeros(SHAPE), **_call_step(sigma_next=0.0)), ValueError,
         "use euler_step for it"),
        (lambda: heun_step(model_output_next=torch.zeros(1, 3, 8, 8), **_call_step()), ValueError,
         "model_output_next must have the shape"),
        (lambda: dpm_solver_2m_step(**_call_step(sigma_next=3.0)), ValueError, "go down in noise"),
        (lambda: dpm_solver_2m_step(**_call_step(), last_sigma=4.0), ValueError, "together"),
        (lambda: dpm_solver_2m_step(**_call_step(), last_x0_pred=torch.zeros(SHAPE), last_sigma=1.5), ValueError,
         "must be above sigma"),
        (lambda: dpm_solver_2m_step(**_call_step(sigma_next=0.0), last_x0_pred=torch.zeros(SHAPE), last_sigma=4.0),
         ValueError, "must be first order"),
        (lambda: probability_flow_euler_step(torch.zeros(SHAPE), torch.tensor(10), 5, torch.zeros(SHAPE),
                                             SCHEDULES["linear"]), TypeError, "takes int timesteps"),
        (lambda: probability_flow_euler_step(torch.zeros(SHAPE), 10, 10, torch.zeros(SHAPE), SCHEDULES["linear"]),
         ValueError, "prev_t must differ from t"),
        (lambda: heun_sample(_model("linear", "eps"), SCHEDULES["linear"], torch.zeros(3, 8, 8)), ValueError,
         "float tensor \\(B, C, H, W\\)"),
        (lambda: euler_sample(_model("linear", "eps"), SCHEDULES["linear"], torch.zeros(SHAPE), sigmas="Karras"),
         ValueError, "sigmas must be one of"),
        (lambda: dpm_solver_sample(_model("linear", "eps"), SCHEDULES["linear"], torch.zeros(SHAPE), num_steps=0),
         ValueError, "num_steps must be a positive integer"),
        (lambda: dpm_solver_sample("unet", SCHEDULES["linear"], torch.zeros(SHAPE)), TypeError,
         "denoiser must be a model"),
    ],
)  # fmt: skip
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_the_first_and_last_sigma_of_the_default_sigmas():
    """x_T sits at sigma_{T-1}; the last step lands on sigma = 0, where x / sqrt(alpha_bar) is the image itself."""
    for plan in (euler_sigmas(SCHEDULES["cosine"], 10), dpm_solver_sigmas(SCHEDULES["cosine"], 10)):
        sigma_max = vp_sigmas(SCHEDULES["cosine"].alpha_bar)[-1].item()
        assert plan.sigmas[0].item() == pytest.approx(sigma_max) and plan.sigmas[-1] == 0
        assert math.isclose(plan.timesteps[0].item(), 999)


# ------------------------------------------------------------------------------------------------ GPU fast path


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.filterwarnings("error::dlcourse.fast_path.FastPathWarning")
def test_solvers_cuda_graph_equals_eager(monkeypatch):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    device = torch.device("cuda")
    model, schedule = TrainedLike(SCHEDULES["linear"], "v").eval().to(device), SCHEDULES["linear"]
    noise = torch.randn(4, 3, 8, 8, device=device, generator=torch.Generator(device).manual_seed(0))
    for solver in SAMPLERS:
        eager, fast = (SAMPLERS[solver](model, schedule, noise, num_steps=7, prediction_type="v", fast=fast,
                                        progress=False) for fast in (False, True))  # fmt: skip
        torch.testing.assert_close(fast, eager, rtol=1e-5, atol=1e-5)
    assert num_cached_graphs(model) == 2  # float t (Euler, Heun) and long t (DPM-Solver++)
    clear_graph_cache(model)
