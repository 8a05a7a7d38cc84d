"""Tests of dlcourse.training (the DDPM loss, the general training loop, checkpoints, DDP) and dlcourse.ema."""

from __future__ import annotations

import math
import os
import re
import signal
import socket
import subprocess
import sys
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from dlcourse.checkpoints import CheckpointError, load_checkpoint, load_or_train, save_checkpoint
from dlcourse.data import Shapes
from dlcourse.ema import EMA, ema_decay_at
from dlcourse.fast_path import FastPathWarning
from dlcourse.models import UNet, UNetConfig
from dlcourse.runtime import Precision
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import LossTerm, TrainConfig, TrainingDiverged, TrainResult, ddpm_loss, learning_rate, train
from dlcourse.training.batches import Examples, Source, draw_batch
from dlcourse.training.graphed import WARMUP_STEPS
from dlcourse.training.run_checks import check_fast

ROOT = Path(__file__).resolve().parent.parent
TINY = {"resolution": 16, "base_channels": 16, "channel_mults": (1, 2), "attention_resolutions": ()}
QUIET = {"device": "cpu", "progress": False}


def tiny_unet(seed: int = 0, **overrides) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(**{**TINY, **overrides}))


def linear_schedule() -> NoiseSchedule:
    return NoiseSchedule.from_name("linear")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def shapes16() -> torch.Tensor:
    return Shapes(resolution=16, seed=0, device="cpu").batch(0, 128).images


class Interrupted(Exception):
    """Raised by a forward hook to simulate a crash (Ctrl-C, a Colab disconnect) in the middle of training."""


def interrupt_at_call(model: nn.Module, call: int) -> nn.Module:
    calls = []

    def hook(module, args):
        calls.append(1)
        if len(calls) == call:
            raise Interrupted

    model.register_forward_pre_hook(hook)
    return model


def refuse_calls(model: nn.Module) -> nn.Module:
    """Make any forward pass fail, to prove that a check ran before training started."""

    def hook(module, args):
        raise AssertionError("the model was called: training started before the input was refused")

    model.register_forward_pre_hook(hook)
    return model


def assert_same(a, b, where: str = "checkpoint") -> None:
    """Recursive torch.equal / == over nested dicts and lists of tensors and plain values."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b), where
    else:
        assert a == b, where


# ----------------------------------------------------------------------------------------------------------
# The loss.
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("prediction_type", ["eps", "v", "x0"])
def test_ddpm_loss_matches_a_hand_computation(prediction_type, shapes16):
    model = tiny_unet(zero_init=False)  # nonzero outputs that depend on x_t and t
    schedule = linear_schedule()
    x0 = shapes16[:4]
    t = torch.tensor([0, 10, 500, 999])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))

    alpha_bar = schedule.alpha_bar[t].view(-1, 1, 1, 1)
    x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps
    target = {
        "eps": eps,
        "v": alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0,
        "x0": x0,
    }[prediction_type]
    with torch.no_grad():
        expected = ((model(x_t, t) - target) ** 2).mean()
        loss = ddpm_loss(model, x0, schedule, prediction_type, t=t, eps=eps)
    assert loss.shape == ()
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=0)


class Recorder(nn.Module):
    """Outputs zeros and remembers what it was called with."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, **kwargs):
        self.calls.append((x, t, kwargs))
        return torch.zeros_like(x)


def test_ddpm_loss_draws_t_uniformly_and_eps_from_the_generator():
    schedule = NoiseSchedule.from_name("linear", num_timesteps=10)
    x0 = torch.zeros(4000, 1, 2, 2)
    model = Recorder()
    loss = ddpm_loss(model, x0, schedule, generator=torch.Generator().manual_seed(0), model_kwargs={"context": 7})
    x_t, t, kwargs = model.calls[0]
    assert kwargs == {"context": 7}
    assert t.dtype == torch.long and t.shape == (4000,)
    assert torch.equal(torch.bincount(t, minlength=10) > 300, torch.ones(10, dtype=torch.bool))  # all of 0..T-1
    assert int(t.min()) == 0 and int(t.max()) == 9
    # x0 = 0, so x_t = sqrt(1 - alpha_bar_t) eps and the zero prediction's loss is mean(eps^2) ~ 1.
    eps = x_t / (1 - schedule.alpha_bar[t]).sqrt().view(-1, 1, 1, 1)
    assert abs(eps.mean().item()) < 0.03 and abs(eps.std().item() - 1) < 0.03
    torch.testing.assert_close(loss, (eps**2).mean())
    again = ddpm_loss(Recorder(), x0, schedule, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loss, again)  # same generator seed, same t and eps


def test_learning_rate_warms_up_linearly():
    config = TrainConfig(lr=1e-3, warmup_steps=10)
    assert [learning_rate(s, config) for s in (1, 5, 10, 11, 1000)] == pytest.approx([1e-4, 5e-4, 1e-3, 1e-3, 1e-3])
    assert learning_rate(1, replace(config, warmup_steps=0)) == 1e-3


def test_cosine_decay_follows_half_a_cosine_after_the_warm_up():
    config = TrainConfig(lr=1e-3, warmup_steps=10, steps=110, lr_decay="cosine")
    # warm-up as before, then lr (1 + cos(pi (step - 10) / 100)) / 2: lr at 10, lr / 2 half-way, 0 at the last step
    assert [learning_rate(s, config) for s in (5, 10, 60, 110)] == pytest.approx([5e-4, 1e-3, 5e-4, 0.0], abs=1e-12)
    assert learning_rate(35, config) == pytest.approx(1e-3 * (1 + math.cos(math.pi / 4)) / 2)
    rates = [learning_rate(s, config) for s in range(10, 111)]
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False))  # falls at every step
    assert learning_rate(60, replace(config, lr_decay="constant")) == 1e-3


def test_train_config_refuses_bad_settings():
    for bad in ({"lr": 0.0}, {"lr_decay": "linear"}, {"steps": 0}, {"batch_size": 2.5}, {"ema_decay": 1.0},
                {"grad_clip": 0.0},
                {"betas": (0.9, 1.0)}, {"betas": [0.9, 0.99]}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="epsilon"):  # the message maps diffusers' names to ours
        TrainConfig(prediction_type="epsilon")


