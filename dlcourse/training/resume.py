"""Checkpoints that resume a training run bit-for-bit, and refuse to resume another run.

A checkpoint holds the model and EMA weights, the optimiser and GradScaler states, the step, the loss history,
the config, every random state that influences the run (each process's batch generators, torch's CPU RNG that
dropout uses, the CUDA RNG) and a fingerprint of the run: what, besides the config, must match for the
checkpoint to continue it (the model, the data and its conditions, the noise schedule, the processes, the
device type, and where used the null condition, the encoder, the trainable parameters, the loss function and
the extra loss terms). Only ``TrainConfig.steps`` may differ from the run that wrote it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from dlcourse.checkpoints import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from dlcourse.ema import EMA
from dlcourse.schedules import NoiseSchedule
from dlcourse.training.checks import CheckedInputs
from dlcourse.training.config import TrainConfig
from dlcourse.training.loss import ddpm_loss

__all__ = ["Run", "fingerprint"]

_KIND = "dlcourse-training"  # marks a checkpoint written by train(), as opposed to a load_or_train cache file
_DESCRIPTIONS = {"alpha_bar": "the noise schedule", "null_condition": "the null condition"}


def fingerprint(
    model: nn.Module,
    schedule: NoiseSchedule | None,
    inputs: CheckedInputs,
    *,
    p_uncond: float,
    encode: Any,
    loss_fn: Any,
    world_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """What, besides the config, must match for a checkpoint to continue this run."""
    model_config = getattr(model, "config", None)
    (*_, data), *terms = inputs.sources
    result = {
        "model": type(model).__name__,
        "model_config": asdict(model_config) if is_dataclass(model_config) else None,
        "data": data["x0"],
        "alpha_bar": None if schedule is None else schedule.alpha_bar.detach().cpu(),
        "world_size": world_size,
        "device_type": device.type,
    }
    # The pieces of a more general run, recorded only when used:
    if "conditions" in data:
        result["conditions"] = data["conditions"]
    if p_uncond > 0:
        result["null_condition"] = {name: value.cpu() for name, value in inputs.null_condition.items()}
    if encode is not None:
        result["encoder"] = _describe(encode)
    names = [name for name, _ in inputs.trainable]
    if names != [name for name, _ in model.named_parameters()]:
        result["trainable"] = names
    if loss_fn is not ddpm_loss:
        result["loss_fn"] = _describe(loss_fn)
    if terms:
        result["extra_terms"] = [{"weight": weight, "batch_size": size, **data} for _, size, weight, data in terms]
    return result


def _describe(function: Any) -> dict[str, Any]:
    """A function's name; for a module (or a method of one), its class and a summary of its weights."""
    owner = function if isinstance(function, nn.Module) else getattr(function, "__self__", None)
    name = getattr(function, "__qualname__", type(function).__qualname__)
    described: dict[str, Any] = {"name": f"{getattr(function, '__module__', '')}.{name}"}
    if is_dataclass(function) and not isinstance(function, type):
        described["settings"] = asdict(function)  # e.g. VAELoss(kl_weight=...): another weight is another run
    if isinstance(owner, nn.Module):
        weights = [*owner.parameters(), *owner.buffers()]
        sums = [w.detach().sum(dtype=torch.float64) for w in weights]
        total = torch.stack(sums).sum().item() if sums else 0.0
        described["weights"] = {"numel": sum(w.numel() for w in weights), "sum": total}
    return described


def _same(old: Any, new: Any) -> bool:
    """Equal, recursively; floats (sums of data and weights) up to rounding differences."""
    if isinstance(new, Tensor):
        return isinstance(old, Tensor) and old.shape == new.shape and old.dtype == new.dtype and torch.equal(old, new)
    if isinstance(new, dict):
        return isinstance(old, dict) and old.keys() == new.keys() and all(_same(old[k], new[k]) for k in new)
    if isinstance(new, (list, tuple)):
        return isinstance(old, (list, tuple)) and len(old) == len(new) and all(map(_same, old, new))
    if isinstance(new, float) and isinstance(old, float):
        return math.isclose(old, new, rel_tol=1e-9, abs_tol=1e-6)
    return old == new


