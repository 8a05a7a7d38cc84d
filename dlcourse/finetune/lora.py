"""LoRA: fine-tune a big layer through a small low-rank update (Hu et al. 2021).

A frozen layer W (out x in) gets a trainable update of rank r: W' = W + (alpha / r) * B A, with A (r x in) and
B (out x r). Only A and B train, r (in + out) numbers instead of in x out. B starts at zero, so the wrapped model starts
out exactly equal to the original; A starts random (Kaiming-uniform, as in the paper's code and peft).

    y = W x + b + scale * (alpha / r) * B (A x)        (Hu et al. 2021, Eq. 3; ``scale`` is the inference knob)

For a Conv2d, A is a conv with the layer's kernel, stride and padding into r channels and B a 1x1 conv out of them,
so B A is again a conv of the layer's shape and merges into it.

- :func:`inject_lora` wraps the layers whose names match the patterns (the attention projections by default);
- :func:`lora_parameters` are what to train (``train(..., trainable=lora_parameters(model))``);
- :func:`merge_lora` folds B A into W for inference at no extra cost; :func:`unmerge_lora` restores W bit for bit;
- :func:`set_lora_scale` turns the update up or down at inference;
- saving and loading the adapter alone: :mod:`dlcourse.finetune.adapter`.

Taught in notebooks/07_lora_dreambooth.ipynb, "LoRA, on the page" (the forward written out and checked against
:class:`LoRALinear`) and "The LoRA scale, and merging".
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlcourse.finetune.checks import (
    check_base_layer,
    check_has_lora,
    check_inject_lora,
    check_model,
    check_scale,
    check_targets_matched,
)

__all__ = [
    "DEFAULT_TARGETS",
    "LoRAConv2d",
    "LoRALinear",
    "inject_lora",
    "lora_layers",
    "lora_parameters",
    "merge_lora",
    "set_lora_scale",
    "unmerge_lora",
    "unmerged_lora_layers",
]

# Module-name patterns (fnmatch) of the course U-Net's attention projections: self-attention's qkv and output,
# cross-attention's query, key/value and output.
DEFAULT_TARGETS = ("*.attn.qkv", "*.attn.proj_out", "*.cross_attn.to_q", "*.cross_attn.to_kv", "*.cross_attn.proj_out")


class _LoRA(nn.Module):
    """What LoRALinear and LoRAConv2d share: the frozen base layer, A (lora_down), B (lora_up), merge and unmerge."""

    base: nn.Linear | nn.Conv2d

    def __init__(self, base: nn.Module, down: nn.Module, up: nn.Module, rank: int, alpha: float):
        super().__init__()
        self.base, self.lora_down, self.lora_up = base, down, up
        self.rank, self.alpha, self.scale = rank, float(alpha), 1.0
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))  # A: random, as nn.Linear's default
        nn.init.zeros_(self.lora_up.weight)  # B = 0: the update starts at zero
        self.base.requires_grad_(False)
        self._unmerged_weight: Tensor | None = None  # W before merge_lora, kept to restore it exactly

    @property
    def merged(self) -> bool:
        return self._unmerged_weight is not None

    @property
    def factor(self) -> float:
        """What multiplies B A: (alpha / r) * scale."""
        return self.alpha / self.rank * self.scale

    def delta_weight(self) -> Tensor:
        """The update (alpha / r) * scale * B A, in the shape of the base layer's weight."""
        up, down = self.lora_up.weight.flatten(1), self.lora_down.weight.flatten(1)  # (out, r), (r, in * k * k)
        return self.factor * (up @ down).view_as(self.base.weight)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:  # W already holds the update
            return y
        update = self.lora_up(self.lora_down(x.to(self.lora_down.weight.dtype)))  # no-ops when the dtypes agree
        return y + self.factor * update.to(y.dtype)  # Eq. 3

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self._unmerged_weight = self.base.weight.detach().clone()
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight.copy_(self._unmerged_weight)  # the saved W, not W + BA - BA: bit for bit
            self._unmerged_weight = None


