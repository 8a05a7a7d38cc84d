"""The checks of :func:`~dlcourse.training.train`'s data, model, conditions and loss terms, before its first step.

Each refuses a bad input with what was wrong and how to fix it, before any training time is spent. The data
checks cost one host sync per tensor (its range and sum, which also go into the run's fingerprint); nothing
here runs inside a training step. The checks of how a run is set up (fast path, pieces, trainable parameters, the
extra loss terms given) and of how it goes (the NaN check at log points) are in :mod:`dlcourse.training.run_checks`.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from dlcourse.schedules import NoiseSchedule
from dlcourse.training.batches import Examples
from dlcourse.training.config import LossTerm, TrainConfig
from dlcourse.training.flow_checks import check_flow_training
from dlcourse.training.flow_loss import FlowMatchingLoss
from dlcourse.training.loss import ddpm_loss
from dlcourse.training.run_checks import check_extra_terms, checked_trainable

__all__ = ["CheckedInputs", "check_inputs", "summary"]

_RANGE_TOLERANCE = 1e-3  # as in dlcourse.schedules: a little slack for rounding (e.g. after a resize)
_IMAGE_RANGE = (-1.0, 1.0)


@dataclass
class CheckedInputs:
    """train()'s inputs after the checks (tensors still where the caller put them).

    sources: one (examples, batch size, weight, summary) per batch source: the data first, then each extra term.
    null_condition: {name: one example's value}, the condition dropout replaces conditions with.
    trainable: (name, parameter) pairs of the parameters to train.
    """

    sources: list[tuple[Examples, int, float, dict[str, Any]]]
    null_condition: dict[str, Tensor]
    trainable: list[tuple[str, nn.Parameter]]


def summary(tensor: Tensor) -> dict[str, Any]:
    """Shape, dtype and sum of a tensor (one host sync): enough to tell two datasets apart in a fingerprint."""
    return {"shape": list(tensor.shape), "dtype": str(tensor.dtype), "sum": tensor.sum(dtype=torch.float64).item()}


def check_inputs(
    model: nn.Module,
    data: Tensor | Mapping[str, Tensor],
    schedule: NoiseSchedule | None,
    config: TrainConfig,
    *,
    trainable: Iterable[nn.Parameter] | None,
    null_condition: Mapping[str, Any] | None,
    encode: Callable[[Tensor], Tensor] | None,
    loss_fn: Callable[..., Tensor],
    extra_terms: Sequence[LossTerm],
    data_range: tuple[float, float] | None,
    device: torch.device,
) -> CheckedInputs:
    """Check everything train() was given; raise TypeError/ValueError with the fix at the first problem."""
    config.validate()
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a function with ddpm_loss's signature, got {type(loss_fn).__name__}.")
    if schedule is None and loss_fn is ddpm_loss:
        raise TypeError(
            "schedule is None, but the DDPM loss needs one: pass e.g. NoiseSchedule.from_name('cosine'). To train a "
            "flow model (no schedule), pass loss_fn=FlowMatchingLoss() (dlcourse.training.flow_loss)."
        )
    if schedule is not None and not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule (e.g. NoiseSchedule.from_name('linear')), got {schedule!r}.")
    if encode is not None and not callable(encode):
        raise TypeError(f"encode must be a module or function mapping x0 to latents, got {type(encode).__name__}.")
    if data_range is not None and not (len(data_range) == 2 and data_range[0] < data_range[1]):
        raise ValueError(f"data_range must be a pair (low, high) with low < high, or None; got {data_range!r}.")
    check_extra_terms(extra_terms)
    sources = [(data, config.batch_size, 1.0, "data")]
    sources += [
        (term.data, term.batch_size or config.batch_size, term.weight, f"extra_terms[{i}].data")
        for i, term in enumerate(extra_terms)
    ]
    checked = []
    for source, batch_size, weight, where in sources:
        examples, described = _check_data(source, model, batch_size, data_range, encode, device, where)
        checked.append((examples, batch_size, weight, described))
    _check_conditions_agree([(examples, where) for (examples, *_), (*_, where) in zip(checked, sources, strict=True)])
    conditions = checked[0][0].conditions
    if loss_fn is ddpm_loss:
        _check_model_takes(model, conditions, "the DDPM loss")
    if isinstance(loss_fn, FlowMatchingLoss):  # reflow's paired noise is read by the loss, not passed to the model
        model_conditions = check_flow_training(loss_fn, schedule, conditions, config.p_uncond)
        _check_model_takes(model, model_conditions, "the flow matching loss")
    nulls = _check_null_condition(null_condition, [examples for examples, *_ in checked], config.p_uncond)
    return CheckedInputs(checked, nulls, checked_trainable(model, trainable))


def _check_conditions_agree(sources: list[tuple[Examples, str]]) -> None:
    """Every source gives the model the same conditions: the same names, per-example shapes and dtypes.

    The model is called with each source's conditions in the same step, so an extra term without the data's
    prompt (or with labels of another dtype) would train a different model than the one it is meant to help.
    """
    (first, first_where), *others = sources
    for examples, where in others:
        if examples.conditions.keys() != first.conditions.keys():
            raise ValueError(
                f"{where} has the conditions {sorted(examples.conditions)} but {first_where} has "
                f"{sorted(first.conditions)}: the model takes the same inputs from every source. Give the extra term's "
                "examples the same conditions (e.g. the class prompt's embedding for DreamBooth's prior images)."
            )
        for name, value in examples.conditions.items():
            ref = first.conditions[name]
            if value.shape[1:] != ref.shape[1:] or value.dtype != ref.dtype:
                raise ValueError(
                    f"{where}[{name!r}] has per-example shape {tuple(value.shape[1:])} and dtype {value.dtype}, but "
                    f"{first_where}[{name!r}] has {tuple(ref.shape[1:])} and {ref.dtype}: encode both the same way "
                    "(the same tokenizer, text encoder and dtype)."
                )


def _check_model_takes(model: nn.Module, conditions: Mapping[str, Tensor], loss: str) -> None:
    """The loss calls model(x_t, t, **conditions): the model's forward must take every condition by name."""
    if not conditions:
        return
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # a builtin or C forward: nothing to check against
        return
    try:
        signature.bind(None, None, **dict.fromkeys(conditions))
    except TypeError as error:
        raise ValueError(
            f"{loss} calls model(x_t, t, **conditions) with the data's conditions {sorted(conditions)}, but "
            f"{type(model).__name__}.forward{signature} does not take them ({error}). Name each condition in data "
            "after the forward argument it feeds, e.g. {'x0': images, 'class_labels': labels}."
        ) from None


def _check_data(
    data: Any,
    model: nn.Module,
    batch_size: int,
    data_range: tuple[float, float] | None,
    encode: Callable[[Tensor], Tensor] | None,
    device: torch.device,
    where: str,
) -> tuple[Examples, dict[str, Any]]:
    """Refuse data the model cannot train on; returns the examples and their summary (for the fingerprint)."""
    if isinstance(data, Mapping):
        if "x0" not in data:
            raise ValueError(
                f"{where} is a mapping without 'x0' (it has {sorted(data)}): put the examples (N, C, H, W) under "
                "'x0' and the per-example conditions under the names the model takes, e.g. "
                "{'x0': images, 'class_labels': labels}."
            )
        x0, conditions = data["x0"], {name: value for name, value in data.items() if name != "x0"}
    else:
        x0, conditions = data, {}
    if not isinstance(x0, Tensor):
        hint = " (pass data.images, or {'x0': data.images, 'class_labels': ...})" if hasattr(x0, "images") else ""
        raise TypeError(f"{where} must be a tensor (N, C, H, W) or a mapping with 'x0', got {type(x0).__name__}{hint}.")
    if x0.ndim != 4:
        raise ValueError(
            f"{where} must be a batch of images (N, C, H, W); got shape {tuple(x0.shape)}. A single image "
            "(C, H, W): data.unsqueeze(0); grayscale images (N, H, W): data.unsqueeze(1)."
        )
    if not x0.is_floating_point():
        raise ValueError(
            f"{where} has dtype {x0.dtype}, but the model trains on floats in [-1, 1]. For uint8 pixels in "
            "[0, 255] use dlcourse.data.to_model_range(data.float() / 255)."
        )
    n = x0.shape[0]
    if batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} is larger than {where} ({n} examples). Use a smaller batch_size or more examples."
        )
    for name, value in conditions.items():
        if not isinstance(value, Tensor) or value.ndim == 0 or value.shape[0] != n:
            shape = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"{where}[{name!r}] must be a tensor with one entry per example ({n}, ...), like {where}['x0'] "
                f"({n} examples); got {shape}. Conditions are per example: labels (N,), embeddings (N, L, D)."
            )
    _check_model_input(x0, model, encode, device, where)
    lo, hi = torch.aminmax(x0.detach())
    lo, hi, total = torch.stack([lo.double(), hi.double(), x0.detach().sum(dtype=torch.float64)]).tolist()  # one sync
    if not math.isfinite(total):
        raise ValueError(f"{where} contains NaN or inf values; clean it before training (torch.isfinite(x0).all()).")
    if data_range is not None and (lo < data_range[0] - _RANGE_TOLERANCE or hi > data_range[1] + _RANGE_TOLERANCE):
        raise ValueError(
            f"{where} has values in [{lo:.4g}, {hi:.4g}], but diffusion models train on images in [-1, 1]. Images "
            "in [0, 1]: dlcourse.data.to_model_range(data); in [0, 255]: dlcourse.data.to_model_range(data / 255). "
            "Latents (e.g. cached encoder outputs) have no fixed range: pass data_range=None."
        )
    if tuple(data_range or ()) == _IMAGE_RANGE and lo >= 0:
        warnings.warn(
            f"{where} has no negative values (range [{lo:.4g}, {hi:.4g}]): are these images in [0, 1] instead of "
            "[-1, 1]? If so, train on dlcourse.data.to_model_range(data).",
            stacklevel=4,
        )
    described = {"x0": {"shape": list(x0.shape), "dtype": str(x0.dtype), "sum": total}}
    if conditions:
        described["conditions"] = {name: summary(value) for name, value in conditions.items()}
        _check_finite_conditions(conditions, described["conditions"], where)
    return Examples(x0, dict(conditions)), described


