"""An exponential moving average (EMA) of a model's weights, the weights DDPM samples with.

Training noise makes the last iterate of SGD/Adam jitter around a good solution; averaging the iterates
smooths that jitter out. After every optimiser step each averaged weight moves a little towards the live one:

    ema_param <- decay * ema_param + (1 - decay) * param

(Polyak & Juditsky 1992; DDPM samples with an EMA of decay 0.9999, Ho et al. 2020, App. B). Buffers (e.g.
BatchNorm statistics) are not averaged but copied. With ``decay = 0.999`` the average spans roughly the last
1 / (1 - decay) = 1,000 steps.

A short run has a problem: after n steps the average still holds decay ** n of the initial weights (for a
zero-initialised U-Net, a network that outputs zeros). ``warmup=True`` ramps the decay up as updates accumulate,
as TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` and diffusers' ``EMAModel`` (without
``use_ema_warmup``) do:

    decay_n = min(decay, (1 + n) / (10 + n)),   n = number of updates done before this one

so the first update uses 0.1 (the average is 90% the trained weights), decay_n reaches 0.9 after 80 updates,
0.99 after 890 and 0.999 after 8,990. :func:`ema_decay_at` is that formula.

Fine-tuning a few parameters (LoRA, textual inversion) averages only those: ``EMA(model, parameters=subset)``
copies the averaged parameters (and the buffers) and shares every other parameter with the model.

Taught in notebooks/03_ddpm_training.ipynb, section "EMA vs raw weights".
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["EMA", "ema_decay_at"]


def ema_decay_at(num_updates: int, decay: float, warmup: bool) -> float:
    """The decay used by the EMA update that follows ``num_updates`` earlier updates.

    Without warm-up it is ``decay``; with it, ``min(decay, (1 + n) / (10 + n))`` (see the module docstring).
    """
    if not warmup:
        return decay
    return min(decay, (1 + num_updates) / (10 + num_updates))


class EMA:
    """An exponential moving average of ``model``'s parameters, kept in a separate copy of the model.

    ``ema.model`` is a copy of ``model`` in eval mode whose averaged parameters have ``requires_grad=False``:
    call it to sample (``ddim_sample(ema.model, ...)``). Call :meth:`update` after every optimiser step; it
    averages the parameters in one vectorised ``torch._foreach_`` kernel and no host synchronisation.
    :meth:`copy_to` writes the averaged weights into another model of the same architecture (e.g. to cache
    the EMA weights with :func:`dlcourse.checkpoints.load_or_train`).

    model: the model being trained (not a DistributedDataParallel wrapper: pass ``ddp_model.module``).
    decay: in [0, 1); 0 copies the weights at every update, 0.999 averages about the last 1,000 steps.
    warmup: ramp the decay up from 0.1 (see :func:`ema_decay_at`).
    parameters: the parameters of ``model`` to average (None: all of them). The others are not copied:
        ``ema.model`` shares them with ``model`` (they are the frozen part of a fine-tuning run), and
        :meth:`state_dict` leaves them out. ``ema.parameter_names`` names the averaged ones.
    """

    def __init__(
        self,
        model: nn.Module,
        decay: float = 0.999,
        warmup: bool = False,
        parameters: Iterable[nn.Parameter] | None = None,
    ):
        if not isinstance(model, nn.Module):
            raise TypeError(f"EMA averages the weights of an nn.Module, got {type(model).__name__}.")
        if isinstance(model, nn.parallel.DistributedDataParallel):
            raise TypeError("Pass the wrapped model, ddp_model.module, so the EMA copy is a plain module.")
        if not 0.0 <= decay < 1.0:
            raise ValueError(
                f"decay must be in [0, 1) (the weight the average keeps at each update, e.g. 0.999); got {decay!r}."
            )
        named = list(model.named_parameters())
        chosen = {id(p) for _, p in named} if parameters is None else {id(p) for p in parameters}
        if not chosen or not chosen <= {id(p) for _, p in named}:
            raise ValueError(
                "parameters must be a non-empty subset of the model's parameters (e.g. the LoRA parameters of "
                "this model instance), or None to average all of them."
            )
        self.source = model
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        # Positions (in model.parameters() order) of the averaged parameters; the others are shared, not copied.
        self._averaged = [i for i, (_, p) in enumerate(named) if id(p) in chosen]
        self.parameter_names = [named[i][0] for i in self._averaged]
        shared = {id(p): p for _, p in named if id(p) not in chosen}  # deepcopy's memo: "copy" these to themselves
        self.model = copy.deepcopy(model, memo=shared).eval()
        averaged = set(self._averaged)
        for i, p in enumerate(self.model.parameters()):
            if i in averaged:
                p.requires_grad_(False)

    @property
    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        return ema_decay_at(self.num_updates, self.decay, self.warmup)

    def _pairs(self, other: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list]:
        """(averaged ema params, other's matching params, ema buffers, other's buffers), matched by position."""
        ema_params, params = list(self.model.parameters()), list(other.parameters())
        ema_buffers, buffers = list(self.model.buffers()), list(other.buffers())
        if len(ema_params) != len(params) or len(ema_buffers) != len(buffers):
            raise ValueError(
                f"The model has {len(params)} parameters and {len(buffers)} buffers, the EMA copy "
                f"{len(ema_params)} and {len(ema_buffers)}: the architecture changed after the EMA was created. "
                "Create the EMA after every change to the model (e.g. after adding LoRA layers)."
            )
        ema_params, params = [ema_params[i] for i in self._averaged], [params[i] for i in self._averaged]
        return ema_params, params, ema_buffers, buffers

    @torch.no_grad()
    def update(self) -> None:
        """One EMA step: ema_param <- decay * ema_param + (1 - decay) * param; buffers are copied."""
        self.average(1.0 - self.current_decay)
        self.num_updates += 1

    @torch.no_grad()
    def average(self, weight: float | torch.Tensor) -> None:
        """The kernel of :meth:`update` alone: ema_param <- ema_param + weight * (param - ema_param), no counting.

        weight: 1 - decay, a number, or a 0-d tensor on the device whose value is read when the kernel runs: the
        captured training step (:mod:`dlcourse.training.graphed`) fills it before each replay with
        1 - :attr:`current_decay` and counts the update itself.
        """
        ema_params, params, ema_buffers, buffers = self._pairs(self.source)
        # lerp_(ema, param, w) = ema + w * (param - ema) = (1 - w) * ema + w * param: the update above.
        if isinstance(weight, torch.Tensor):
            torch._foreach_lerp_(ema_params, params, [weight] * len(params))  # lerp with a tensor weight each
        else:
            torch._foreach_lerp_(ema_params, params, weight)
        if buffers:
            torch._foreach_copy_(ema_buffers, buffers)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> nn.Module:
        """Write the averaged parameters (and the buffers) into ``model``, which must have the same architecture.

        Returns ``model``. Use it to sample with, or to cache, the EMA weights in a model of your own. Parameters
        the EMA does not average are left as they are in ``model``.
        """
        ema_params, params, ema_buffers, buffers = self._pairs(model)
        torch._foreach_copy_(params, ema_params)
        if buffers:
            torch._foreach_copy_(buffers, ema_buffers)
        return model

    def _own_state(self) -> dict[str, torch.Tensor]:
        """The entries of ``ema.model.state_dict()`` this EMA owns: the averaged parameters and the buffers."""
        shared = {name for name, _ in self.model.named_parameters()} - set(self.parameter_names)
        return {name: value for name, value in self.model.state_dict().items() if name not in shared}

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and the update counter: plain values and tensors, safe to save in a checkpoint."""
        return {"decay": self.decay, "warmup": self.warmup, "num_updates": self.num_updates, "model": self._own_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; raises if it was saved with another decay, architecture or subset."""
        if (state.get("decay"), state.get("warmup")) != (self.decay, self.warmup):
            raise ValueError(
                f"This EMA has decay={self.decay}, warmup={self.warmup} but the state was saved with "
                f"decay={state.get('decay')}, warmup={state.get('warmup')}. Create the EMA with the saved settings."
            )
        own, saved = self._own_state(), state["model"]
        if own.keys() != saved.keys():
            raise ValueError(
                f"The EMA state averages other weights than this EMA (missing {sorted(own.keys() - saved.keys())[:5]},"
                f" unexpected {sorted(saved.keys() - own.keys())[:5]}): create the EMA with the same model and "
                "parameters as the one that was saved."
            )
        mismatched = [
            f"{name}: {tuple(saved[name].shape)} saved, {tuple(value.shape)} here"
            for name, value in own.items()
            if value.shape != saved[name].shape
        ]
        if mismatched:
            raise ValueError(f"The EMA state was saved from another architecture: {'; '.join(mismatched[:5])}.")
        self.model.load_state_dict(saved, strict=False)  # strict=False: the shared parameters are not in it
        self.num_updates = int(state["num_updates"])