class LoRALinear(_LoRA):
    """``base(x) + (alpha / rank) * scale * up(down(x))`` around a frozen nn.Linear. x: (..., in) -> (..., out)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, dtype: torch.dtype | None = None):
        check_base_layer("LoRALinear", base, nn.Linear, rank, alpha, dtype)
        kw = {"device": base.weight.device, "dtype": dtype or base.weight.dtype, "bias": False}
        down, up = nn.Linear(base.in_features, rank, **kw), nn.Linear(rank, base.out_features, **kw)
        super().__init__(base, down, up, rank, rank if alpha is None else alpha)


class LoRAConv2d(_LoRA):
    """The same around a frozen nn.Conv2d: down is a conv with its kernel, stride and padding into ``rank``
    channels, up a 1x1 conv out of them. x: (B, in, H, W) -> (B, out, H', W')."""

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float | None = None, dtype: torch.dtype | None = None):
        check_base_layer("LoRAConv2d", base, nn.Conv2d, rank, alpha, dtype)
        kw = {"device": base.weight.device, "dtype": dtype or base.weight.dtype, "bias": False}
        down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, base.dilation, **kw)
        up = nn.Conv2d(rank, base.out_channels, 1, **kw)
        super().__init__(base, down, up, rank, rank if alpha is None else alpha)


def inject_lora(
    model: nn.Module,
    rank: int = 4,
    alpha: float | None = None,
    targets: Sequence[str] = DEFAULT_TARGETS,
    dtype: torch.dtype | None = None,
) -> list[str]:
    """Wrap every nn.Linear / nn.Conv2d of ``model`` whose name matches a pattern in ``targets`` (fnmatch, e.g.
    ``"*.cross_attn.to_q"``) in a LoRA layer, in place; freeze every other parameter of the model. alpha: default
    ``rank`` (scale 1). dtype: A and B's dtype (default: the layer's); torch.float32 trains a LoRA on an fp16 model
    under autocast, as peft does (an optimiser step on fp16 weights loses small updates). Returns the wrapped layers'
    names; raises a ValueError if nothing matches."""
    check_inject_lora(model, rank, alpha, targets, dtype, _LoRA)
    names = [
        name for name, module in model.named_modules()
        if isinstance(module, (nn.Linear, nn.Conv2d)) and any(fnmatch.fnmatch(name, p) for p in targets)
    ]  # fmt: skip
    check_targets_matched(model, names, targets, rank)
    model.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        layer = getattr(parent, child)
        wrapper = LoRALinear if isinstance(layer, nn.Linear) else LoRAConv2d
        setattr(parent, child, wrapper(layer, rank, alpha, dtype))
    return names


def lora_layers(model: nn.Module) -> dict[str, _LoRA]:
    """The LoRA layers of ``model`` by module name."""
    check_model("lora_layers", model)
    return {name: module for name, module in model.named_modules() if isinstance(module, _LoRA)}


def unmerged_lora_layers(model: nn.Module, caller: str, inject: str = "inject_lora(model, ...)") -> dict[str, _LoRA]:
    """The LoRA layers of ``model`` for saving them: refused when there are none (``inject`` names the call that
    adds them) or when they are merged into the weights (the file must hold A and B, not W + BA)."""
    layers = lora_layers(model)
    if not layers:
        raise ValueError(f"{caller}: the model has no LoRA layers; call {inject} and train first.")
    if any(layer.merged for layer in layers.values()):
        raise ValueError(f"{caller}: the LoRA layers are merged into the weights; call unmerge_lora(model) first.")
    return layers


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """A and B of every LoRA layer: what to train."""
    check_has_lora("lora_parameters", model)
    return [p for layer in lora_layers(model).values() for p in (layer.lora_down.weight, layer.lora_up.weight)]


def merge_lora(model: nn.Module) -> None:
    """Fold each update into its layer's weight (no extra cost at inference); :func:`unmerge_lora` undoes it."""
    check_has_lora("merge_lora", model)
    for layer in lora_layers(model).values():
        layer.merge()


def unmerge_lora(model: nn.Module) -> None:
    """Restore the weights :func:`merge_lora` changed, bit for bit."""
    check_has_lora("unmerge_lora", model)
    for layer in lora_layers(model).values():
        layer.unmerge()


def set_lora_scale(model: nn.Module, scale: float) -> None:
    """Multiply every update by ``scale`` (0: the base model, 1: as trained). Refused while merged."""
    check_has_lora("set_lora_scale", model)
    check_scale("set_lora_scale", scale)
    layers = lora_layers(model).values()
    if any(layer.merged for layer in layers):
        raise ValueError("set_lora_scale: the LoRA layers are merged; call unmerge_lora(model) first.")
    for layer in layers:
        layer.scale = float(scale)
