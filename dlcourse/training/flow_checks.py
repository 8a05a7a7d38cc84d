"""Input checks of the flow matching loss (:class:`~dlcourse.training.flow_loss.FlowMatchingLoss`), kept out of the
file a notebook reads.

Each check raises an error that says what was wrong and how to fix it. The settings are checked once, when the loss
is made; :func:`check_flow_training` once before :func:`~dlcourse.training.train`'s first step; the call check runs
in every training step and reads no tensor values, except an explicitly passed ``t`` (one host sync; train()
never passes one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from dlcourse.argument_checks import check_instance, check_number, check_tensor, describe

__all__ = ["check_flow_loss_call", "check_flow_matching_loss", "check_flow_training", "check_no_schedule"]


def check_flow_matching_loss(
    t_distribution: Any, logit_mean: Any, logit_std: Any, paired_noise: Any, distributions: tuple[str, ...]
) -> None:
    """FlowMatchingLoss(t_distribution, logit_mean, logit_std, paired_noise)."""
    if t_distribution not in distributions:
        raise ValueError(
            f"FlowMatchingLoss: t_distribution must be one of {distributions}, got {t_distribution!r}. 'uniform' "
            "draws t ~ U[0, 1] (Liu et al. 2023); 'logit_normal' draws t = sigmoid(n), n ~ N(logit_mean, logit_std^2), "
            "which puts more training on the middle of the path (Esser et al. 2024, Sec. 3.1)."
        )
    check_number("FlowMatchingLoss", "logit_mean", logit_mean, fix="SD3 uses 0 (its default).")
    check_number(
        "FlowMatchingLoss", "logit_std", logit_std, 0, above=True,
        fix="It is the standard deviation s of n ~ N(m, s^2) in t = sigmoid(n); SD3 uses 1 (the default).",
    )  # fmt: skip
    if paired_noise is not None and (not isinstance(paired_noise, str) or paired_noise == "x0"):
        raise ValueError(
            f"FlowMatchingLoss: paired_noise must be None (fresh noise for every example) or the name of the data "
            f"entry holding each example's noise, e.g. 'noise' with data={{'x0': samples, 'noise': noise}} (reflow); "
            f"got {describe(paired_noise)}."
        )


def check_no_schedule(schedule: Any) -> None:
    """Flow matching has no noise schedule: its path x_t = (1 - t) x0 + t eps is fixed."""
    if schedule is not None:
        raise ValueError(
            f"FlowMatchingLoss got a noise schedule ({type(schedule).__name__}), but flow matching has none: its path "
            "x_t = (1 - t) x0 + t eps is fixed. Pass schedule=None, e.g. train(model, data, None, config, "
            "loss_fn=FlowMatchingLoss())."
        )


def check_flow_training(
    loss_fn: Any, schedule: Any, conditions: Mapping[str, Tensor], p_uncond: float
) -> dict[str, Tensor]:
    """train() with a FlowMatchingLoss, before the first step: no schedule; the paired noise (if any) in the data,
    and no condition dropout, which would replace each dropped example's noise with the null condition's value.
    Returns the conditions the model is called with: the data's, without the paired noise (the loss reads it)."""
    check_no_schedule(schedule)
    key = loss_fn.paired_noise
    if key is None:
        return dict(conditions)
    if key not in conditions:
        raise ValueError(
            f"FlowMatchingLoss(paired_noise={key!r}) reads each example's noise from the data entry {key!r}, but the "
            f"data has {sorted(conditions) or 'no entries besides x0'}. Pass the reflow pairs as data={{'x0': samples, "
            f"{key!r}: noise}} (see dlcourse.sampling.flow_paths.reflow_pairs)."
        )
    if p_uncond > 0:
        raise ValueError(
            f"TrainConfig.p_uncond={p_uncond} would replace the paired noise of each dropped example with a null value "
            f"together with its conditions, breaking the (noise, sample) pairs reflow trains on. Train the reflow "
            f"model with p_uncond=0."
        )
    return {name: value for name, value in conditions.items() if name != key}


def check_flow_loss_call(
    schedule: Any,
    x0: Any,
    t: Any,
    eps: Any,
    model_kwargs: Mapping[str, Any] | None,
    paired_noise: str | None,
) -> None:
    """FlowMatchingLoss()(model, x0, schedule, ..., t=, eps=, model_kwargs=): runs in every training step."""
    check_no_schedule(schedule)
    check_tensor("FlowMatchingLoss", "x0", x0, "clean examples (B, C, H, W)", ndim=4, floating=True)
    if model_kwargs is not None:
        check_instance("FlowMatchingLoss", "model_kwargs", model_kwargs, Mapping, "None or a mapping {name: tensor}")
    if paired_noise is not None:
        if eps is not None:
            raise ValueError(
                f"FlowMatchingLoss(paired_noise={paired_noise!r}) reads eps from the batch's {paired_noise!r} entry, "
                "and eps was passed too: pass one of them."
            )
        if paired_noise not in (model_kwargs or {}):
            raise ValueError(
                f"FlowMatchingLoss(paired_noise={paired_noise!r}) needs each example's noise in model_kwargs["
                f"{paired_noise!r}], but the batch has {sorted(model_kwargs or {})}: train on data={{'x0': samples, "
                f"{paired_noise!r}: noise}}."
            )
        eps = model_kwargs[paired_noise]
    if eps is not None:
        check_tensor("FlowMatchingLoss", "eps", eps, "noise of x0's shape", floating=True)
        if eps.shape != x0.shape:
            where = f"the paired noise {paired_noise!r}" if paired_noise is not None else "eps"
            raise ValueError(
                f"FlowMatchingLoss: {where} has shape {tuple(eps.shape)} but x0 has {tuple(x0.shape)}: each example "
                "needs noise of its own shape (with a frozen encoder: the latents' shape, so pair noise with cached "
                "latents and pass data_range=None)."
            )
    if t is not None:
        check_tensor("FlowMatchingLoss", "t", t, f"times in [0, 1], one per example ({x0.shape[0]},)", floating=True)
        if tuple(t.shape) != (x0.shape[0],):
            raise ValueError(
                f"FlowMatchingLoss: t must have shape ({x0.shape[0]},), one time per example of x0; got {describe(t)}."
            )
        low, high = torch.aminmax(t.detach())
        low, high = low.item(), high.item()
        if not (0 <= low and high <= 1):  # NaN fails too
            raise ValueError(
                f"FlowMatchingLoss: t must lie in [0, 1] (t = 0: the clean example, t = 1: pure noise); got values in "
                f"[{low:.4g}, {high:.4g}]. The network's timestep is 1000 t: pass t, not 1000 t."
            )
