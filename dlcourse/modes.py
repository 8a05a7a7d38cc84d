"""The three run modes and the sizes each notebook uses in them.

- ``gpu``: full settings, the results the course promises (a CUDA GPU is present);
- ``cpu``: reduced settings a learner without a GPU can finish in minutes;
- ``smoke``: a handful of steps so CI can execute every cell (``DLCOURSE_SMOKE=1``).

The mode is picked automatically (GPU present -> ``gpu``, else ``cpu``); ``DLCOURSE_SMOKE=1`` forces
``smoke`` and ``DLCOURSE_MODE=gpu|cpu|smoke`` forces any mode. ``DLCOURSE_MODE=gpu DLCOURSE_DRYRUN=1`` is the gpu dry
run, mode ``gpu-dryrun``: gpu mode's shapes with its step counts and sample counts cut, so that CI executes every
notebook at gpu shapes on a CPU (the rule, and what it keeps, in dlcourse/dryrun.py); its figures measure nothing.

A notebook never branches on the mode itself: its parameters cell calls ``settings("NN_topic")`` and reads every
size from the result, so these tables (and :data:`~dlcourse.recipes.RECIPES` in dlcourse/recipes.py: the settings
of models that one notebook trains and later ones reuse, ``settings("ddpm_shapes")``) are the one place where the
modes differ.

To change a size, override it in the parameters cell, not here: ``settings("03_ddpm_training", n_eval=500)``
or ``settings("ddpm_shapes", steps=1600)``. An override must name an existing setting, keep its type and be a value
that setting can take (a positive step count, a probability in [0, 1]: dlcourse/setting_checks.py); it
shows in the settings' repr and, under ``make course``, in the report next to the notebook's figures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch

from dlcourse.dryrun import CUT, DRY_RUN_MODE, DRYRUN_ENV, dry_run_requested, dry_run_table
from dlcourse.recipes import RECIPES
from dlcourse.report import record_settings
from dlcourse.setting_checks import checked_override

__all__ = ["DRY_RUN_MODE", "MODES", "NOTEBOOK_SETTINGS", "RECIPES", "Settings", "run_mode", "settings"]

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
        # hand_steps: steps of Algorithm 1's loop written on the page (and of train() on the same settings).
        # sample_steps: DDPM steps for the samples (all 1000 on a GPU; strided on a CPU to stay in minutes).
        # n_eval: samples (and real images a side) for FID/KID; n_x0_error: real images per t in the x0-error plot.
        "gpu": {"hand_steps": 300, "n_eval": 2000, "sample_steps": 1000, "sample_batch": 1000, "n_show": 16,
                "n_x0_error": 512, "seed": 0},
        "cpu": {"hand_steps": 150, "n_eval": 300, "sample_steps": 100, "sample_batch": 300, "n_show": 16,
                "n_x0_error": 128, "seed": 0},
        "smoke": {"hand_steps": 3, "n_eval": 16, "sample_steps": 4, "sample_batch": 16, "n_show": 4,
                  "n_x0_error": 8, "seed": 0},
    },
    "04_ddim_sampling": {
        # The steps x sampler x spacing table: every cell samples n_eval images from the same noise. few_steps (one of
        # steps): the deterministic DDIM whose FID is compared with DDPM at max(steps) (target: within 1.5x).
        "gpu": {"n_eval": 2000, "steps": (10, 20, 50, 100, 1000), "few_steps": 50, "sample_batch": 1000, "n_show": 8,
                "n_interpolate": 9, "seed": 0},
        "cpu": {"n_eval": 200, "steps": (10, 20, 50, 100), "few_steps": 20, "sample_batch": 200, "n_show": 8,
                "n_interpolate": 7, "seed": 0},
        "smoke": {"n_eval": 16, "steps": (2, 4), "few_steps": 2, "sample_batch": 16, "n_show": 4, "n_interpolate": 3,
                  "seed": 0},
    },
    "05_latent_diffusion": {
        # One U-Net recipe for both sides of the pixel-vs-latent table (64x64x3 pixels, 16x16x4 latents), each trained
        # for budget_s seconds (steps = budget_s x the speed measured over speed_steps steps). n_train: images encoded
        # once; n_scale: images whose latents measure the scaling factor; n_psnr: held-out images for the PSNR;
        # eval_resolution: the feature net's resolution for FID (samples and reals area-averaged down to it).
        # The scaling comparison trains each latent spread for spread_steps steps (a count, not a time: the same models
        # on any machine) with each of spread_seeds.
        "gpu": {"n_train": 20_000, "n_scale": 1000, "base_channels": 64, "channel_mults": (1, 2, 2),
                "num_res_blocks": 2, "schedule": "cosine", "num_timesteps": 1000, "prediction_type": "v",
                "batch_size": 128, "lr": 1e-3, "warmup_steps": 100, "ema_decay": 0.999, "budget_s": 300,
                "speed_steps": 20, "n_eval": 2000, "sample_steps": 250, "eval_resolution": 64, "n_psnr": 1000,
                "n_show": 8, "spread_steps": 2000, "spread_seeds": (0, 1, 2), "seed": 0},
        "cpu": {"n_train": 5000, "n_scale": 500, "base_channels": 32, "channel_mults": (1, 2, 2),
                "num_res_blocks": 1, "schedule": "cosine", "num_timesteps": 1000, "prediction_type": "v",
                "batch_size": 32, "lr": 3e-3, "warmup_steps": 50, "ema_decay": 0.995, "budget_s": 60,
                "speed_steps": 5, "n_eval": 200, "sample_steps": 20, "eval_resolution": 32, "n_psnr": 200,
                "n_show": 8, "spread_steps": 300, "spread_seeds": (0, 1, 2), "seed": 0},
        "smoke": {"n_train": 32, "n_scale": 16, "base_channels": 16, "channel_mults": (1, 2, 2),
                  "num_res_blocks": 1, "schedule": "cosine", "num_timesteps": 1000, "prediction_type": "v",
                  "batch_size": 8, "lr": 5e-4, "warmup_steps": 1, "ema_decay": 0.995, "budget_s": 1,
                  "speed_steps": 1, "n_eval": 16, "sample_steps": 4, "eval_resolution": 32, "n_psnr": 8,
                  "n_show": 4, "spread_steps": 2, "spread_seeds": (0, 1), "seed": 0},
    },
    "06_classifier_free_guidance": {
        # The guidance sweep samples per_prompt images for each of n_prompts full captions at every scale (same noise
        # at every scale), with sample_steps DDIM steps; n_heldout_prompts captions of held-out colour-shape pairs are
        # sampled at the same scales. n_negative: samples per arm of the negative-prompt measurement.
        "gpu": {"scales": (1.0, 1.5, 3.0, 5.0, 7.5, 12.0), "n_prompts": 100, "per_prompt": 20, "n_heldout_prompts": 30,
                "sample_steps": 50, "n_negative": 500, "n_show": 8, "seed": 0},
        "cpu": {"scales": (1.0, 1.5, 3.0, 5.0, 7.5, 12.0), "n_prompts": 24, "per_prompt": 8, "n_heldout_prompts": 12,
                "sample_steps": 20, "n_negative": 96, "n_show": 8, "seed": 0},
        "smoke": {"scales": (1.0, 1.5, 3.0, 5.0, 7.5, 12.0), "n_prompts": 2, "per_prompt": 2, "n_heldout_prompts": 1,
                  "sample_steps": 2, "n_negative": 4, "n_show": 2, "seed": 0},
    },
    "07_lora_dreambooth": {
        # The concept (hollow triangles) is taught from n_instance images with steps x batch_size of each method, at
        # each method's learning rate; n_class: the base model's own "a triangle" images for prior preservation;
        # detector_*: the hollow-shape detector's training images and steps (dlcourse.metrics.concept);
        # n_eval: samples per measured prompt (DDIM sample_steps, guidance scale). The budget's measurements (the
        # concept word's starting embedding, prior weight, each method's fidelity and drift): docs/experiments.md.
        "gpu": {"n_instance": 5, "n_class": 200, "steps": 800, "batch_size": 4, "lr_ti": 5e-3, "lr_lora": 1e-3,
                "lr_dreambooth": 1e-4, "rank": 2, "prior_weight": 1.0, "ema_decay": 0.98, "n_eval": 256,
                "sample_steps": 50, "guidance_scale": 3.0, "n_show": 8, "detector_n_train": 10_000,
                "detector_steps": 400, "seed": 0},
        "cpu": {"n_instance": 5, "n_class": 64, "steps": 300, "batch_size": 4, "lr_ti": 5e-3, "lr_lora": 8e-3,
                "lr_dreambooth": 2e-4, "rank": 2, "prior_weight": 1.5, "ema_decay": 0.98, "n_eval": 64,
                "sample_steps": 20, "guidance_scale": 3.0, "n_show": 8, "detector_n_train": 10_000,
                "detector_steps": 400, "seed": 0},
        "smoke": {"n_instance": 5, "n_class": 4, "steps": 2, "batch_size": 2, "lr_ti": 5e-3, "lr_lora": 2e-3,
                  "lr_dreambooth": 2e-4, "rank": 2, "prior_weight": 1.0, "ema_decay": 0.98, "n_eval": 4,
                  "sample_steps": 2, "guidance_scale": 3.0, "n_show": 2, "detector_n_train": 256, "detector_steps": 10,
                  "seed": 0},
    },
    "08_stable_diffusion": {
        # model_id: Stable Diffusion's weights (dlcourse.sd.DEFAULT_MODEL_ID, SD 1.5); None (smoke) runs toy random
        # components built locally, as does any mode that cannot download them. size: the image side in pixels
        # (latents are size / 8); num_steps: DDIM steps; n_class: the base model's class images for prior
        # preservation (class_steps DDIM steps each); lora_*: DreamBooth-LoRA on the instance images. The gpu row is
        # sized for a T4 (15 GB at fp16, gradient checkpointing); the cpu row for minutes on a laptop with the
        # weights downloaded. Neither has been run with the real weights yet (no session had them): not yet measured.
        "gpu": {"model_id": "stable-diffusion-v1-5/stable-diffusion-v1-5", "size": 512, "num_steps": 50,
                "guidance_scales": (1.0, 3.0, 7.5, 12.0), "strengths": (0.3, 0.5, 0.75, 1.0), "n_instance": 5,
                "n_class": 50, "class_steps": 25, "lora_steps": 400, "batch_size": 1, "lr": 1e-4, "rank": 4,
                "prior_weight": 1.0, "gradient_checkpointing": True, "show_scale": 0.25, "seed": 0},
        "cpu": {"model_id": "stable-diffusion-v1-5/stable-diffusion-v1-5", "size": 256, "num_steps": 15,
                "guidance_scales": (1.0, 7.5), "strengths": (0.5, 1.0), "n_instance": 3, "n_class": 2,
                "class_steps": 10, "lora_steps": 10, "batch_size": 1, "lr": 1e-4, "rank": 4, "prior_weight": 1.0,
                "gradient_checkpointing": False, "show_scale": 0.5, "seed": 0},
        "smoke": {"model_id": None, "size": 64, "num_steps": 4, "guidance_scales": (1.0, 7.5), "strengths": (0.5, 1.0),
                  "n_instance": 3, "n_class": 2, "class_steps": 2, "lora_steps": 2, "batch_size": 1, "lr": 1e-3,
                  "rank": 2, "prior_weight": 1.0, "gradient_checkpointing": False, "show_scale": 2.0, "seed": 0},
    },
    "09_common_mistakes": {
        # Every section reuses a cached model of notebooks 03-07. n_eval: samples (and real images a side) for FID
        # and the confident fraction (sample_steps DDPM steps; few_steps DDIM steps for the eps/spacing section);
        # n_small: the small sample count of the FID-count section; t_probe: the timestep of the x0-error probes;
        # n_prompts x per_prompt: guidance-convention samples (prompt_steps DDIM steps); n_latent: images through
        # notebook 05's VAE; db_*: the DreamBooth runs (notebook 07's recipe, fewer steps; n_drift samples of
        # "a triangle"); lr_ok / lr_high: the learning rates of the divergence section, lr_steps steps of lr_batch
        # images each; fp16_batch: the real images of the fp16-gradient section's one batch.
        "gpu": {"n_eval": 1000, "n_small": 100, "sample_steps": 250, "few_steps": 10, "t_probe": 300,
                "n_prompts": 64, "per_prompt": 4, "prompt_steps": 25, "guidance_scale": 3.0, "n_latent": 256,
                "n_instance": 5, "n_class": 200, "n_drift": 256, "db_steps": 800, "db_batch": 4, "db_lr": 1e-4,
                "lr_ok": 3e-4, "lr_high": 1.0, "lr_batch": 16, "fp16_batch": 32, "lr_steps": 40, "n_show": 8,
                "seed": 0},
        "cpu": {"n_eval": 200, "n_small": 50, "sample_steps": 50, "few_steps": 10, "t_probe": 300,
                "n_prompts": 24, "per_prompt": 2, "prompt_steps": 20, "guidance_scale": 3.0, "n_latent": 128,
                "n_instance": 5, "n_class": 32, "n_drift": 48, "db_steps": 200, "db_batch": 4, "db_lr": 2e-4,
                "lr_ok": 3e-3, "lr_high": 1.0, "lr_batch": 16, "fp16_batch": 32, "lr_steps": 30, "n_show": 8,
                "seed": 0},
        "smoke": {"n_eval": 16, "n_small": 8, "sample_steps": 3, "few_steps": 2, "t_probe": 300,
                  "n_prompts": 4, "per_prompt": 1, "prompt_steps": 2, "guidance_scale": 3.0, "n_latent": 8,
                  "n_instance": 3, "n_class": 4, "n_drift": 4, "db_steps": 2, "db_batch": 2, "db_lr": 2e-4,
                  "lr_ok": 1e-3, "lr_high": 1.0, "lr_batch": 16, "fp16_batch": 16, "lr_steps": 8, "n_show": 4,
                  "seed": 0},
    },
    "10_flow_matching": {
        # The chart samples n_eval images per point from the same noises at each NFE in nfes (network evaluations
        # per image); reference_steps: the DDIM and flow Euler steps the targets compare with; dpm_steps:
        # DPM-Solver++'s few-step point; few_steps: the t-distribution and shift comparisons; n_page, page_batch,
        # hand_steps: the flow model trained on the page; straight_n paths of path_steps steps measure straightness;
        # n_paths pixels are plotted.
        "gpu": {"n_eval": 2000, "sample_batch": 1000, "nfes": (1, 2, 4, 8, 16, 32, 64), "reference_steps": 50,
                "dpm_steps": 10, "few_steps": 8, "shifts": (1.0, 3.0), "n_page": 2000,
                "page_batch": 64, "hand_steps": 200, "n_show": 8, "n_paths": 6, "path_steps": 32, "straight_n": 256,
                "seed": 0},
        "cpu": {"n_eval": 300, "sample_batch": 300, "nfes": (1, 2, 4, 8, 16, 32, 64), "reference_steps": 50,
                "dpm_steps": 10, "few_steps": 8, "shifts": (1.0, 3.0), "n_page": 1000,
                "page_batch": 16, "hand_steps": 100, "n_show": 8, "n_paths": 6, "path_steps": 32, "straight_n": 64,
                "seed": 0},
        "smoke": {"n_eval": 16, "sample_batch": 16, "nfes": (1, 2), "reference_steps": 2, "dpm_steps": 2,
                  "few_steps": 2, "shifts": (1.0, 3.0), "n_page": 16, "page_batch": 4,
                  "hand_steps": 2, "n_show": 2, "n_paths": 2, "path_steps": 2, "straight_n": 2, "seed": 0},
    },
}


def run_mode() -> str:
    """The current run mode: ``"gpu"``, ``"cpu"``, ``"smoke"`` or ``"gpu-dryrun"`` (the rules: the module docstring)."""
    dry_run = dry_run_requested()
    forced = os.environ.get("DLCOURSE_MODE", "").strip().lower()
    if dry_run and (forced != "gpu" or os.environ.get("DLCOURSE_SMOKE", "").strip() not in ("", "0")):
        raise ValueError(
            f"{DRYRUN_ENV}=1 runs gpu mode's shapes with steps cut, so it needs DLCOURSE_MODE=gpu (and no "
            f"DLCOURSE_SMOKE); got DLCOURSE_MODE={forced!r}. Set DLCOURSE_MODE=gpu, or unset {DRYRUN_ENV}."
        )
    if dry_run:
        return DRY_RUN_MODE
    if os.environ.get("DLCOURSE_SMOKE", "").strip() not in ("", "0"):
        return "smoke"
    if forced:
        if forced not in MODES:
            raise ValueError(f"DLCOURSE_MODE={forced!r} is not a run mode; use one of {MODES} or unset it.")
        if forced == "gpu" and not torch.cuda.is_available():
            raise ValueError(
                "DLCOURSE_MODE=gpu but PyTorch sees no CUDA GPU. Unset DLCOURSE_MODE to run the reduced cpu "
                "settings, or switch to a GPU runtime (Colab: Runtime > Change runtime type > GPU). To check that "
                f"the notebooks execute at gpu shapes on this CPU (a test, no results), add {DRYRUN_ENV}=1."
            )
        return forced
    return "gpu" if torch.cuda.is_available() else "cpu"


class Settings(Mapping):
    """Read-only sizes for one notebook in one mode; read them as attributes (``cfg.resolution``) or keys.

    Made by :func:`settings`, which applies the caller's overrides; the repr marks each overridden value
    with the table's value beside it, and in a dry run each cut value with the gpu row's (``cut``: key -> gpu value).
    """

    def __init__(
        self, notebook: str, mode: str, values: Mapping[str, Any], overrides: Mapping[str, Any] | None = None,
        cut: Mapping[str, Any] | None = None,
    ) -> None:
        overrides = dict(overrides or {})
        object.__setattr__(self, "_notebook", notebook)
        object.__setattr__(self, "_table", dict(values))
        object.__setattr__(self, "_overrides", overrides)
        object.__setattr__(self, "_cut", dict(cut or {}))
        object.__setattr__(self, "_values", dict(values) | overrides | {"mode": mode})

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
        raise AttributeError(
            f"settings are read-only; to change a size, override it where the settings are made, e.g. "
            f"cfg = settings({self._notebook!r}, {name}={value!r}) in the parameters cell"
        )

    def __repr__(self) -> str:
        def show(key: str, value: Any) -> str:
            table = f" (overridden; table: {self._table[key]!r})" if key in self._overrides else ""
            cut = f" (dry run; gpu: {self._cut[key]!r})" if key in self._cut else ""
            return f"{key}={value!r}{table}{cut}"

        return f"Settings({self._notebook}: {', '.join(show(k, v) for k, v in self._values.items())})"


def settings(notebook: str, mode: str | None = None, **overrides: Any) -> Settings:
    """The sizes ``notebook`` (or a shared recipe in :data:`RECIPES`) uses in ``mode`` (default: :func:`run_mode`).

    ``cfg = settings("01_forward_process"); cfg.n_chain`` -> 8192 on a GPU, 256 in smoke mode.
    overrides: new values for existing settings, e.g. ``settings("03_ddpm_training", n_eval=500)``: an unknown
    name is a ValueError that lists the settings, a value of the wrong type a TypeError, a value the setting
    cannot take (``steps=-10``, ``p_uncond=1.5``) a ValueError that says what it needs (dlcourse/setting_checks.py).
    The settings used (and the overrides) are recorded in the ``make course`` report
    (:func:`dlcourse.report.record_settings`).
    """
    tables = NOTEBOOK_SETTINGS | RECIPES
    if notebook not in tables:
        raise ValueError(f"no settings for {notebook!r}; known notebooks and recipes: {sorted(tables)}")
    mode = run_mode() if mode is None else mode
    if mode not in (*MODES, DRY_RUN_MODE):
        raise ValueError(f"mode must be one of {(*MODES, DRY_RUN_MODE)}, got {mode!r}")
    rows = tables[notebook]
    table = dry_run_table(notebook, rows["gpu"]) if mode == DRY_RUN_MODE else rows[mode]
    cut = {key: rows["gpu"][key] for key in CUT[notebook]} if mode == DRY_RUN_MODE else {}
    unknown = sorted(set(overrides) - set(table))
    if unknown:
        raise ValueError(
            f"settings({notebook!r}): no setting {', '.join(map(repr, unknown))} to override; the settings of "
            f"{notebook} are {sorted(table)}"
        )
    where = f"settings({notebook!r})"
    overrides = {key: checked_override(where, key, value, table[key]) for key, value in overrides.items()}
    cfg = Settings(notebook, mode, table, overrides, cut)
    record_settings(notebook, mode, table, overrides)
    return cfg
