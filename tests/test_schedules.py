"""Tests for dlcourse.schedules: schedules vs diffusers, forward-process statistics, validation."""

from __future__ import annotations

import math

import pytest
import torch

from dlcourse.schedules import (
    NoiseSchedule,
    cosine_betas,
    linear_betas,
    make_betas,
    q_sample,
    q_step,
    scaled_linear_betas,
    snr,
)

# (our name, diffusers' beta_schedule, diffusers kwargs that select the same betas)
DIFFUSERS_NAMES = [
    ("linear", "linear", {}),
    ("scaled_linear", "scaled_linear", {"beta_start": 0.00085, "beta_end": 0.012}),
    ("cosine", "squaredcos_cap_v2", {}),
]


# ---------------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("name, diffusers_name, kwargs", DIFFUSERS_NAMES)
@pytest.mark.parametrize("num_timesteps", [1000, 50])
def test_alpha_bar_matches_diffusers(name, diffusers_name, kwargs, num_timesteps):
    diffusers = pytest.importorskip("diffusers")
    theirs = diffusers.DDPMScheduler(
        num_train_timesteps=num_timesteps, beta_schedule=diffusers_name, **kwargs
    ).alphas_cumprod.double()
    ours_f64 = torch.cumprod(1 - make_betas(name, num_timesteps), dim=0)
    ours_buffer = NoiseSchedule.from_name(name, num_timesteps).alpha_bar.double()
    # diffusers computes in float32: agreement to float32 round-off (a wrong schedule differs by >= 1e-3).
    torch.testing.assert_close(ours_f64, theirs, rtol=0, atol=2e-6)
    torch.testing.assert_close(ours_buffer, theirs, rtol=0, atol=2e-6)


@pytest.mark.parametrize("name, diffusers_name, kwargs", DIFFUSERS_NAMES)
def test_q_sample_matches_diffusers_add_noise(name, diffusers_name, kwargs):
    """Same x0, eps and integer t give the same x_t: this pins the 0-indexed timestep convention."""
    diffusers = pytest.importorskip("diffusers")
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_schedule=diffusers_name, **kwargs)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(5, 3, 4, 4, generator=gen) * 2 - 1
    eps = torch.randn(5, 3, 4, 4, generator=gen)
    t = torch.tensor([0, 1, 500, 998, 999])
    ours = NoiseSchedule.from_name(name).q_sample(x0, t, eps)
    torch.testing.assert_close(ours, scheduler.add_noise(x0, eps, t), rtol=0, atol=1e-5)


def test_schedule_endpoints_and_dtype():
    betas = linear_betas(1000)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    sl = scaled_linear_betas(1000)
    assert sl[0].item() == pytest.approx(0.00085) and sl[-1].item() == pytest.approx(0.012)
    # linear in sqrt(beta): constant differences of sqrt(beta)
    diffs = sl.sqrt().diff()
    torch.testing.assert_close(diffs, diffs.mean().expand_as(diffs))


def test_cosine_betas_follow_eq_17_and_are_clipped():
    T, s = 1000, 0.008
    betas = cosine_betas(T)
    assert betas.dtype == torch.float64
    assert betas.max().item() <= 0.999
    assert betas[-1].item() == 0.999  # alpha_bar(T) = cos(pi/2)^2 ~ 0 -> beta_T -> 1, clipped
    # Before the clip kicks in, alpha_bar matches f(t)/f(0) exactly (Nichol & Dhariwal 2021, Eq. (17)).
    f = lambda t: math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = torch.cumprod(1 - betas, dim=0)
    for t in [1, 100, 500, 900]:
        assert alpha_bar[t - 1].item() == pytest.approx(f(t) / f(0), rel=1e-9)
    # A lower max_beta clips more of the tail, and nothing else.
    clipped = cosine_betas(T, max_beta=0.1)
    assert clipped.max().item() == 0.1
    torch.testing.assert_close(clipped, betas.clamp(max=0.1))
    assert (clipped == 0.1).sum() > 1


