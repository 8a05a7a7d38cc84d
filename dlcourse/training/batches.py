"""Drawing one training batch: random examples, their conditions, a frozen encoder, condition dropout.

The training set lives on the device as one tensor of examples x0 (N, C, H, W) and a tensor per condition
(N, ...), e.g. class labels (N,), token embeddings (N, L, D) and their mask (N, L). A batch is a set of random
indices (with replacement) gathered on the device: no DataLoader, no host sync. :func:`draw_batch` then

1. encodes x0 with a frozen encoder, if one is given (latent diffusion: the model learns the latents);
2. replaces each example's conditions by the null condition with probability ``p_uncond`` (classifier-free
   guidance training, Ho & Salimans 2022, Algorithm 1), drawing no random number when ``p_uncond`` is 0.

Random numbers come from the batch source's generator in a fixed order: the indices, then the dropout coins;
the loss then draws t and eps from the same generator (:func:`~dlcourse.training.ddpm_loss`).

Taught in notebooks/03_ddpm_training.ipynb, section "Algorithm 1, the whole loop", which draws its batches the same way
(random indices, then t and eps); condition dropout in notebooks/06_classifier_free_guidance.ipynb, "Prompt
dropout: one network, two predictions"; the frozen encoder has no notebook yet (notebook 05 caches latents instead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from dlcourse.argument_checks import (
    check_callable,
    check_generator_on,
    check_instance,
    check_int,
    check_keys,
    check_number,
    check_tensor,
)

__all__ = ["Examples", "Source", "draw_batch", "drop_conditions"]


@dataclass
class Examples:
    """A training set: x0 (N, C, H, W) and per-example conditions {name: (N, ...)}, passed to the model by name."""

    x0: Tensor
    conditions: dict[str, Tensor]

    def __post_init__(self) -> None:
        check_tensor("Examples", "x0", self.x0, "the examples (N, C, H, W)", ndim=4)
        check_instance("Examples", "conditions", self.conditions, Mapping, "a mapping {name: (N, ...) tensor}")

    def to(self, device: torch.device, memory_format: torch.memory_format) -> Examples:
        return Examples(
            self.x0.to(device, memory_format=memory_format),
            {name: value.to(device) for name, value in self.conditions.items()},
        )


@dataclass
class Source:
    """Where one loss term draws its batches: the examples, the batch size, the term's weight, its generator."""

    examples: Examples
    batch_size: int
    weight: float
    generator: torch.Generator

    def __post_init__(self) -> None:
        check_instance("Source", "examples", self.examples, Examples, "an Examples (x0 and its conditions)")
        check_int("Source", "batch_size", self.batch_size, 1)
        check_number("Source", "weight", self.weight, 0)
        check_generator_on("Source", "generator", self.generator, self.examples.x0.device)


def draw_batch(
    source: Source,
    *,
    encode: Callable[[Tensor], Tensor] | None = None,
    p_uncond: float = 0.0,
    null_condition: dict[str, Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One batch of ``source``: (x0 (B, C, H, W), conditions {name: (B, ...)}), B = source.batch_size.

    encode: a frozen encoder applied to x0 under no_grad (None: train on x0 as it is).
    p_uncond, null_condition: condition dropout, see :func:`drop_conditions`.
    """
    check_instance("draw_batch", "source", source, Source, "a Source (examples, batch size, weight, generator)")
    check_callable("draw_batch", "encode", encode, "a module or function mapping x0 to latents", optional=True)
    check_number("draw_batch", "p_uncond", p_uncond, 0, 1, fix="0 keeps every condition.")
    examples, generator = source.examples, source.generator
    # Algorithm 1, line 2: x0 ~ q(x0), random examples (with replacement), drawn on the device
    index = torch.randint(len(examples.x0), (source.batch_size,), device=examples.x0.device, generator=generator)
    x0 = examples.x0[index]
    conditions = {name: value[index] for name, value in examples.conditions.items()}
    if encode is not None:
        with torch.no_grad():  # the encoder is frozen: no gradient, no activations kept for backward
            x0 = encode(x0)
    if p_uncond > 0:
        conditions = drop_conditions(conditions, null_condition or {}, p_uncond, generator)
    return x0, conditions


def drop_conditions(
    conditions: dict[str, Tensor], null_condition: dict[str, Tensor], p_uncond: float, generator: torch.Generator
) -> dict[str, Tensor]:
    """Replace each example's conditions, all together, by the null condition with probability ``p_uncond``.

    conditions: {name: (B, ...)}; null_condition: {name: one example's value (...)}, broadcast over the batch.
    Ho & Salimans 2022, Algorithm 1, line 3: c <- null with probability p_uncond, so one network learns both
    the conditional and the unconditional model that classifier-free guidance combines.
    """
    check_number("drop_conditions", "p_uncond", p_uncond, 0, 1, fix="Ho & Salimans drop 10-20% (0.1 to 0.2).")
    check_instance("drop_conditions", "conditions", conditions, Mapping, "a mapping {name: (B, ...) tensor}")
    check_keys("drop_conditions", "null_condition", null_condition, conditions, "One example's null value each.")
    if not conditions:
        return conditions
    first = next(iter(conditions.values()))
    check_generator_on("drop_conditions", "generator", generator, first.device)
    drop = torch.rand(first.shape[0], device=first.device, generator=generator) < p_uncond  # (B,)
    return {
        name: torch.where(drop.view(-1, *[1] * (value.ndim - 1)), null_condition[name], value)
        for name, value in conditions.items()
    }
