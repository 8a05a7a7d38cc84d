"""Saving and loading trained models: atomic saves, safe loads, and a "load or train" cache.

- :func:`save_checkpoint` writes to a temporary file in the same folder and renames it over the target, so an
  interrupted save (Ctrl-C, a Colab disconnect, a full disk) never leaves a half-written checkpoint behind.
- :func:`load_checkpoint` uses ``torch.load(weights_only=True)``: a checkpoint can only contain tensors and
  plain Python containers, never code. A corrupt or foreign file raises :class:`CheckpointError`.
- :func:`load_or_train` caches an expensive artifact (a trained DDPM, a feature classifier) under
  ``data/checkpoints/`` keyed by its name and configuration, so any notebook can run on its own in a fresh
  runtime: it loads the model when a matching file exists and trains (then saves) it otherwise.

Taught in notebooks/03_ddpm_training.ipynb, section "One model, cached".
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from dlcourse.runtime import checkpoint_dir

__all__ = [
    "FORMAT",
    "CheckpointError",
    "cache_path",
    "load_checkpoint",
    "load_or_train",
    "load_weights",
    "save_checkpoint",
    "write_atomically",
]

FORMAT = "dlcourse-checkpoint-v1"  # stored in every checkpoint; a file without it was not written here


class CheckpointError(RuntimeError):
    """A checkpoint file is corrupt, was not written by dlcourse, or does not fit the model it is loaded into."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Atomically write ``state`` (tensors, numbers, strings, lists, dicts) to ``path``; returns the path."""
    return write_atomically(path, lambda f: torch.save({"format": FORMAT, **state}, f))


def write_atomically(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it to ``path`` in one step, so a reader
    (or a run interrupted half-way) sees the old file or the new one, never half of one; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, safely (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{path} is empty (0 bytes): the file is corrupt (an interrupted copy, a full disk?). Delete it to retrain."
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated zips, bad pickles, foreign objects
        reason = (str(error).splitlines() or ["no message"])[0][:200]  # EOFError() has an empty message
        raise CheckpointError(
            f"{path} could not be loaded ({type(error).__name__}: {reason}). The file is corrupt (an interrupted "
            "copy?) or holds more than tensors and plain Python values. Delete it to retrain."
        ) from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dlcourse checkpoint (no {FORMAT!r} marker). Delete it to retrain.")
    return state


def load_weights(module: nn.Module, state_dict: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """``module.load_state_dict(state_dict)`` with an error that lists what does not fit, and why it matters."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    mismatched = [
        f"{k}: model {tuple(own[k].shape)} vs {source} {tuple(v.shape)}"
        for k, v in state_dict.items()
        if k in own and own[k].shape != v.shape
    ]
    if missing or unexpected or mismatched:
        problems = [f"missing {missing[:5]}" * bool(missing), f"unexpected {unexpected[:5]}" * bool(unexpected)]
        problems += mismatched[:5]
        raise CheckpointError(
            f"the {source} does not fit this {type(module).__name__} (it was saved from a different architecture or "
            f"config): {'; '.join(p for p in problems if p)}. Build the model with the config stored in the "
            "checkpoint, or delete the file to retrain."
        )
    module.load_state_dict(state_dict)


def cache_path(name: str, config: dict[str, Any], directory: str | Path | None = None) -> Path:
    """``<directory or data/checkpoints>/<name>-<hash of config>.pt``: one file per name and configuration."""
    try:
        canonical = json.dumps(config, sort_keys=True)
    except TypeError as error:
        raise TypeError(f"load_or_train needs a JSON-serialisable config (numbers, strings, lists): {error}") from None
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:10]
    return Path(directory or checkpoint_dir()) / f"{name}-{digest}.pt"


def load_or_train(
    name: str,
    config: dict[str, Any],
    build: Callable[[], nn.Module],
    train: Callable[[nn.Module], dict[str, Any] | None],
    directory: str | Path | None = None,
    retrain: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The model ``name`` for ``config``, loaded from the cache or trained now and cached.

    ``build()`` returns a fresh model; ``train(model)`` trains it in place and may return extra results to keep
    (a loss history, measured figures): plain values, saved beside the weights. The cache file is
    ``<directory or data/checkpoints>/<name>-<hash of config>.pt``, so changing any setting trains a new model
    instead of loading a wrong one. Returns ``(model, extra)``; the model is in eval mode.
    """
    path = cache_path(name, config, directory)
    model = build()
    if path.exists() and not retrain:
        state = load_checkpoint(path)
        if state.get("config") != json.loads(json.dumps(config)):
            raise CheckpointError(f"{path} holds a model for config {state.get('config')}, not {config}. Delete it.")
        load_weights(model, state["model"], source=str(path))
        print(f"loaded {name} from {path}")
        return model.eval(), state.get("extra") or {}
    extra = train(model) or {}
    stored_config = json.loads(json.dumps(config))  # as compared on load: tuples become lists
    save_checkpoint({"name": name, "config": stored_config, "model": model.state_dict(), "extra": extra}, path)
    print(f"trained {name}; cached at {path}")
    return model.eval(), extra