# ----------------------------------------------------------------------------------------------------------
# EMA.
# ----------------------------------------------------------------------------------------------------------


def _ema_by_hand(decays: list[float], warmup: bool) -> None:
    torch.manual_seed(0)
    model = nn.BatchNorm1d(3)  # parameters (weight, bias) and buffers (running statistics)
    ema = EMA(model, decay=0.9, warmup=warmup)
    expected = [p.detach().double().clone() for p in model.parameters()]
    for decay in decays:
        assert ema.current_decay == pytest.approx(decay)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn_like(p))
        model.train()(torch.randn(8, 3))  # updates the running statistics
        ema.update()
        params = model.parameters()
        expected = [decay * e + (1 - decay) * p.detach().double() for e, p in zip(expected, params, strict=True)]
    for got, want, raw in zip(ema.model.parameters(), expected, model.parameters(), strict=True):
        torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-6)
        assert not torch.allclose(got, raw)  # the average is not the last weights
    for got, raw in zip(ema.model.buffers(), model.buffers(), strict=True):
        assert torch.equal(got, raw)  # buffers are copied, not averaged
    assert not ema.model.training and not any(p.requires_grad for p in ema.model.parameters())


def test_ema_follows_the_decay_formula():
    _ema_by_hand([0.9] * 4, warmup=False)


def test_ema_warmup_ramps_the_decay():
    _ema_by_hand([0.1, 2 / 11, 3 / 12, 4 / 13], warmup=True)  # min(0.9, (1 + n) / (10 + n)) for n = 0..3
    assert ema_decay_at(0, 0.999, warmup=True) == 0.1
    assert ema_decay_at(10**6, 0.999, warmup=True) == 0.999
    assert ema_decay_at(0, 0.999, warmup=False) == 0.999


def test_ema_state_dict_round_trip_and_copy_to():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update()
    other = EMA(nn.Linear(4, 3), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1
    assert_same(other.model.state_dict(), ema.model.state_dict())
    target = ema.copy_to(nn.Linear(4, 3))
    assert_same(target.state_dict(), ema.model.state_dict())
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(4, 3), decay=0.9).load_state_dict(ema.state_dict())
    with pytest.raises(ValueError, match="architecture"):
        ema.copy_to(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 3)))


