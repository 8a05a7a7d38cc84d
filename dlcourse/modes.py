"""The three run modes and the sizes each notebook uses in them.

- ``gpu``: full settings, the results the course promises (a CUDA GPU is present);
- ``cpu``: reduced settings a learner without a GPU can finish in minutes;
- ``smoke``: a handful of steps so CI can execute every cell (``DLCOURSE_SMOKE=1``).

The mode is picked automatically (GPU present -> ``gpu``, else ``cpu``); ``DLCOURSE_SMOKE=1`` forces
``smoke`` and ``DLCOURSE_MODE=gpu|cpu|smoke`` forces any mode. A notebook never branches on the mode
itself: its parameters cell calls ``settings("NN_topic")`` and reads every size from the result, so these
tables are the one place where the modes differ. :data:`RECIPES` holds the settings of models that one
notebook trains and later ones reuse (``settings("ddpm_shapes")``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch

__all__ = ["MODES", "NOTEBOOK_SETTINGS", "RECIPES", "Settings", "run_mode", "settings"]

MODES = ("gpu", "cpu", "smoke")

# notebook -> mode -> sizes. Keys are the notebook file names without ".ipynb".
NOTEBOOK_SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "01_forward_process": {
        # n_chain: samples of x_t drawn both ways (closed form, iterated chain) to compare their statistics.
        "gpu": {"resolution": 32, "num_timesteps": 1000, "n_images": 8, "n_chain": 8192, "seed": 0},
        "cpu": {"resolution": 32, "num_timesteps": 1000, "n_images": 8, "n_chain": 1024, "seed": 0},
        "smoke": {"resolution": 32, "num_timesteps": 1000, "n_images": 4, "n_chain": 256, "seed": 0},
    },
    "02_unet": {
        # The U-Net taught in 02 and trained in 03; timing_iters: forward passes averaged for the speed figure.
        "gpu": {"resolution": 32, "batch_size": 64, "base_channels": 64, "channel_mults": (1, 2, 2),
                "num_res_blocks": 2, "timing_iters": 20, "seed": 0},
        "cpu": {"resolution": 32, "batch_size": 16, "base_channels": 32, "channel_mults": (1, 2, 2),
                "num_res_blocks": 1, "timing_iters": 5, "seed": 0},
        "smoke": {"resolution": 32, "batch_size": 4, "base_channels": 16, "channel_mults": (1, 2, 2),
                  "num_res_blocks": 1, "timing_iters": 1, "seed": 0},
    },
    "03_ddpm_training": {
        # sample_steps: DDPM steps for the samples (all 1000 on a GPU; strided on a CPU to stay in minutes).
        # n_eval: samples (and real images a side) for FID/KID; strip_every: steps between denoising-strip frames.
        "gpu": {"n_eval": 2000, "sample_steps": 1000, "sample_batch": 1000, "n_show": 16, "seed": 0},
        "cpu": {"n_eval": 300, "sample_steps": 100, "sample_batch": 300, "n_show": 16, "seed": 0},
        "smoke": {"n_eval": 16, "sample_steps": 4, "sample_batch": 16, "n_show": 4, "seed": 0},
    },
    "04_ddim_sampling": {
        # The steps x sampler table: every cell samples n_eval images from the same noise.
        "gpu": {"n_eval": 2000, "steps": (10, 20, 50, 100, 1000), "sample_batch": 1000, "n_show": 8,
                "n_interpolate": 9, "seed": 0},
        "cpu": {"n_eval": 200, "steps": (10, 20, 50, 100), "sample_batch": 200, "n_show": 8,
                "n_interpolate": 7, "seed": 0},
        "smoke": {"n_eval": 16, "steps": (2, 4), "sample_batch": 16, "n_show": 4, "n_interpolate": 3, "seed": 0},
    },

}


# Shared artifacts: models trained in one notebook and reused by later ones (see dlcourse.pretrained).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "ddpm_shapes": {
        # The unconditional DDPM of notebook 03, reused by 04: a U-Net trained on Shapes with the DDPM loss.
        # v-prediction: at equal compute (CPU recipe, DDIM-50, n=200) it gave FID 46 where eps-prediction gave 466.
        "gpu": {"resolution": 32, "n_train": 50_000, "base_channels": 64, "channel_mults": (1, 2, 2),
                "num_res_blocks": 2, "attention_resolutions": (8,), "schedule": "cosine", "num_timesteps": 1000,
                "prediction_type": "v", "steps": 8000, "batch_size": 128, "lr": 3e-4, "warmup_steps": 200,
                "ema_decay": 0.999, "seed": 0},
        "cpu": {"resolution": 32, "n_train": 10_000, "base_channels": 32, "channel_mults": (1, 2, 2),
                "num_res_blocks": 1, "attention_resolutions": (8,), "schedule": "cosine", "num_timesteps": 1000,
                "prediction_type": "v", "steps": 800, "batch_size": 32, "lr": 5e-4, "warmup_steps": 50,
                "ema_decay": 0.995, "seed": 0},
        "smoke": {"resolution": 32, "n_train": 64, "base_channels": 16, "channel_mults": (1, 2, 2),
                  "num_res_blocks": 1, "attention_resolutions": (8,), "schedule": "cosine", "num_timesteps": 1000,
                  "prediction_type": "v", "steps": 4, "batch_size": 8, "lr": 5e-4, "warmup_steps": 2,
                  "ema_decay": 0.995, "seed": 0},
    },
    "feature_net_shapes": {
        # The classifier whose features FID/KID compare (dlcourse.metrics.load_feature_net): 100% on every
        # attribute of unseen images after 600 steps (about 45 s on a 2-core CPU).
        "gpu": {"n_train": 10_000, "n_test": 2_000, "steps": 600},
        "cpu": {"n_train": 10_000, "n_test": 2_000, "steps": 600},
        "smoke": {"n_train": 256, "n_test": 64, "steps": 10},
    },
}


def run_mode() -> str:
    """The current run mode: ``"gpu"``, ``"cpu"`` or ``"smoke"`` (see the module docstring for the rules)."""
    if os.environ.get("DLCOURSE_SMOKE", "").strip() not in ("", "0"):
        return "smoke"
    forced = os.environ.get("DLCOURSE_MODE", "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"DLCOURSE_MODE={forced!r} is not a run mode; use one of {MODES} or unset it.")
        if forced == "gpu" and not torch.cuda.is_available():
            raise ValueError(
                "DLCOURSE_MODE=gpu but PyTorch sees no CUDA GPU. Unset DLCOURSE_MODE to run the reduced cpu "
                "settings, or switch to a GPU runtime (Colab: Runtime > Change runtime type > GPU)."
            )
        return forced
    return "gpu" if torch.cuda.is_available() else "cpu"


class Settings(Mapping):
    """Read-only sizes for one notebook in one mode; read them as attributes (``cfg.resolution``) or keys."""

    def __init__(self, notebook: str, mode: str, values: dict[str, Any]) -> None:
        object.__setattr__(self, "_notebook", notebook)
        object.__setattr__(self, "_values", dict(values, mode=mode))

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"{self._notebook} has no setting {name!r}; it has {sorted(self._values)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("settings are read-only: edit NOTEBOOK_SETTINGS in dlcourse/modes.py to change a size")

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self._values.items())
        return f"Settings({self._notebook}: {body})"


def settings(notebook: str, mode: str | None = None) -> Settings:
    """The sizes ``notebook`` (or a shared recipe in :data:`RECIPES`) uses in ``mode`` (default: :func:`run_mode`).

    ``cfg = settings("01_forward_process"); cfg.n_chain`` -> 8192 on a GPU, 256 in smoke mode.
    """
    tables = NOTEBOOK_SETTINGS | RECIPES
    if notebook not in tables:
        raise ValueError(f"no settings for {notebook!r}; known notebooks and recipes: {sorted(tables)}")
    mode = run_mode() if mode is None else mode
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return Settings(notebook, mode, tables[notebook][mode])