def test_make_betas_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown beta schedule 'squaredcos_cap_v2'.*'cosine'.*'linear'"):
        make_betas("squaredcos_cap_v2", 10)
    with pytest.raises(ValueError, match="num_timesteps must be a positive integer"):
        make_betas("linear", 0)


def test_make_betas_forwards_kwargs():
    torch.testing.assert_close(make_betas("linear", 10, beta_end=0.05), linear_betas(10, beta_end=0.05))
    with pytest.raises(TypeError, match=r"'linear' schedule has no parameter max_beta.*beta_start.*beta_end"):
        make_betas("linear", 10, max_beta=0.5)


@pytest.mark.parametrize(
    "name, kwargs, bad",
    [
        ("linear", {"beta_end": 1.5}, "beta_end=1.5"),
        ("linear", {"beta_end": 1.0}, "beta_end=1.0"),
        ("linear", {"beta_start": 0.0}, "beta_start=0.0"),
        ("linear", {"beta_start": -1e-4}, "beta_start=-0.0001"),
        ("linear", {"beta_end": float("nan")}, "beta_end=nan"),
        ("scaled_linear", {"beta_end": 2.0}, "beta_end=2.0"),
        ("scaled_linear", {"beta_start": 0.0}, "beta_start=0.0"),
        ("cosine", {"max_beta": 1.0}, "max_beta=1.0"),
        ("cosine", {"max_beta": 0.0}, "max_beta=0.0"),
    ],
)
def test_every_schedule_refuses_betas_outside_0_1(name, kwargs, bad):
    """A beta is a variance with sqrt(1 - beta) scaling the signal: the error names the culprit and the fix."""
    with pytest.raises(ValueError, match=rf"{name} schedule: {bad} is not in \(0, 1\).*e\.g\. the default"):
        make_betas(name, 1000, **kwargs)
    with pytest.raises(ValueError, match=bad):
        NoiseSchedule.from_name(name, 1000, **kwargs)


@pytest.mark.parametrize("name", ["linear", "scaled_linear"])
def test_linear_schedules_refuse_decreasing_betas(name):
    with pytest.raises(ValueError, match=r"beta_start=0.02 is larger than beta_end=0.0001.*swap"):
        make_betas(name, 100, beta_start=0.02, beta_end=1e-4)
    assert torch.all(make_betas(name, 10, beta_start=0.01, beta_end=0.01) > 0)  # constant is fine


def test_cosine_refuses_a_negative_offset_and_degenerate_betas():
    with pytest.raises(ValueError, match=r"offset s=-0.5 must be a number >= 0"):
        cosine_betas(100, s=-0.5)
    with pytest.raises(ValueError, match=r"betas must lie in \(0, 1\)"):
        cosine_betas(100, s=1e20)  # every beta rounds to 0


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine"])
@pytest.mark.parametrize("num_timesteps", [1, 2, 1000, 4000])
def test_default_schedules_lie_in_0_1(name, num_timesteps):
    betas = make_betas(name, num_timesteps)
    assert betas.shape == (num_timesteps,) and bool(((betas > 0) & (betas < 1)).all())


def test_noise_schedule_buffers():
    sched = NoiseSchedule.from_name("linear", 100)
    assert sched.num_timesteps == 100
    assert {name for name, _ in sched.named_buffers()} >= {"betas", "alphas", "alpha_bar"}
    assert all(b.dtype == torch.float32 for b in sched.buffers())
    assert list(sched.parameters()) == []
    torch.testing.assert_close(sched.alphas, 1 - sched.betas)
    torch.testing.assert_close(sched.alpha_bar[0], sched.alphas[0])  # index 0 is the paper's step 1
    torch.testing.assert_close(sched.alpha_bar[5], sched.alphas[:6].prod())
    assert set(sched.state_dict()) >= {"betas", "alphas", "alpha_bar"}


def test_noise_schedule_rejects_bad_betas():
    with pytest.raises(ValueError, match=r"betas must lie in \(0, 1\]"):
        NoiseSchedule(torch.tensor([0.1, 1.5]))
    with pytest.raises(ValueError, match="non-empty 1-D"):
        NoiseSchedule(torch.ones(2, 2) * 0.1)