def test_ema_average_with_a_tensor_weight_is_the_update_without_counting():
    """The captured training step averages with a 0-d tensor weight; it must be the update's arithmetic."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5))
    by_number, by_tensor = EMA(model, decay=0.9, warmup=True), EMA(model, decay=0.9, warmup=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
        model[1].running_mean.add_(1.0)
    by_number.update()
    by_tensor.average(torch.tensor(1.0 - by_tensor.current_decay))
    assert by_number.num_updates == 1 and by_tensor.num_updates == 0
    assert_same(by_tensor.model.state_dict(), by_number.model.state_dict())


# ----------------------------------------------------------------------------------------------------------
# The training loop.
# ----------------------------------------------------------------------------------------------------------


def test_a_short_shapes_run_lowers_the_loss(shapes16, recwarn):
    config = TrainConfig(steps=45, batch_size=8, lr=1e-3, warmup_steps=5, log_every=15, ema_decay=0.9)
    model = tiny_unet()
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    result = train(model, shapes16, linear_schedule(), config, **QUIET)
    history = result.loss_history
    assert len(history) == 45 and all(math.isfinite(v) for v in history)
    first, last = sum(history[:15]) / 15, sum(history[-15:]) / 15
    assert last < 0.7 * first, (first, last)
    assert result.steps == 45 and result.start_step == 0 and result.images_per_second > 0
    assert not result.model.training and not dist.is_initialized()  # a single process never touches torch.distributed
    raw, averaged = result.model.state_dict(), result.ema_model.state_dict()
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)  # the EMA is not the raw weights...

    def distance(a, b):
        return sum((a[k] - b[k]).pow(2).sum() for k in a).sqrt()

    assert distance(averaged, raw) < 0.5 * distance(initial, raw)  # ...but it followed them
    assert not [w for w in recwarn if "to_model_range" in str(w.message)]  # data in [-1, 1]: no range warning


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, shapes16) -> dict:
    """The final checkpoint of an uninterrupted 12-step run (dropout on, so the CPU RNG state matters)."""
    path = tmp_path_factory.mktemp("reference") / "run.pt"
    train(tiny_unet(dropout=0.1), shapes16, linear_schedule(), RESUME_CONFIG, checkpoint_path=path, **QUIET)
    return load_checkpoint(path)


RESUME_CONFIG = TrainConfig(
    steps=12, batch_size=4, lr=1e-3, warmup_steps=3, ema_decay=0.9, checkpoint_every=4, log_every=2, seed=3
)


def test_resume_after_an_interruption_is_bit_identical(tmp_path, shapes16, reference_run):
    path = tmp_path / "run.pt"
    crashing = interrupt_at_call(tiny_unet(dropout=0.1), call=10)  # dies in step 10; step 8 is saved
    with pytest.raises(Interrupted):
        train(crashing, shapes16, linear_schedule(), RESUME_CONFIG, checkpoint_path=path, **QUIET)
    assert load_checkpoint(path)["step"] == 8

    result = train(tiny_unet(dropout=0.1), shapes16, linear_schedule(), RESUME_CONFIG, checkpoint_path=path, **QUIET)
    assert result.start_step == 8 and len(result.loss_history) == 12
    final = load_checkpoint(path)
    for key in ("model", "ema", "optimizer", "scaler", "loss_history", "rng", "step"):
        assert_same(final[key], reference_run[key], key)
    assert result.loss_history == reference_run["loss_history"].tolist()


def test_train_6_then_resume_to_12_equals_train_12(tmp_path, shapes16, reference_run):
    path = tmp_path / "run.pt"
    first_half = replace(RESUME_CONFIG, steps=6)
    train(tiny_unet(dropout=0.1), shapes16, linear_schedule(), first_half, checkpoint_path=path, **QUIET)
    result = train(tiny_unet(dropout=0.1), shapes16, linear_schedule(), RESUME_CONFIG, checkpoint_path=path, **QUIET)
    assert result.start_step == 6
    final = load_checkpoint(path)
    for key in ("model", "ema", "optimizer", "loss_history", "rng"):
        assert_same(final[key], reference_run[key], key)
    # the model train() returns carries the same weights as the checkpoint
    assert_same(result.model.state_dict(), reference_run["model"], "returned model")
    assert_same(result.ema.state_dict(), reference_run["ema"], "returned EMA")


def test_a_run_in_pieces_with_until_equals_the_whole_run(tmp_path, shapes16, reference_run):
    path = tmp_path / "run.pt"
    config = replace(RESUME_CONFIG, lr_decay="cosine")
    whole = tmp_path / "whole.pt"
    train(tiny_unet(dropout=0.1), shapes16, linear_schedule(), config, checkpoint_path=whole, **QUIET)
    for until, done in ((5, 5), (9, 9), (30, 12)):  # past the last step: stops at config.steps
        result = train(tiny_unet(dropout=0.1), shapes16, linear_schedule(), config, checkpoint_path=path,
                       until=until, **QUIET)
        assert result.steps == done and load_checkpoint(path)["step"] == done
    final, expected = load_checkpoint(path), load_checkpoint(whole)
    for key in ("model", "ema", "optimizer", "loss_history", "rng"):
        assert_same(final[key], expected[key], key)
    # the decay spans config.steps whatever the pieces: the run differs from the constant-rate one
    assert not torch.equal(final["model"]["conv_out.weight"], reference_run["model"]["conv_out.weight"])


def test_until_needs_a_positive_step_and_a_checkpoint(tmp_path, shapes16):
    with pytest.raises(ValueError, match="checkpoint_path"):
        train(tiny_unet(), shapes16, linear_schedule(), RESUME_CONFIG, until=4, **QUIET)
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="until"):
            train(tiny_unet(), shapes16, linear_schedule(), RESUME_CONFIG, until=bad, checkpoint_path=tmp_path / "r.pt",
                  **QUIET)


def test_half_precision_with_a_grad_scaler_trains_and_resumes(tmp_path, shapes16):
    """The T4 recipe (fp16 autocast + GradScaler, unscale before clipping), run on the CPU."""
    fp16 = Precision("cpu", torch.float16, True, "fp16 + GradScaler (test)")
    config = TrainConfig(steps=3, batch_size=2, log_every=1)
    path = tmp_path / "run.pt"
    first = replace(config, steps=2)
    train(tiny_unet(), shapes16, linear_schedule(), first, checkpoint_path=path, precision=fp16, **QUIET)
    assert load_checkpoint(path)["scaler"]["scale"] == 65536.0  # the scaler's state is saved
    result = train(tiny_unet(), shapes16, linear_schedule(), config, checkpoint_path=path, precision=fp16, **QUIET)
    assert result.start_step == 2 and all(math.isfinite(v) for v in result.loss_history)


class NaNFromCall(nn.Module):
    """A custom model whose output becomes NaN from its n-th call on."""

    def __init__(self, n: int):
        super().__init__()
        self.conv, self.n, self.calls = nn.Conv2d(3, 3, 1), n, 0

    def forward(self, x, t):
        self.calls += 1
        out = self.conv(x)
        return out * float("nan") if self.calls >= self.n else out


def test_a_nan_loss_stops_training_and_names_the_step(tmp_path, shapes16):
    path = tmp_path / "run.pt"
    config = TrainConfig(steps=20, batch_size=4, log_every=5, checkpoint_every=5)
    with pytest.raises(FloatingPointError) as error:
        train(NaNFromCall(7), shapes16, linear_schedule(), config, checkpoint_path=path, **QUIET)
    message = str(error.value)
    assert "step 7" in message
    assert isinstance(error.value, TrainingDiverged) and error.value.step == 7
    assert len(error.value.finite_losses) == 1 and all(math.isfinite(v) for v in error.value.finite_losses)  # step 6
    for cause in ("learning rate", "fp16", "[-1, 1]", "custom model", str(path)):
        assert cause in message, cause
    kept = load_checkpoint(path)  # the good checkpoint of step 5 is not overwritten with NaN weights
    assert kept["step"] == 5 and all(torch.isfinite(v).all() for v in kept["model"].values())


@pytest.mark.parametrize(
    ("make_data", "error", "fix"),
    [
        (lambda x: (x + 1) * 127.5, ValueError, "to_model_range"),  # [0, 255]
        (lambda x: x[:, :1], ValueError, "in_channels"),  # grayscale data, RGB model
        (lambda x: x[0], ValueError, "unsqueeze"),  # one image (C, H, W)
        (lambda x: ((x + 1) * 127.5).to(torch.uint8), ValueError, "/ 255"),
        (lambda x: x[:, :, :8, :8], ValueError, "resolution"),
        (lambda x: x[:2], ValueError, "batch_size"),
        (lambda x: x.clone().fill_(float("nan")), ValueError, "NaN"),
        (lambda x: Shapes(resolution=16, device="cpu").batch(0, 8), TypeError, "data.images"),
    ],
    ids=["0-255", "channels", "3-D", "uint8", "resolution", "too-few", "nan", "not-a-tensor"],
)
def test_bad_data_is_refused_before_training(make_data, error, fix, shapes16):
    config = TrainConfig(steps=2, batch_size=4)
    with pytest.raises(error, match=re.escape(fix)):
        train(refuse_calls(tiny_unet()), make_data(shapes16), linear_schedule(), config, **QUIET)


def test_data_in_0_1_gets_a_warning(shapes16):
    config = TrainConfig(steps=1, batch_size=4)
    with pytest.warns(UserWarning, match="to_model_range"):
        train(tiny_unet(), (shapes16 + 1) / 2, linear_schedule(), config, **QUIET)


# ----------------------------------------------------------------------------------------------------------
# Checkpoints that do not belong to the run.
# ----------------------------------------------------------------------------------------------------------

BASE_CONFIG = TrainConfig(steps=2, batch_size=4, log_every=1, checkpoint_every=1)


@pytest.fixture(scope="module")
def base_checkpoint(tmp_path_factory, shapes16) -> bytes:
    path = tmp_path_factory.mktemp("base") / "run.pt"
    train(tiny_unet(), shapes16, linear_schedule(), BASE_CONFIG, checkpoint_path=path, **QUIET)
    return path.read_bytes()


def _resume_from(path, shapes16, model=None, config=BASE_CONFIG, data=None):
    model = tiny_unet() if model is None else model
    data = shapes16 if data is None else data
    return train(model, data, linear_schedule(), replace(config, steps=3), checkpoint_path=path, **QUIET)


def test_a_matching_checkpoint_resumes(tmp_path, shapes16, base_checkpoint):
    path = tmp_path / "run.pt"
    path.write_bytes(base_checkpoint)
    assert _resume_from(path, shapes16).start_step == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_checkpoint_is_a_checkpoint_error(damage, tmp_path, shapes16, base_checkpoint):
    path = tmp_path / "run.pt"
    truncated = base_checkpoint[: len(base_checkpoint) // 2]
    path.write_bytes(b"not a checkpoint at all" if damage == "garbage" else truncated)
    with pytest.raises(CheckpointError, match="corrupt"):
        _resume_from(path, shapes16, model=refuse_calls(tiny_unet()))


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda: {"config": replace(BASE_CONFIG, lr=1e-3)}, "lr"),
        (lambda: {"config": replace(BASE_CONFIG, betas=(0.9, 0.99))}, "betas"),
        (lambda: {"model": tiny_unet(base_channels=8)}, "model_config"),
        (lambda: {"data": Shapes(resolution=16, seed=1, device="cpu").batch(0, 128).images}, "data"),
    ],
    ids=["config", "betas", "architecture", "data"],
)
def test_a_checkpoint_of_another_run_is_a_checkpoint_error(change, named, tmp_path, shapes16, base_checkpoint):
    path = tmp_path / "run.pt"
    path.write_bytes(base_checkpoint)
    with pytest.raises(CheckpointError, match=named) as error:
        _resume_from(path, shapes16, **change())
    assert "Only `steps` may change" in str(error.value)


def test_a_checkpoint_from_before_a_setting_existed_ran_at_its_default(tmp_path, shapes16, base_checkpoint):
    path = tmp_path / "run.pt"
    path.write_bytes(base_checkpoint)
    state = load_checkpoint(path)
    del state["config"]["betas"]  # written before TrainConfig had betas: Adam's default then
    save_checkpoint(state, path)
    assert _resume_from(path, shapes16).start_step == 2
    with pytest.raises(CheckpointError, match=r"betas: \(0.9, 0.999\) then, \(0.9, 0.99\) now"):
        _resume_from(path, shapes16, config=replace(BASE_CONFIG, betas=(0.9, 0.99)))


def test_other_checkpoints_are_refused(tmp_path, shapes16, base_checkpoint):
    path = tmp_path / "run.pt"
    save_checkpoint({"name": "cache", "config": {}, "model": tiny_unet().state_dict(), "extra": {}}, path)
    with pytest.raises(CheckpointError, match="not written by train"):
        _resume_from(path, shapes16)
    path.write_bytes(base_checkpoint)  # at step 2, but only 1 step asked for
    with pytest.raises(CheckpointError, match="past"):
        train(tiny_unet(), shapes16, linear_schedule(), replace(BASE_CONFIG, steps=1), checkpoint_path=path, **QUIET)


def test_load_or_train_caches_the_ema_weights(tmp_path, shapes16):
    config = TrainConfig(steps=3, batch_size=4, ema_decay=0.5)
    trained = {}

    def fit(model):
        result = train(model, shapes16, linear_schedule(), config, **QUIET)
        trained["ema"] = {k: v.clone() for k, v in result.ema_model.state_dict().items()}
        result.ema.copy_to(model)  # cache the EMA weights
        return result.summary()

    cache = {"unet": TINY, "train": asdict(config)}
    model, extra = load_or_train("ddpm_test", cache, tiny_unet, fit, directory=tmp_path)
    assert len(extra["loss_history"]) == 3 and extra["images_per_second"] > 0
    loaded, _ = load_or_train("ddpm_test", cache, tiny_unet, lambda m: pytest.fail("retrained"), directory=tmp_path)
    assert_same(loaded.state_dict(), trained["ema"], "cached weights")


# ----------------------------------------------------------------------------------------------------------
# The general loop: conditions and their dropout, a parameter subset, extra loss terms, a frozen encoder.
# ----------------------------------------------------------------------------------------------------------


@dataclass
class TinyConfig:
    in_channels: int = 3
    resolution: int = 16


class TinyDenoiser(nn.Module):
    """conv, + time embedding (+ class-label embedding), SiLU, conv; remembers the labels it was called with.

    Label ``num_classes`` is the extra "no class" row that condition dropout trains.
    """

    def __init__(self, in_channels: int = 3, resolution: int = 16, num_classes: int = 0, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.config = TinyConfig(in_channels, resolution)
        self.conv_in = nn.Conv2d(in_channels, 8, 3, padding=1)
        self.time = nn.Embedding(1000, 8)
        self.label = nn.Embedding(num_classes + 1, 8) if num_classes else None
        self.conv_out = nn.Conv2d(8, in_channels, 3, padding=1)
        self.seen: list[torch.Tensor] = []

    def forward(self, x, t, class_labels=None):
        h = self.conv_in(x) + self.time(t)[:, :, None, None]
        if class_labels is not None:
            self.seen.append(class_labels.detach().clone())
            h = h + self.label(class_labels)[:, :, None, None]
        return self.conv_out(F.silu(h))


NUM_CLASSES = 5  # Shapes' shape kinds
GENERAL = TrainConfig(steps=8, batch_size=8, lr=1e-2, warmup_steps=2, ema_decay=0.9, checkpoint_every=4, log_every=2)


@pytest.fixture(scope="module")
def labelled16() -> dict[str, torch.Tensor]:
    batch = Shapes(resolution=16, seed=0, device="cpu").batch(0, 128)
    return {"x0": batch.images, "class_labels": batch.attributes["shape"]}


@pytest.fixture(scope="module")
def prior16() -> torch.Tensor:
    """Another set of images, for a second loss term (as DreamBooth's generated class images)."""
    return Shapes(resolution=16, seed=1, device="cpu").batch(0, 32).images


def frozen_encoder() -> nn.Module:
    """(B, 3, 16, 16) -> (B, 4, 8, 8) latents, well outside [-1, 1]."""
    torch.manual_seed(42)
    encoder = nn.Conv2d(3, 4, 2, stride=2)
    with torch.no_grad():
        encoder.weight.mul_(6)
    return encoder


def state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in module.state_dict().items()}


def changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    return {name for name, value in module.state_dict().items() if not torch.equal(before[name], value)}


def test_draw_batch_keeps_conditions_with_their_examples_and_drops_them_together():
    x0 = torch.arange(10.0).view(10, 1, 1, 1).expand(10, 1, 2, 2)
    examples = Examples(x0, {"class_labels": torch.arange(10), "mask": torch.ones(10, 3, dtype=torch.bool)})
    null = {"class_labels": torch.tensor(-1), "mask": torch.zeros(3, dtype=torch.bool)}
    source = Source(examples, 1000, 1.0, torch.Generator().manual_seed(0))
    x, conditions = draw_batch(source, p_uncond=0.25, null_condition=null)

    replay = torch.Generator().manual_seed(0)  # the documented order: indices, then the dropout coins
    index = torch.randint(10, (1000,), generator=replay)
    drop = torch.rand(1000, generator=replay) < 0.25
    assert torch.equal(x[:, 0, 0, 0], index.float())
    assert torch.equal(conditions["class_labels"], torch.where(drop, -1, index))
    assert torch.equal(conditions["mask"].any(dim=1), ~drop)  # all conditions of an example dropped together
    assert torch.equal(source.generator.get_state(), replay.get_state())

    plain = Source(examples, 1000, 1.0, torch.Generator().manual_seed(0))
    draw_batch(plain, p_uncond=0.0, null_condition=null)  # no dropout: the indices are the only draw
    replay = torch.Generator().manual_seed(0)
    torch.randint(10, (1000,), generator=replay)
    assert torch.equal(plain.generator.get_state(), replay.get_state())


