"""The released models: the course's shared models trained long once, shipped in ``dlcourse/weights/``.

A notebook in cpu mode would otherwise use a model trained for minutes on its own machine. Each release in
:data:`dlcourse.recipes.RELEASES` is a cpu recipe trained longer by the same code (``make release-models``
reproduces them with tools/release_models.py); :mod:`dlcourse.pretrained` loads one where the recipe a notebook
asks for is the release's starting recipe, and trains as before everywhere else.

Each release is one safetensors file (``<name>.safetensors``: the EMA weights under ``ema.``, the raw weights under
``raw.`` where a notebook uses them (RELEASES' "ship_raw"), in float16, and the loss of every step as
``loss_history``) and one entry in ``manifest.json``: the release recipe and its hash, the file's sha256, steps,
seed, wall time, machine, commit, and the figures measured on it.

Taught in notebooks/03_ddpm_training.ipynb, section "What more compute buys: the released model".
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from dlcourse.checkpoints import CheckpointError, write_atomically
from dlcourse.modes import Settings, settings
from dlcourse.recipes import RELEASES

__all__ = [
    "RELEASE_MODE",
    "WEIGHTS_DIR",
    "Release",
    "load_release",
    "matching_release",
    "read_manifest",
    "recipe_hash",
    "release_for",
    "release_recipe",
    "save_release",
    "shipped",
    "starting_recipe",
]

WEIGHTS_DIR = Path(__file__).parent / "weights"
RELEASE_MODE = "cpu"  # the releases are cpu recipes trained longer; gpu mode trains its own, bigger models
_DTYPE = torch.float16  # halves the files; the figures in the manifest are measured on these rounded weights


def release_recipe(name: str) -> Settings:
    """The recipe release ``name`` was trained with: its cpu recipe, variant and training changes applied."""
    spec = _spec(name)
    return settings(spec["recipe"], RELEASE_MODE, **spec["variant"], **spec["training"])


def starting_recipe(name: str) -> Settings:
    """The recipe a notebook asks for that release ``name`` stands in for (cpu recipe plus the variant)."""
    spec = _spec(name)
    return settings(spec["recipe"], RELEASE_MODE, **spec["variant"])


def recipe_hash(recipe: dict[str, Any]) -> str:
    """sha256 of the recipe's values as sorted JSON (the same values name a training run's checkpoint)."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def matching_release(recipe_name: str, recipe: Settings) -> str | None:
    """The release that stands in for ``recipe`` (a recipe of :data:`~dlcourse.recipes.RECIPES` as a notebook
    asked for it), or None: the recipe is in cpu mode and equal, override for override, to a release's start."""
    if recipe.mode != RELEASE_MODE:
        return None
    for name, spec in RELEASES.items():
        if spec["recipe"] == recipe_name and dict(starting_recipe(name)) == dict(recipe):
            return name
    return None


def read_manifest(directory: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The manifest of the shipped weights: release name -> entry ({} when none are shipped)."""
    path = Path(directory or WEIGHTS_DIR) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def shipped(name: str, directory: str | Path | None = None) -> bool:
    """Whether release ``name`` is shipped and was made by the recipe the code has now (else it is stale: the
    recipe changed since, and ``make release-models`` has to make it again)."""
    entry = read_manifest(directory).get(name)
    folder = Path(directory or WEIGHTS_DIR)
    return bool(entry) and (folder / entry["file"]).is_file() and entry["recipe"] == _plain(release_recipe(name))


@dataclass
class Release:
    """A shipped release, loaded: ema and raw state dicts (float16 tensors; raw {} where not shipped), the loss of
    every step, the manifest entry."""

    name: str
    ema: dict[str, Tensor]
    raw: dict[str, Tensor]
    loss_history: list[float]
    entry: dict[str, Any]


def load_release(name: str, directory: str | Path | None = None) -> Release:
    """Read release ``name`` after checking its file against the manifest's sha256 (a changed or truncated file is a
    :class:`~dlcourse.checkpoints.CheckpointError`, never silently other weights) and its recipe against the code's."""
    from safetensors.torch import load

    folder = Path(directory or WEIGHTS_DIR)
    entry = read_manifest(folder).get(name)
    if entry is None:
        raise CheckpointError(
            f"no release {name!r} in {folder / 'manifest.json'}; shipped: {sorted(read_manifest(folder))}. "
            "Run `make release-models` to make them, or train the model (released=False)."
        )
    if entry["recipe"] != _plain(release_recipe(name)):
        raise CheckpointError(
            f"release {name!r} was made by another recipe than dlcourse.recipes has now "
            f"({_differences(entry['recipe'], _plain(release_recipe(name)))}). "
            "Run `make release-models` to make it again, or train the model (released=False)."
        )
    data = (folder / entry["file"]).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(
            f"{folder / entry['file']} does not match its manifest (sha256 {digest[:12]}..., expected "
            f"{entry['sha256'][:12]}...): the file is corrupt or was changed. Reinstall dlcourse or run "
            "`make release-models`."
        )
    tensors = load(data)
    return Release(
        name=name,
        ema={key[4:]: value for key, value in tensors.items() if key.startswith("ema.")},
        raw={key[4:]: value for key, value in tensors.items() if key.startswith("raw.")},
        loss_history=tensors["loss_history"].tolist(),
        entry=entry,
    )


