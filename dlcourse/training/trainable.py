"""Training a chosen subset of a model's parameters (LoRA's matrices, one embedding row, a new layer).

train() checks the subset and names it first (:func:`dlcourse.training.run_checks.checked_trainable`);
:func:`train_only` freezes everything else for the duration of a run (``requires_grad=False``, so no gradient is
computed or stored for it) and restores every flag afterwards. The optimiser, the gradient clipping and the EMA
get the subset only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

from dlcourse.training.run_checks import check_train_only

__all__ = ["train_only"]


@contextmanager
def train_only(model: nn.Module, parameters: list[nn.Parameter]) -> Iterator[None]:
    """Within the block, exactly ``parameters`` require a gradient; every flag is restored on exit."""
    check_train_only(model, parameters)
    flags = [(p, p.requires_grad) for p in model.parameters()]
    chosen = {id(p) for p in parameters}
    try:
        for p, _ in flags:
            p.requires_grad_(id(p) in chosen)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