def test_a_conditional_model_trains_with_condition_dropout(labelled16):
    config = replace(GENERAL, steps=50, batch_size=32, p_uncond=0.3)
    model = TinyDenoiser(num_classes=NUM_CLASSES)
    null_row = model.label.weight[NUM_CLASSES].clone()
    result = train(model, labelled16, linear_schedule(), config, null_condition={"class_labels": NUM_CLASSES}, **QUIET)
    seen = torch.cat(model.seen)
    assert seen.shape == (50 * 32,)
    dropped = (seen == NUM_CLASSES).float().mean().item()
    assert abs(dropped - 0.3) < 0.05, dropped  # 1,600 coins: the standard deviation is 0.011
    assert set(seen[seen != NUM_CLASSES].tolist()) == set(range(NUM_CLASSES))  # the labels of the examples
    assert not torch.equal(result.model.label.weight[NUM_CLASSES], null_row)  # the "no class" row is trained
    assert all(math.isfinite(v) for v in result.loss_history)

    model = TinyDenoiser(num_classes=NUM_CLASSES)
    train(model, labelled16, linear_schedule(), replace(config, steps=5, p_uncond=0.0), **QUIET)
    assert NUM_CLASSES not in torch.cat(model.seen).tolist()  # p_uncond = 0: every label reaches the model


def test_only_the_trainable_parameters_change(tmp_path, shapes16):
    model = TinyDenoiser()
    before = state(model)
    model.conv_in.bias.requires_grad_(False)  # a flag set by the caller: train() restores it
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    subset = [model.conv_out.weight, model.conv_out.bias]
    path = tmp_path / "run.pt"
    result = train(model, shapes16, linear_schedule(), GENERAL, trainable=subset, checkpoint_path=path, **QUIET)

    assert changed(before, model) == {"conv_out.weight", "conv_out.bias"}  # everything else bitwise unchanged
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert all(p.grad is None for name, p in model.named_parameters() if not name.startswith("conv_out"))
    checkpoint = load_checkpoint(path)
    assert checkpoint["optimizer"]["param_groups"][0]["params"] == [0, 1]  # the optimiser holds the subset...
    assert len(checkpoint["optimizer"]["state"]) == 2
    assert result.ema.parameter_names == ["conv_out.weight", "conv_out.bias"]  # ...and so does the EMA
    assert set(checkpoint["ema"]["model"]) == {"conv_out.weight", "conv_out.bias"}
    assert checkpoint["fingerprint"]["trainable"] == ["conv_out.weight", "conv_out.bias"]
    assert result.ema_model.conv_in.weight is model.conv_in.weight  # shared with the model, not copied
    assert not torch.equal(result.ema_model.conv_out.weight, model.conv_out.weight)  # averaged
    copy = result.ema.copy_to(TinyDenoiser())
    assert_same(copy.state_dict(), result.ema_model.state_dict(), "copy_to")


def test_ema_of_a_parameter_subset():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    ema = EMA(model, decay=0.5, parameters=[model[0].weight])
    assert ema.parameter_names == ["0.weight"] and ema.model[0].bias is model[0].bias
    assert model[0].weight.requires_grad and model[0].bias.requires_grad  # the model's flags are untouched
    start = model[0].weight.detach().clone()
    with torch.no_grad():
        model[0].weight.add_(2.0)
    model.train()(torch.randn(8, 3))  # updates the running statistics
    ema.update()
    torch.testing.assert_close(ema.model[0].weight, start + 1.0)  # 0.5 * start + 0.5 * (start + 2)
    assert torch.equal(ema.model[1].running_mean, model[1].running_mean)  # buffers copied
    saved = ema.state_dict()
    assert set(saved["model"]) == {"0.weight", "1.running_mean", "1.running_var", "1.num_batches_tracked"}
    other = EMA(model, decay=0.5, parameters=[model[0].weight])
    other.load_state_dict(saved)
    assert torch.equal(other.model[0].weight, ema.model[0].weight) and other.num_updates == 1
    with pytest.raises(ValueError, match="other weights"):
        EMA(model, decay=0.5).load_state_dict(saved)
    with pytest.raises(ValueError, match="subset"):
        EMA(model, parameters=[nn.Parameter(torch.zeros(3))])


def recording_loss(calls: list):
    def loss_fn(model, x0, schedule, prediction_type, *, generator, model_kwargs):
        loss = ddpm_loss(model, x0, schedule, prediction_type, generator=generator, model_kwargs=model_kwargs)
        calls.append((x0.shape[0], loss.item()))
        return loss

    return loss_fn


