"""The T4 path on the CPU: fp16 autocast with a GradScaler, through the package's real train().

A T4 has no bf16, so :func:`~dlcourse.runtime.select_precision` gives it fp16 autocast and a
:class:`torch.amp.GradScaler`. torch runs both on the CPU too, so these tests pass that same
:class:`~dlcourse.runtime.Precision` to train() for the U-Net, the VAE and a LoRA run: the layers really compute in
fp16, the backward pass is scaled by the scaler's scale, the weights stay finite and move; and a step whose gradient
is inf/NaN is skipped by the scaler (weights untouched, scale halved) instead of writing NaN into the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest
import torch
from torch import Tensor, nn

from dlcourse.checkpoints import load_checkpoint
from dlcourse.data import Shapes
from dlcourse.finetune.lora import inject_lora, lora_parameters
from dlcourse.models import VAE, UNet, UNetConfig, VAEConfig, VAELoss
from dlcourse.runtime import Precision
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig, TrainingDiverged, ddpm_loss, train

FP16 = Precision("cpu", torch.float16, True, "fp16 autocast + GradScaler on the CPU: the T4 recipe (test)")
FP32 = Precision("cpu", torch.float32, False, "fp32, no scaler (test)")
INITIAL_SCALE = 2.0**16  # GradScaler's default init_scale; growth only after 2,000 clean steps
CONFIG = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=1, log_every=1, checkpoint_every=1, seed=0)
QUIET = {"device": "cpu", "progress": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class Case:
    """One of the three things the course trains with train(): its model, data, schedule, loss and trainables."""

    model: nn.Module
    data: Tensor
    schedule: NoiseSchedule | None
    loss_fn: Callable[..., Tensor]
    trainable: list[nn.Parameter] | None = None


def _images() -> Tensor:
    return Shapes(resolution=16, seed=0, device="cpu").batch(0, 32).images


def _unet() -> UNet:
    """zero_init=False: like a trained model, gradients reach every layer from the first step (the zero-initialised
    output convolution of a fresh U-Net blocks them, LoRA's too)."""
    torch.manual_seed(0)
    return UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                           num_heads=2, zero_init=False))  # fmt: skip


def make_case(kind: str) -> Case:
    if kind == "unet":
        return Case(_unet(), _images(), NoiseSchedule.from_name("linear"), ddpm_loss)
    if kind == "vae":
        torch.manual_seed(0)
        return Case(VAE(VAEConfig(resolution=16, base_channels=8, groups=4)), _images(), None, VAELoss())
    model = _unet()
    inject_lora(model, rank=2)  # LoRA on the attention projections; only A and B train
    return Case(model, _images(), NoiseSchedule.from_name("cosine", 100), ddpm_loss, lora_parameters(model))


def run(case: Case, precision: Precision, path, loss_fn: Callable[..., Tensor] | None = None, config=CONFIG):
    return train(case.model, case.data, case.schedule, config, loss_fn=loss_fn or case.loss_fn,
                 trainable=case.trainable, precision=precision, checkpoint_path=path, **QUIET)  # fmt: skip


def optimizer_steps(state: dict) -> int:
    """How many steps AdamW actually took (its per-parameter step counter; a skipped step does not count)."""
    return int(state["optimizer"]["state"][0]["step"])


class BadStep:
    """A loss_fn around ``loss_fn`` that records the weights at the start of every step and, at step ``at``, either
    keeps the loss's value but makes its gradient non-finite (``gradient=True``: sqrt(z) at z = 0 is 0, its
    derivative 1 / (2 sqrt(0)) = inf) or makes the loss itself inf (``gradient=False``). ``at=None``: no bad step."""

    def __init__(self, loss_fn: Callable[..., Tensor], at: int | None, gradient: bool = True):
        self.loss_fn, self.at, self.gradient, self.weights = loss_fn, at, gradient, []

    def __call__(self, net: nn.Module, x0: Tensor, *args, **kwargs) -> Tensor:
        self.weights.append([p.detach().clone() for p in net.parameters()])  # before this step's update
        loss = self.loss_fn(net, x0, *args, **kwargs)
        if len(self.weights) == self.at:
            loss = loss + torch.sqrt(loss - loss.detach()) if self.gradient else loss * math.inf
        return loss