@pytest.mark.parametrize("name", ["linear", "scaled_linear", "cosine"])
def test_snr_is_strictly_decreasing(name):
    sched = NoiseSchedule.from_name(name)
    values = sched.snr()
    assert values.shape == (1000,)
    assert torch.all(values[1:] < values[:-1])
    torch.testing.assert_close(values, sched.alpha_bar / (1 - sched.alpha_bar))
    t = torch.tensor([3, 700])
    torch.testing.assert_close(sched.snr(t), values[t])
    torch.testing.assert_close(snr(torch.tensor([0.5, 0.2])), torch.tensor([1.0, 0.25]))


# ------------------------------------------------------------------------------------ forward process


def _check_moments(samples, mean, var, n):
    """|sample mean - mean| and |sample var - var| within 5 standard errors (Gaussian samples)."""
    sample_mean, sample_var = samples.mean(0), samples.var(0)
    assert torch.all((sample_mean - mean).abs() < 5 * (var / n).sqrt()), (sample_mean, mean)
    assert torch.all((sample_var - var).abs() < 5 * var * math.sqrt(2 / (n - 1))), (sample_var, var)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("t", [0, 10, 300, 999])
def test_q_sample_mean_and_variance(name, t):
    torch.manual_seed(0)
    sched = NoiseSchedule.from_name(name)
    n = 20_000
    x0 = torch.tensor([-1.0, -0.3, 0.5, 1.0], dtype=torch.float64).reshape(1, 1, 2, 2).expand(n, 1, 2, 2)
    xt = sched.q_sample(x0, torch.full((n,), t))
    ab = sched.alpha_bar[t].double()
    _check_moments(xt, ab.sqrt() * x0[0], (1 - ab).expand(1, 2, 2), n)


@pytest.mark.parametrize("name", ["linear", "cosine"])
@pytest.mark.parametrize("num_timesteps, t", [(1000, 0), (1000, 40), (100, 99)])
def test_closed_form_matches_iterated_chain(name, num_timesteps, t):
    """Applying q_step for s = 0..t (t + 1 steps) has the distribution of q_sample at t."""
    torch.manual_seed(1)
    sched = NoiseSchedule.from_name(name, num_timesteps)
    n = 16_000  # n * 2 values stays under torch's parallel grain size: fast even on a busy 2-core CPU
    x0 = torch.tensor([-0.8, 0.6], dtype=torch.float64).reshape(1, 1, 1, 2).expand(n, 1, 1, 2)
    x = x0
    for s in range(t + 1):
        x = sched.q_step(x, s, check=False)
    ab = sched.alpha_bar[t].double()
    _check_moments(x, ab.sqrt() * x0[0], (1 - ab).expand(1, 1, 2), n)


def test_two_chain_steps_equal_closed_form_exactly():
    """Two steps with eps1, eps2 equal q_sample at t=1 with the combined (unit-variance) noise."""
    sched = NoiseSchedule.from_name("linear")
    gen = torch.Generator().manual_seed(2)
    x0 = torch.rand(3, 1, 4, 4, generator=gen, dtype=torch.float64) * 2 - 1
    eps1, eps2 = torch.randn(2, 3, 1, 4, 4, generator=gen, dtype=torch.float64)
    x1 = sched.q_step(x0, 0, eps1)
    # The buffers are float32, so the two routes agree to float32 round-off.
    torch.testing.assert_close(x1, sched.q_sample(x0, 0, eps1), rtol=1e-5, atol=1e-5)  # 1 step == t=0
    x2 = sched.q_step(x1, 1, eps2)
    a1, b0, b1 = sched.alphas[1].double(), sched.betas[0].double(), sched.betas[1].double()
    eps = (a1.sqrt() * b0.sqrt() * eps1 + b1.sqrt() * eps2) / (1 - sched.alpha_bar[1].double()).sqrt()
    torch.testing.assert_close(x2, sched.q_sample(x0, 1, eps), rtol=1e-5, atol=1e-5)