def test_a_loss_term_adds_its_weighted_loss_and_weight_0_is_the_plain_run(shapes16, prior16):
    schedule = linear_schedule()
    plain = train(TinyDenoiser(), shapes16, schedule, GENERAL, **QUIET)
    zero = train(TinyDenoiser(), shapes16, schedule, GENERAL, extra_terms=[LossTerm(prior16, weight=0.0)], **QUIET)
    assert_same(zero.model.state_dict(), plain.model.state_dict(), "weights")
    assert_same(zero.ema.state_dict(), plain.ema.state_dict(), "EMA")
    assert zero.loss_history == plain.loss_history

    calls = []
    term = LossTerm(prior16, weight=0.5, batch_size=4)
    config = replace(GENERAL, steps=3, log_every=1)
    loss_fn = recording_loss(calls)
    result = train(TinyDenoiser(), shapes16, schedule, config, loss_fn=loss_fn, extra_terms=[term], **QUIET)
    assert [size for size, _ in calls] == [8, 4] * 3  # the data's batch, then the term's, every step
    expected = [main + 0.5 * prior for (_, main), (_, prior) in zip(calls[::2], calls[1::2], strict=True)]
    assert result.loss_history == pytest.approx(expected, rel=1e-6)
    assert not torch.equal(result.model.conv_out.weight, plain.model.conv_out.weight)


def test_a_model_on_the_latents_of_a_frozen_encoder(shapes16):
    encoder = frozen_encoder()
    encoder_before, model = state(encoder), TinyDenoiser(in_channels=4, resolution=8)
    model_before = state(model)
    result = train(model, shapes16, linear_schedule(), GENERAL, encode=encoder, **QUIET)
    assert not changed(encoder_before, encoder) and all(p.grad is None for p in encoder.parameters())
    assert all(p.requires_grad for p in encoder.parameters())  # frozen by no_grad, not by changing its flags
    assert changed(model_before, model) == set(model_before)  # every parameter of the model trained

    with torch.no_grad():
        latents = encoder(shapes16)  # cached latents: the same run without the encoder in the loop
    assert latents.abs().max() > 2
    with pytest.raises(ValueError, match=re.escape("data_range=None")):
        train(refuse_calls(TinyDenoiser(4, 8)), latents, linear_schedule(), GENERAL, **QUIET)
    cached = train(TinyDenoiser(4, 8), latents, linear_schedule(), GENERAL, data_range=None, **QUIET)
    for (name, a), b in zip(result.model.state_dict().items(), cached.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)


GENERAL_RUNS = {
    "conditional": lambda model: {"null_condition": {"class_labels": NUM_CLASSES}},
    "subset": lambda model: {"trainable": [model.conv_out.weight, model.time.weight]},
    "two-terms": lambda model: {"extra_terms": [LossTerm(Shapes(16, seed=1, device="cpu").batch(0, 16).images, 0.5)]},
    "encoder": lambda model: {"encode": frozen_encoder()},
}


@pytest.mark.parametrize("case", list(GENERAL_RUNS))
def test_general_runs_resume_bit_for_bit(case, tmp_path, labelled16):
    """Train 8 steps straight; train 4, stop, resume to 8: the same checkpoint, bit for bit."""

    def build():
        torch.manual_seed(0)  # the torch RNG state the run starts from does not matter either
        if case == "encoder":
            return TinyDenoiser(in_channels=4, resolution=8)
        return TinyDenoiser(num_classes=NUM_CLASSES) if case == "conditional" else TinyDenoiser()

    data = labelled16 if case == "conditional" else labelled16["x0"]
    config = replace(GENERAL, p_uncond=0.25 if case == "conditional" else 0.0)
    straight, halves = tmp_path / "straight.pt", tmp_path / "halves.pt"
    model = build()
    train(model, data, linear_schedule(), config, checkpoint_path=straight, **GENERAL_RUNS[case](model), **QUIET)
    model = build()
    options = GENERAL_RUNS[case](model)
    train(model, data, linear_schedule(), replace(config, steps=4), checkpoint_path=halves, **options, **QUIET)
    model = build()
    result = train(model, data, linear_schedule(), config, checkpoint_path=halves, **GENERAL_RUNS[case](model), **QUIET)
    assert result.start_step == 4
    a, b = load_checkpoint(straight), load_checkpoint(halves)
    for key in ("model", "ema", "optimizer", "loss_history", "rng", "step", "fingerprint"):
        assert_same(b[key], a[key], key)


@pytest.mark.parametrize(
    ("make", "error", "fix"),
    [
        (lambda d, m: {"data": {"images": d["x0"]}}, ValueError, "without 'x0'"),
        (lambda d, m: {"data": {**d, "class_labels": d["class_labels"][:100]}}, ValueError, "one entry per example"),
        (lambda d, m: {"config": replace(GENERAL, p_uncond=0.1)}, ValueError, "no value for ['class_labels']"),
        (lambda d, m: {"null_condition": {"class_labels": torch.zeros(2)}, "config": replace(GENERAL, p_uncond=0.1)},
         ValueError, "one example's value"),
        (lambda d, m: {"null_condition": {"context": 0}}, ValueError, "not conditions of the data"),
        (lambda d, m: {"data": d["x0"], "config": replace(GENERAL, p_uncond=0.1)}, ValueError, "has none"),
        (lambda d, m: {"trainable": [nn.Parameter(torch.zeros(3))]}, ValueError, "not parameters of the"),
        (lambda d, m: {"trainable": m.conv_out}, TypeError, "not a module"),
        (lambda d, m: {"trainable": []}, ValueError, "empty"),
        (lambda d, m: {"extra_terms": [d["x0"]]}, TypeError, "LossTerm(data="),
        (lambda d, m: {"extra_terms": [LossTerm(d["x0"][:, :1])]}, ValueError, "extra_terms[0].data has 1 channel"),
        (lambda d, m: {"encode": frozen_encoder()}, ValueError, "the encoder's output for data has 4 channel"),
        (lambda d, m: {"encode": 3}, TypeError, "encode must be"),
        (lambda d, m: {"loss_fn": "mse"}, TypeError, "loss_fn"),
    ],
    ids=["no-x0", "condition-length", "no-null", "null-shape", "null-name", "nothing-to-drop", "stranger",
         "module", "empty-subset", "not-a-term", "term-channels", "encoder-channels", "encode", "loss_fn"],
)  # fmt: skip
def test_bad_general_inputs_are_refused_before_training(make, error, fix, labelled16):
    model = refuse_calls(TinyDenoiser(num_classes=NUM_CLASSES))
    inputs = {"data": labelled16, "config": GENERAL, **make(labelled16, model)}
    data, config = inputs.pop("data"), inputs.pop("config")
    with pytest.raises(error, match=re.escape(fix)):
        train(model, data, linear_schedule(), config, **inputs, **QUIET)