def _short(value: Any) -> str:
    text = f"tensor{tuple(value.shape)}" if isinstance(value, Tensor) else repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def fingerprint_differences(saved: dict[str, Any], now: dict[str, Any], prefix: str = "") -> list[str]:
    """The entries of two fingerprints that differ, described for an error message; nested dicts (a model
    config, a loss's settings) are compared entry by entry, so the message names the setting that changed."""
    differences = []
    for key in dict.fromkeys([*now, *saved]):
        old, new = saved.get(key), now.get(key)
        if _same(old, new):
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            differences += fingerprint_differences(old, new, f"{prefix}{key}.")
        else:
            differences.append(_DESCRIPTIONS.get(key) or f"{prefix}{key}: {_short(old)} then, {_short(new)} now")
    return differences


def _rng_state(generators: list[torch.Generator], device: torch.device) -> dict[str, Any]:
    state = {"generators": [g.get_state() for g in generators], "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], generators: list[torch.Generator], device: torch.device) -> None:
    if len(state["generators"]) != len(generators):
        raise ValueError(f"{len(state['generators'])} batch generators saved, {len(generators)} in this run")
    for generator, saved in zip(generators, state["generators"], strict=True):
        generator.set_state(saved)
    torch.set_rng_state(state["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


@dataclass
class Run:
    """The state of one training run that a checkpoint saves and restores."""

    config: TrainConfig
    fingerprint: dict[str, Any]
    model: nn.Module
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generators: list[torch.Generator]  # one per batch source: the data, then each extra loss term
    device: torch.device
    rank: int
    world_size: int
    history: list[float]

    def save(self, path: str | Path, step: int) -> None:
        """Rank 0 writes the checkpoint (atomically) with every process's random state; the others wait."""
        rng_states = [_rng_state(self.generators, self.device)]
        if self.world_size > 1:
            rng_states = [None] * self.world_size
            dist.all_gather_object(rng_states, _rng_state(self.generators, self.device))
        if self.rank == 0:
            state = {
                "kind": _KIND,
                "step": step,
                "config": asdict(self.config),
                "fingerprint": self.fingerprint,
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "loss_history": torch.tensor(self.history, dtype=torch.float64),
                "rng": rng_states,
            }
            save_checkpoint(state, path)
        if self.world_size > 1:
            dist.barrier()

    def resume(self, path: str | Path) -> int:
        """Load the checkpoint at ``path`` into this run after checking it belongs to it; returns its step."""
        state = load_checkpoint(path)
        if state.get("kind") != _KIND:
            raise CheckpointError(
                f"{path} is a dlcourse checkpoint but was not written by train() (a load_or_train cache?), so a "
                "run cannot resume from it. Pass another checkpoint_path."
            )
        saved_config = state.get("config") or {}
        if saved_config:  # a setting added since the checkpoint was written (e.g. betas) ran at its default then
            saved_config = asdict(TrainConfig()) | saved_config
        changed = [
            f"{name}: {saved_config.get(name)!r} then, {value!r} now"
            for name, value in asdict(self.config).items()
            if name != "steps" and saved_config.get(name) != value
        ]
        changed += fingerprint_differences(state.get("fingerprint") or {}, self.fingerprint)
        if changed:
            raise CheckpointError(
                f"{path} was written by a different training run ({'; '.join(changed)}). Only `steps` may change "
                "when resuming. Pass a new checkpoint_path to start another run, or delete the file to start over."
            )
        try:
            step = int(state["step"])
            if step > self.config.steps:
                raise CheckpointError(
                    f"{path} is at step {step}, past TrainConfig.steps={self.config.steps}: training cannot go "
                    f"back. Ask for steps >= {step}, or pass another checkpoint_path."
                )
            load_weights(self.model, state["model"], source=str(path))
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scaler.is_enabled() and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            _set_rng_state(state["rng"][self.rank], self.generators, self.device)
            self.history = state["loss_history"].tolist()
        except CheckpointError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{path} is incomplete or inconsistent ({type(error).__name__}: {error}). Delete it to start over."
            ) from error
        return step