def save_release(
    name: str,
    ema: dict[str, Tensor],
    raw: dict[str, Tensor],
    loss_history: list[float],
    entry: dict[str, Any],
    directory: str | Path | None = None,
) -> dict[str, Any]:
    """Write release ``name`` (weights as float16) and its manifest entry, each atomically; returns the entry.

    raw: the raw weights, or {} to ship the EMA weights alone.
    entry: what to record beside the recipe, its hash, the file and its sha256 (steps, seed, wall time, machine,
    commit, figures).
    """
    from safetensors.torch import save

    folder = Path(directory or WEIGHTS_DIR)
    tensors = {f"ema.{key}": value for key, value in ema.items()} | {f"raw.{key}": value for key, value in raw.items()}
    tensors = {key: (value.to(_DTYPE) if value.is_floating_point() else value).detach().cpu().contiguous()
               for key, value in tensors.items()}
    tensors["loss_history"] = torch.tensor(loss_history, dtype=torch.float32)
    data = save(tensors, metadata={"release": name})
    recipe = _plain(release_recipe(name))
    entry = {
        "file": f"{name}.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "dtype": str(_DTYPE).removeprefix("torch."),
        "recipe": recipe,
        "recipe_hash": recipe_hash(recipe),
        **entry,
    }
    write_atomically(folder / entry["file"], lambda f: f.write(data))
    manifest = read_manifest(folder) | {name: entry}
    text = json.dumps(manifest, indent=1, sort_keys=True) + "\n"
    write_atomically(folder / "manifest.json", lambda f: f.write(text.encode()))
    return entry


def release_for(recipe_name: str, recipe: Settings, released: bool | None) -> str | None:
    """The release :mod:`dlcourse.pretrained` loads for ``recipe`` (asked for as recipe ``recipe_name``) under its
    ``released`` argument (None: where one is shipped; False: never; True: one must fit), or None to train."""
    if released is False:
        return None
    name = matching_release(recipe_name, recipe)
    if name is not None and shipped(name):
        return name
    if released:
        reason = "no release stands in for it" if name is None else f"release {name!r} is not shipped (or stale)"
        raise ValueError(
            f"released=True, but {reason}: the releases are cpu recipes ({sorted(RELEASES)}, dlcourse.recipes), "
            f"asked for {recipe!r}. "
            "Pass released=None to train where no release fits, or run `make release-models`."
        )
    return None


def _spec(name: str) -> dict[str, Any]:
    if name not in RELEASES:
        raise ValueError(f"no release {name!r}; the releases are {sorted(RELEASES)} (dlcourse.recipes.RELEASES)")
    return RELEASES[name]


def _plain(recipe: Settings) -> dict[str, Any]:
    """A recipe's values as JSON would read them back (tuples as lists)."""
    return json.loads(json.dumps(dict(recipe), sort_keys=True))


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(key for key in {*old, *new} if old.get(key) != new.get(key))
    return "; ".join(f"{key}: {old.get(key)!r} then, {new.get(key)!r} now" for key in keys)