def test_loss_term_and_p_uncond_settings_are_checked(prior16):
    with pytest.raises(ValueError, match="weight"):
        LossTerm(prior16, weight=-1.0)
    with pytest.raises(ValueError, match="batch_size"):
        LossTerm(prior16, batch_size=0)
    with pytest.raises(ValueError, match="p_uncond"):
        TrainConfig(p_uncond=1.0)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda m, d: {"data": {"x0": d, "context": torch.zeros(len(d), 1, 4)}}, "conditions"),  # a UNet input
        (lambda m, d: {"trainable": [m.conv_out.weight]}, "trainable"),
        (lambda m, d: {"extra_terms": [LossTerm(d, weight=0.0)]}, "extra_terms"),
        (lambda m, d: {"encode": nn.Conv2d(3, 3, 1)}, "encoder"),
        (lambda m, d: {"loss_fn": recording_loss([])}, "loss_fn"),
    ],
    ids=["conditions", "trainable", "extra-term", "encoder", "loss_fn"],
)
def test_a_plain_checkpoint_does_not_resume_a_general_run(change, named, tmp_path, shapes16, base_checkpoint):
    path = tmp_path / "run.pt"
    path.write_bytes(base_checkpoint)
    model = refuse_calls(tiny_unet())
    options = {"data": shapes16, **change(model, shapes16)}
    data = options.pop("data")
    with pytest.raises(CheckpointError, match=named):
        train(model, data, linear_schedule(), replace(BASE_CONFIG, steps=3), checkpoint_path=path, **options, **QUIET)


