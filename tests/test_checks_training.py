"""train()'s conditions, trainable and extra_terms, and the public helpers behind them (draw_batch,
drop_conditions, train_only), refuse bad arguments before any step with an error naming the argument."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlcourse.data import Shapes
from dlcourse.models import UNet, UNetConfig
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import LossTerm, TrainConfig, train
from dlcourse.training.batches import Examples, Source, draw_batch, drop_conditions
from dlcourse.training.trainable import train_only

N, L, D = 32, 3, 8
CONFIG = TrainConfig(steps=2, batch_size=4, log_every=1)


def model() -> UNet:
    torch.manual_seed(0)
    return UNet(UNetConfig(resolution=16, base_channels=8, channel_mults=(1, 2), attention_resolutions=(), num_heads=2,
                           context_dim=D))  # fmt: skip


@pytest.fixture(scope="module")
def data() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "x0": Shapes(resolution=16, seed=0, device="cpu").batch(0, N).images,
        "context": torch.randn(N, L, D, generator=g),
        "context_mask": torch.ones(N, L, dtype=torch.bool),
    }


def test_a_conditional_run_with_a_subset_and_an_extra_term_passes_the_checks(data):
    net = model()
    term = LossTerm({name: value[:8] for name, value in data.items()}, weight=0.5)
    result = train(net, data, NoiseSchedule.from_name("linear"), CONFIG, trainable=list(net.conv_out.parameters()),
                   extra_terms=(term,), device="cpu", progress=False)  # fmt: skip
    assert len(result.loss_history) == 2


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda d, m: {"extra_terms": LossTerm(d["x0"])}, TypeError,
         r"extra_terms must be a list of LossTerm objects .* got LossTerm\. Wrap a single term in a list"),
        (lambda d, m: {"extra_terms": d["x0"]}, TypeError, r"extra_terms must be a list of LossTerm objects .* Tensor"),
        (lambda d, m: {"extra_terms": [LossTerm(d), "term"]}, TypeError, r"extra_terms\[1\] must be a LossTerm"),
        (lambda d, m: {"extra_terms": [LossTerm(d["x0"][:8])]}, ValueError,
         r"extra_terms\[0\].data has the conditions \[\] but data has \['context', 'context_mask'\]"),
        (lambda d, m: {"extra_terms": [LossTerm({**d, "context": d["context"][:, :2]})]}, ValueError,
         r"extra_terms\[0\].data\['context'\] has per-example shape \(2, 8\) .* but data\['context'\] has \(3, 8\)"),
        (lambda d, m: {"extra_terms": [LossTerm({**d, "context_mask": d["context_mask"].long()})]}, ValueError,
         r"extra_terms\[0\].data\['context_mask'\] .* dtype torch.int64"),
        (lambda d, m: {"data": {**d, "prompt": d["context"]}}, ValueError,
         r"conditions \['context', 'context_mask', 'prompt'\], but UNet.forward.* does not take them"),
        (lambda d, m: {"data": {**d, "context": d["context"].clone().fill_(float("nan"))}}, ValueError,
         r"data\['context'\] contains NaN or inf values"),
        (lambda d, m: {"data": {**d, "context": [0.0] * N}}, ValueError, r"data\['context'\] must be a tensor"),
        (lambda d, m: {"trainable": m.conv_out.weight}, TypeError,
         r"trainable must be a list of parameters[,;] got a single Parameter of shape \(3, 8, 3, 3\).*\[parameter\]"),
        (lambda d, m: {"trainable": 3}, TypeError, r"trainable must be a list of the model's nn.Parameter objects"),
        (lambda d, m: {"trainable": "conv_out"}, TypeError, r"trainable must be a list of the model's nn.Parameter"),
        (lambda d, m: {"trainable": [m.conv_out.weight.detach()]}, TypeError, r"trainable must hold nn.Parameter"),
        (lambda d, m: {"trainable": (p for p in [nn.Parameter(torch.zeros(2))])}, ValueError,
         r"1 parameter\(s\) in trainable \(shapes \[\(2,\)\]\) are not parameters of the UNet"),
    ],
    ids=["one-term", "tensor-terms", "not-a-term", "term-lacks-conditions", "term-shape", "term-dtype",
         "model-takes-no-prompt", "nan-condition", "condition-not-tensor", "one-parameter", "int", "str",
         "tensors", "strangers"],
)  # fmt: skip
def test_bad_conditions_trainable_and_extra_terms_are_refused_before_training(make, error, match, data):
    net = model()
    inputs = {"data": data, **make(data, net)}
    with pytest.raises(error, match=match):
        train(net, inputs.pop("data"), NoiseSchedule.from_name("linear"), CONFIG, **inputs, device="cpu",
              progress=False)  # fmt: skip


def test_drop_conditions_checks_p_uncond_the_null_condition_and_the_generator(data):
    conditions = {"context": data["context"][:4], "context_mask": data["context_mask"][:4]}
    null = {"context": torch.zeros(L, D), "context_mask": torch.ones(L, dtype=torch.bool)}
    g = torch.Generator().manual_seed(0)
    assert drop_conditions(conditions, null, 0.5, g).keys() == conditions.keys()
    for p_uncond, error in ((float("nan"), ValueError), (1.5, ValueError), (-0.1, ValueError), ("0.1", TypeError)):
        with pytest.raises(error, match=r"p_uncond must be a finite number >= 0 and <= 1"):
            drop_conditions(conditions, null, p_uncond, g)
    with pytest.raises(ValueError, match=r"null_condition has no value for \['context_mask'\]"):
        drop_conditions(conditions, {"context": null["context"]}, 0.5, g)
    with pytest.raises(TypeError, match=r"null_condition must be a mapping"):
        drop_conditions(conditions, None, 0.5, g)
    with pytest.raises(TypeError, match=r"generator must be None or a torch.Generator[,;] got 0"):
        drop_conditions(conditions, null, 0.5, 0)


def test_draw_batch_checks_its_source_encoder_and_p_uncond(data):
    source = Source(Examples(data["x0"], {}), 4, 1.0, torch.Generator().manual_seed(0))
    assert draw_batch(source)[0].shape == (4, 3, 16, 16)
    with pytest.raises(TypeError, match=r"draw_batch: source must be a Source .*; got a torch.float32 tensor"):
        draw_batch(data["x0"])
    with pytest.raises(TypeError, match=r"encode must be None or a module or function mapping x0 to latents[,;] got 3"):
        draw_batch(source, encode=3)
    with pytest.raises(ValueError, match=r"p_uncond must be a finite number >= 0 and <= 1[,;] got nan"):
        draw_batch(source, p_uncond=float("nan"))


def test_a_batch_source_checks_its_parts(data):
    examples, g = Examples(data["x0"], {}), torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match=r"Examples: x0 must be the examples \(N, C, H, W\) \(4-D\)"):
        Examples(data["x0"][0], {})
    with pytest.raises(TypeError, match=r"Examples: conditions must be a mapping"):
        Examples(data["x0"], [data["context"]])
    with pytest.raises(ValueError, match=r"Source: batch_size must be an integer >= 1; got 0"):
        Source(examples, 0, 1.0, g)
    with pytest.raises(ValueError, match=r"Source: weight must be a finite number >= 0; got nan"):
        Source(examples, 4, float("nan"), g)
    with pytest.raises(TypeError, match=r"Source: generator must be None or a torch.Generator"):
        Source(examples, 4, 1.0, 0)


def test_train_only_checks_its_model_and_parameters():
    net = model()
    with pytest.raises(TypeError, match=r"train_only: model must be an nn.Module"):
        train_only("net", []).__enter__()
    with pytest.raises(TypeError, match=r"train_only: parameters must be a list of the model's nn.Parameter"):
        train_only(net, net.conv_out.weight).__enter__()