def same(a: list[Tensor], b: list[Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("kind", ["unet", "vae", "lora"])
def test_fp16_steps_with_a_grad_scaler_leave_finite_weights_that_moved(kind, tmp_path):
    case = make_case(kind)
    before = {name: value.clone() for name, value in case.model.state_dict().items()}
    outputs = set()  # the dtypes the convolutions and linear layers computed in
    for module in case.model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            module.register_forward_hook(lambda module, args, out: outputs.add(out.dtype))

    result = run(case, FP16, tmp_path / "run.pt")

    assert outputs == {torch.float16}  # autocast really ran the layers in fp16 on the CPU
    after = result.model.state_dict()
    assert all(torch.isfinite(value).all() for value in after.values())
    assert len(result.loss_history) == CONFIG.steps and all(math.isfinite(v) for v in result.loss_history)
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    assert changed
    if kind == "lora":
        assert all(".lora_" in name for name in changed) and any(".lora_up." in name for name in changed)
    state = load_checkpoint(tmp_path / "run.pt")
    skipped = CONFIG.steps - optimizer_steps(state)
    assert skipped < CONFIG.steps  # the weights moved through real optimiser steps...
    assert state["scaler"]["scale"] == INITIAL_SCALE * 0.5**skipped  # ...and the scaler's scale followed the skips


def test_the_backward_pass_is_scaled_by_the_scalers_scale(tmp_path):
    """The gradients that reach the weights in the first fp16 step are the fp32 run's times 2**16 (fp16 rounding
    aside): the loss was multiplied by the scale before backward, and unscaled before clipping and the step."""
    norms = {}
    for name, precision in (("fp16", FP16), ("fp32", FP32)):
        case = make_case("unet")

        def first_gradient(grad: Tensor, name: str = name) -> None:  # the gradient before train() unscales it
            norms.setdefault(name, grad.float().norm().item())

        case.model.time_mlp.mlp[0].weight.register_hook(first_gradient)  # first in the forward, last in the backward
        run(case, precision, tmp_path / f"{name}.pt", config=replace(CONFIG, steps=1))
    assert norms["fp32"] > 0
    assert norms["fp16"] / norms["fp32"] == pytest.approx(INITIAL_SCALE, rel=0.02)


@pytest.mark.parametrize("kind", ["unet", "vae", "lora"])
def test_a_non_finite_gradient_makes_the_scaler_skip_that_step_and_halve_its_scale(kind, tmp_path):
    clean_case, bad_case = make_case(kind), make_case(kind)
    clean, bad = BadStep(clean_case.loss_fn, at=None), BadStep(bad_case.loss_fn, at=2)
    clean_result = run(clean_case, FP16, tmp_path / "clean.pt", loss_fn=clean)
    bad_result = run(bad_case, FP16, tmp_path / "bad.pt", loss_fn=bad)
    clean_state, bad_state = load_checkpoint(tmp_path / "clean.pt"), load_checkpoint(tmp_path / "bad.pt")

    # the clean run took every step at the initial scale, so every difference below is the bad step's
    assert optimizer_steps(clean_state) == CONFIG.steps and clean_state["scaler"]["scale"] == INITIAL_SCALE
    assert all(not same(a, b) for a, b in zip(clean.weights[:-1], clean.weights[1:], strict=True))
    # weights[i] are the weights at the start of step i + 1: step 1 moved them, step 2 (the bad one) did not
    assert same(bad.weights[0], clean.weights[0]) and same(bad.weights[1], clean.weights[1])
    assert same(bad.weights[2], bad.weights[1])
    assert not same(bad.weights[3], bad.weights[2])  # step 3 trains again, at half the scale
    assert optimizer_steps(bad_state) == CONFIG.steps - 1
    assert bad_state["scaler"]["scale"] == INITIAL_SCALE / 2
    # the loss stayed finite (sqrt(0) adds 0), so train() ran to the end with finite weights
    assert bad_result.loss_history[:2] == clean_result.loss_history[:2]
    assert all(math.isfinite(v) for v in bad_result.loss_history)
    assert all(torch.isfinite(value).all() for value in bad_result.model.state_dict().values())


def test_without_a_scaler_the_same_gradient_writes_nan_into_the_weights_and_training_stops(tmp_path):
    """The contrast: in fp32 nothing checks the gradient, AdamW writes NaN into the weights at step 2, and train()
    stops at step 3, the first loss computed with them."""
    case = make_case("unet")
    with pytest.raises(TrainingDiverged) as error:
        run(case, FP32, tmp_path / "run.pt", loss_fn=BadStep(case.loss_fn, at=2))
    assert error.value.step == 3
    assert not all(torch.isfinite(p).all() for p in case.model.parameters())


def test_under_fp16_a_non_finite_loss_still_stops_training(tmp_path):
    """Loss scaling cures gradients that overflow fp16, not a forward pass whose loss is inf: the scaler skips that
    step (the weights stay finite) and train() stops at it by name, as in fp32."""
    case = make_case("unet")
    with pytest.raises(TrainingDiverged) as error:
        run(case, FP16, tmp_path / "run.pt", loss_fn=BadStep(case.loss_fn, at=2, gradient=False))
    assert error.value.step == 2
    assert all(torch.isfinite(p).all() for p in case.model.parameters())
    assert load_checkpoint(tmp_path / "run.pt")["step"] == 1  # the last good checkpoint is kept