# ----------------------------------------------------------------------------------------------------------
# DistributedDataParallel (2 CPU processes, gloo).
# ----------------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_keeps_ranks_identical_and_resumes(tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    worker = [str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), str(_free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("WORLD_SIZE", None)
    process = subprocess.Popen(
        [*launcher, f"--master_port={_free_port()}", *worker],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        output, _ = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers
        output, _ = process.communicate()
        pytest.fail(f"the DDP run did not finish in 240 s:\n{output[-3000:]}")
    assert process.returncode == 0, output[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert any(not torch.equal(ranks[0]["initial"][k], ranks[1]["initial"][k]) for k in ranks[0]["initial"])
    assert_same(ranks[0]["model"], ranks[1]["model"], "rank weights")  # DDP broadcast + averaged gradients
    assert any(not torch.equal(ranks[0]["model"][k], ranks[0]["initial"][k]) for k in ranks[0]["model"])
    assert ranks[0]["loss_history"] == ranks[1]["loss_history"] and len(ranks[0]["loss_history"]) == 4
    # the zero-initialised U-Net outputs 0 at step 1, so each rank's loss is mean(eps^2) ~ 1, and so is their mean
    assert 0.9 < ranks[0]["loss_history"][0] < 1.1
    assert ranks[0]["has_ema"] and not ranks[1]["has_ema"]  # the EMA lives on rank 0
    assert all(r["group_left"] and r["group_kept"] for r in ranks)  # train() leaves only a group it created
    for rank in ranks:  # 2 steps, then a resume to 4, gives the weights of 4 steps straight
        assert rank["resumed_start"] == 2
        assert_same(rank["resumed_model"], rank["model"], "resumed weights")
    # the general loop (condition dropout, a parameter subset, an extra term): rank 0's weights on both ranks,
    # the subset trained, the rest as rank 0 built it
    assert_same(ranks[0]["general_model"], ranks[1]["general_model"], "general loop weights")
    trained = {k for k, v in ranks[0]["general_model"].items() if not torch.equal(v, ranks[0]["general_initial"][k])}
    assert trained == {"label.weight", "conv_out.weight", "conv_out.bias"}

    checkpoint = load_checkpoint(tmp_path / "full.pt")
    assert checkpoint["fingerprint"]["world_size"] == 2 and len(checkpoint["rng"]) == 2
    generators = [checkpoint["rng"][rank]["generators"][0] for rank in (0, 1)]
    assert not torch.equal(*generators)  # seeded with seed + rank


# ----------------------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU).
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("fast", [False, True], ids=["eager", "fast=True"])
def test_cuda_training_has_no_host_sync_per_step(fast):
    """Host syncs happen before training and at log points only: their number does not grow with the steps (with
    fast=True: the capture syncs once per run, whatever the steps)."""
    data = Shapes(resolution=16, seed=0, device="cuda").batch(0, 128).images

    def count_syncs(steps: int) -> int:
        config = TrainConfig(steps=steps, batch_size=8, log_every=1000)
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                result = train(tiny_unet(), data, linear_schedule(), config, device="cuda", progress=False,
                               fast=fast)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        assert not [w for w in caught if issubclass(w.category, FastPathWarning)], "the fast path fell back"
        assert len(result.loss_history) == steps and all(math.isfinite(v) for v in result.loss_history)
        conv = result.model.conv_in.weight
        assert conv.is_cuda and conv.is_contiguous(memory_format=torch.channels_last)
        return sum("synchroniz" in str(w.message) for w in caught)

    count_syncs(WARMUP_STEPS + 2)  # warm-up: cuDNN autotuning, lazy initialisation (and one capture)
    assert count_syncs(5) == count_syncs(25)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_general_loop_has_no_host_sync_per_step():
    """Conditions with dropout, a frozen encoder, a parameter subset and an extra term add no host sync either."""
    batch = Shapes(resolution=16, seed=0, device="cuda").batch(0, 128)
    data = {"x0": batch.images, "class_labels": batch.attributes["shape"]}
    encoder = frozen_encoder()

    def count_syncs(steps: int) -> int:
        config = TrainConfig(steps=steps, batch_size=8, log_every=1000, p_uncond=0.2)
        model = TinyDenoiser(in_channels=4, resolution=8, num_classes=NUM_CLASSES)
        options = {
            "trainable": [model.label.weight, *model.conv_out.parameters()],
            "null_condition": {"class_labels": NUM_CLASSES},
            "encode": encoder,
            "extra_terms": [LossTerm({"x0": data["x0"][:16], "class_labels": data["class_labels"][:16]}, 0.5)],
        }
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                result = train(model, data, linear_schedule(), config, device="cuda", progress=False, **options)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        assert len(result.loss_history) == steps and all(math.isfinite(v) for v in result.loss_history)
        return sum("synchroniz" in str(w.message) for w in caught)

    count_syncs(3)
    assert count_syncs(5) == count_syncs(25)


@pytest.mark.parametrize("world_size, error", [(1, "needs a CUDA device"), (2, "one process")])
def test_the_fast_path_says_what_it_needs(world_size, error):
    """fast=True: a CUDA graph of the step, one process on a CUDA device; anything else is refused, not ignored."""
    with pytest.raises(ValueError, match=error):
        check_fast(torch.device("cpu" if world_size == 1 else "cuda"), world_size)


def test_fast_training_on_a_cpu_is_refused_before_training(shapes16):
    with pytest.raises(ValueError, match="fast=False"):
        train(refuse_calls(tiny_unet()), shapes16, linear_schedule(), TrainConfig(steps=2, batch_size=4), fast=True,
              **QUIET)


FAST_STEPS = WARMUP_STEPS + 21  # a few eager steps, one capture, twenty replays
FAST_CONFIG = TrainConfig(steps=FAST_STEPS, batch_size=16, lr=1e-3, warmup_steps=10, log_every=7, checkpoint_every=12)


def assert_same_training(fast: TrainResult, eager: TrainResult, initial: dict[str, torch.Tensor]) -> None:
    """The fast run took the eager run's steps: weights (and EMA weights) apart by less than 5% of how far training
    moved them, loss histories within 5%. Mixed precision and atomics in cuDNN's backward make bit-equality too much
    to ask of two GPU runs; a wrong learning rate, EMA weight or random stream is far outside this."""
    assert len(fast.loss_history) == len(eager.loss_history) == FAST_STEPS
    losses = torch.tensor(fast.loss_history), torch.tensor(eager.loss_history)
    assert torch.allclose(*losses, rtol=0.05), f"loss histories differ: {losses}"
    for name, a, b, start in (("weights", fast.model, eager.model, initial),
                              ("EMA weights", fast.ema.model, eager.ema.model, initial)):
        a, b = ({k: v.float().cpu() for k, v in m.state_dict().items()} for m in (a, b))
        moved = sum(float((b[k] - start[k].float().cpu()).norm() ** 2) for k in b) ** 0.5
        apart = sum(float((a[k] - b[k]).norm() ** 2) for k in b) ** 0.5
        assert apart < 0.05 * moved, f"{name}: fast and eager {apart:.3g} apart, training moved them {moved:.3g}"
    assert fast.ema.num_updates == eager.ema.num_updates == FAST_STEPS


def fp16_precision() -> Precision:
    return Precision("cuda", torch.float16, True, "fp16 with a GradScaler, as on a T4")


@pytest.mark.filterwarnings("error::dlcourse.fast_path.FastPathWarning")  # a fallback would train eagerly
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("half", [False, True], ids=["default precision", "fp16 + GradScaler"])
def test_cuda_fast_training_takes_the_eager_steps(half):
    """train(fast=True) replays a captured step; it must train the model the eager loop trains."""
    data = Shapes(resolution=16, seed=0, device="cuda").batch(0, 256).images
    initial = tiny_unet().state_dict()
    options = {"device": "cuda", "progress": False, "precision": fp16_precision() if half else None}
    eager = train(tiny_unet(), data, linear_schedule(), FAST_CONFIG, **options)
    fast = train(tiny_unet(), data, linear_schedule(), FAST_CONFIG, fast=True, **options)
    assert_same_training(fast, eager, initial)


@pytest.mark.filterwarnings("error::dlcourse.fast_path.FastPathWarning")  # a fallback would train eagerly
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fast_training_resumes_and_reads_losses_back(tmp_path):
    """Stop at a checkpoint (step 12) and resume fast: the run of one go, and a loss per step, log points apart."""
    data = Shapes(resolution=16, seed=0, device="cuda").batch(0, 256).images
    initial = tiny_unet().state_dict()
    options = {"device": "cuda", "progress": False, "fast": True}
    one_go = train(tiny_unet(), data, linear_schedule(), FAST_CONFIG, **options)
    first = train(tiny_unet(), data, linear_schedule(), replace(FAST_CONFIG, steps=12),
                  checkpoint_path=tmp_path / "run.pt", **options)
    assert first.steps == 12 and len(first.loss_history) == 12
    resumed = train(tiny_unet(seed=1), data, linear_schedule(), FAST_CONFIG, checkpoint_path=tmp_path / "run.pt",
                    **options)
    assert resumed.start_step == 12
    assert all(math.isfinite(v) and v > 0 for v in resumed.loss_history)
    assert_same_training(resumed, one_go, initial)


@pytest.mark.filterwarnings("error::dlcourse.fast_path.FastPathWarning")  # a fallback would train eagerly
@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_fast_general_loop_takes_the_eager_steps():
    """Conditions with dropout, a frozen encoder, a parameter subset and an extra term, captured too."""
    batch = Shapes(resolution=16, seed=0, device="cuda").batch(0, 256)
    data = {"x0": batch.images, "class_labels": batch.attributes["shape"]}
    encoder = frozen_encoder()

    def run(fast: bool) -> tuple[TrainResult, dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        model = TinyDenoiser(in_channels=4, resolution=8, num_classes=NUM_CLASSES)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        result = train(
            model, data, linear_schedule(), replace(FAST_CONFIG, p_uncond=0.2), device="cuda", progress=False,
            fast=fast, trainable=[model.label.weight, *model.conv_out.parameters()],
            null_condition={"class_labels": NUM_CLASSES}, encode=encoder,
            extra_terms=[LossTerm({"x0": data["x0"][:16], "class_labels": data["class_labels"][:16]}, 0.5)],
        )
        return result, initial

    (eager, initial), (fast, _) = run(False), run(True)
    assert_same_training(fast, eager, initial)