def _check_finite_conditions(conditions: Mapping[str, Tensor], summaries: Mapping[str, Any], where: str) -> None:
    """Float conditions (embeddings) hold no NaN or inf: read from their sums, already computed (no extra sync)."""
    for name, value in conditions.items():
        if value.is_floating_point() and not math.isfinite(summaries[name]["sum"]):
            raise ValueError(
                f"{where}[{name!r}] contains NaN or inf values (its sum is {summaries[name]['sum']}); the model would "
                f"learn NaN from it. Check how it was computed (torch.isfinite({name}).all())."
            )


def _check_model_input(
    x0: Tensor, model: nn.Module, encode: Callable[[Tensor], Tensor] | None, device: torch.device, where: str
) -> None:
    """The channels and resolution of what the model sees (x0, or the encoder's latents) fit model.config."""
    seen, what = x0, where
    if encode is not None:
        with torch.no_grad():
            seen = encode(x0[:1].to(device))  # one example through the encoder: the latents' shape
        if not isinstance(seen, Tensor) or seen.ndim != 4:
            got = tuple(seen.shape) if isinstance(seen, Tensor) else type(seen).__name__
            raise ValueError(f"encode must return latents (B, C, H, W) for x0 (B, C, H, W), got {got}.")
        what = f"the encoder's output for {where}"
    config = getattr(model, "config", None)
    channels, resolution = getattr(config, "in_channels", None), getattr(config, "resolution", None)
    _, c, h, w = seen.shape
    if channels is not None and c != channels:
        raise ValueError(
            f"{what} has {c} channel(s) but the model expects {channels} (its config's in_channels). Build the "
            f"model with in_channels={c}, or convert the data (grayscale to RGB: data.expand(-1, 3, -1, -1))."
        )
    if resolution is not None and (h, w) != (resolution, resolution):
        raise ValueError(
            f"{what} is {h}x{w} but the model was built for {resolution}x{resolution} (its config's resolution). "
            f"Build the model with resolution={h} or load the data with load_dataset(..., resolution={resolution})."
        )