def test_pure_functions_match_module():
    sched = NoiseSchedule.from_name("cosine", 100)
    gen = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 2, 3, 3, generator=gen) * 2 - 1
    eps = torch.randn(4, 2, 3, 3, generator=gen)
    t = torch.tensor([0, 5, 50, 99])
    ab = sched.alpha_bar[t].reshape(4, 1, 1, 1)
    expected = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    torch.testing.assert_close(q_sample(x0, t, eps, sched.alpha_bar), expected)
    torch.testing.assert_close(sched.q_sample(x0, t, eps), expected)
    beta = sched.betas[t].reshape(4, 1, 1, 1)
    torch.testing.assert_close(q_step(x0, t, eps, sched.betas), (1 - beta).sqrt() * x0 + beta.sqrt() * eps)


def test_q_sample_int_t_generator_and_dtype():
    sched = NoiseSchedule.from_name("linear")
    x0 = torch.zeros(3, 1, 2, 2)
    a = sched.q_sample(x0, 999, generator=torch.Generator().manual_seed(7))
    b = sched.q_sample(x0, torch.tensor(999), generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], a[1])  # independent noise per image
    # bf16 data: coefficients are computed in float32, result keeps x0's dtype.
    out = sched.q_sample(x0.bfloat16(), 0, torch.ones_like(x0, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16
    assert out.float().mean().item() == pytest.approx((1 - sched.alpha_bar[0].item()) ** 0.5, rel=1e-2)


# ---------------------------------------------------------------------------------------- validation


def test_x0_out_of_range_teaches_the_fix():
    sched = NoiseSchedule.from_name("linear", 10)
    images_01 = torch.rand(2, 3, 4, 4) * 0.5 + 0.5  # [0.5, 1]: fine
    sched.q_sample(images_01, 0)
    with pytest.raises(ValueError, match=r"\[0, 255\].*\n?") as info:
        sched.q_sample(torch.full((2, 1, 2, 2), 200.0), 0)
    message = str(info.value)
    assert "[200, 200]" in message and "[-1, 1]" in message and "to_model_range" in message
    with pytest.raises(ValueError, match="to_model_range"):
        sched.q_sample(torch.full((1, 1, 2, 2), float("nan")), 0)
    sched.q_sample(torch.full((2, 1, 2, 2), 1.0005), 0)  # within tolerance
    sched.q_sample(torch.full((2, 1, 2, 2), 200.0), 0, check=False)  # check=False skips it
    sched.q_step(torch.full((2, 1, 2, 2), 5.0), 3)  # x_{t-1} is noisy: no range check


@pytest.mark.parametrize("method", ["q_sample", "q_step"])
def test_bad_timesteps_raise(method):
    sched = NoiseSchedule.from_name("linear", 1000)
    x = torch.zeros(2, 1, 2, 2)
    fn = getattr(sched, method)
    with pytest.raises(ValueError, match=r"\[1, 1000\].*\[0, 999\].*paper's step t\+1"):
        fn(x, torch.tensor([1, 1000]))  # the 1-indexed mistake
    with pytest.raises(ValueError, match=r"\[-1, 0\].*\[0, 999\]"):
        fn(x, torch.tensor([-1, 0]))
    with pytest.raises(ValueError, match=r"t = 1000 is outside.*\[0, 999\]"):
        fn(x, 1000)
    with pytest.raises(ValueError, match="integer tensor.*float32"):
        fn(x, torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="must be an integer"):
        fn(x, 0.5)
    with pytest.raises(ValueError, match=r"shape \(B,\) = \(2,\).*got shape \(3,\)"):
        fn(x, torch.tensor([1, 2, 3]), check=False)  # shape checks are always on
    with pytest.raises(ValueError, match="eps must have the same shape"):
        fn(x, 1, eps=torch.zeros(2, 1, 2, 3))
    fn(x, torch.tensor([999, 0]))  # the valid extremes
