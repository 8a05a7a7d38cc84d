"""Training a chosen subset of a model's parameters (LoRA's matrices, one embedding row, a new layer).

:func:`select_trainable` checks the subset and names it; :func:`train_only` freezes everything else for the
duration of a run (``requires_grad=False``, so no gradient is computed or stored for it) and restores every
flag afterwards. The optimiser, the gradient clipping and the EMA get the subset only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from torch import nn

__all__ = ["select_trainable", "train_only"]


def select_trainable(
    model: nn.Module, trainable: Iterable[nn.Parameter] | None
) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) pairs of the parameters to train, in the model's order.

    trainable: parameters of ``model`` (e.g. ``[p for n, p in model.named_parameters() if "lora" in n]``);
    None: every parameter that requires a gradient.
    """
    named = list(model.named_parameters())
    if trainable is None:
        chosen = [(name, p) for name, p in named if p.requires_grad]
        if not chosen:
            raise ValueError(
                f"No parameter of the {type(model).__name__} requires a gradient, so there is nothing to train. "
                "Pass trainable=[...] with the parameters to train."
            )
        return chosen
    if isinstance(trainable, nn.Module):
        raise TypeError("trainable takes parameters, not a module: pass trainable=list(module.parameters()).")
    trainable = list(trainable)
    not_parameters = [type(p).__name__ for p in trainable if not isinstance(p, nn.Parameter)]
    if not_parameters:
        raise TypeError(
            f"trainable must hold nn.Parameter objects of the model, got {sorted(set(not_parameters))}. Pass e.g. "
            "[p for name, p in model.named_parameters() if 'lora' in name]."
        )
    ids = {id(p) for p in trainable}
    if not ids:
        raise ValueError("trainable is empty: pass the parameters to train, or None to train every parameter.")
    chosen = [(name, p) for name, p in named if id(p) in ids]
    if len(chosen) < len(ids):
        strangers = [tuple(p.shape) for p in trainable if id(p) not in {id(q) for _, q in chosen}]
        raise ValueError(
            f"{len(strangers)} parameter(s) in trainable (shapes {strangers[:5]}) are not parameters of the "
            f"{type(model).__name__} being trained. Register them in the model first (e.g. add the LoRA layers "
            "before calling train), and pass parameters of this model instance, not of a copy."
        )
    return chosen


@contextmanager
def train_only(model: nn.Module, parameters: list[nn.Parameter]) -> Iterator[None]:
    """Within the block, exactly ``parameters`` require a gradient; every flag is restored on exit."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    chosen = {id(p) for p in parameters}
    try:
        for p, _ in flags:
            p.requires_grad_(id(p) in chosen)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