def _check_null_condition(
    null_condition: Mapping[str, Any] | None, sources: list[Examples], p_uncond: float
) -> dict[str, Tensor]:
    """The null condition as {name: tensor of one example's shape and dtype}; every condition needs one."""
    conditions: dict[str, Tensor] = {}
    for examples in sources:
        for name, value in examples.conditions.items():
            conditions.setdefault(name, value)
    if p_uncond > 0 and not conditions:
        raise ValueError(
            f"TrainConfig.p_uncond={p_uncond} drops conditions, but the data has none. Pass the data as a mapping, "
            "e.g. {'x0': images, 'class_labels': labels}, or set p_uncond=0."
        )
    null_condition = dict(null_condition or {})
    if p_uncond > 0 and conditions.keys() - null_condition.keys():
        missing = sorted(conditions.keys() - null_condition.keys())
        raise ValueError(
            f"TrainConfig.p_uncond={p_uncond} replaces each condition by its null value, but null_condition has no "
            f"value for {missing}. Pass null_condition={{name: one example's value}}, e.g. the label of the extra "
            "'no class' row of the label embedding, or the embedding of the empty prompt."
        )
    if null_condition.keys() - conditions.keys():
        raise ValueError(
            f"null_condition has values for {sorted(null_condition.keys() - conditions.keys())}, which are not "
            f"conditions of the data ({sorted(conditions)})."
        )
    if null_condition and p_uncond == 0:
        warnings.warn("null_condition is used only when TrainConfig.p_uncond > 0; it is ignored.", stacklevel=4)
    nulls = {}
    for name, value in null_condition.items():
        null = torch.as_tensor(value)
        example_shapes = {tuple(e.conditions[name].shape[1:]) for e in sources if name in e.conditions}
        shape = example_shapes.pop()
        if example_shapes or tuple(null.shape) not in (shape, (1, *shape)):
            raise ValueError(
                f"null_condition[{name!r}] has shape {tuple(null.shape)}, but one example of the condition has "
                f"shape {shape} (every data source must agree): pass one example's value."
            )
        nulls[name] = null.reshape(shape).to(conditions[name].dtype)
    return nulls
