"""The gpu dry run: every notebook executed on a CPU at gpu mode's shapes, with its step counts and sample counts cut.

The gpu rows of :data:`dlcourse.modes.NOTEBOOK_SETTINGS` and :data:`dlcourse.recipes.RECIPES` set sizes that no CPU
run of the cpu or smoke rows ever builds: the wide U-Net (base 64, two blocks a level, attention at 8 px), notebook 05's
64-px pixel model and 64-px feature-net resolution, the 128-wide text encoder, Stable Diffusion's 512-px images. A shape
bug there would first show on a rented GPU. ``DLCOURSE_MODE=gpu DLCOURSE_DRYRUN=1`` runs mode ``"gpu-dryrun"``: the
gpu row, except the entries listed in :data:`CUT`, which take the smoke row's value. ``make test`` runs every notebook
this way after the smoke run.

What is kept: every entry not in :data:`CUT`: resolutions, widths, depths, attention resolutions, the evaluation
resolution, latent and text sizes, LoRA ranks, schedules, learning rates, guidance scales and strengths (the lists
themselves), display counts (``n_show``). What is cut, and why:

- steps and repetitions (training steps, warm-up steps, sampling steps, timing repetitions, time budgets): they
  repeat one computation, so two or three show every shape the thousandth would;
- sample, image and prompt counts, and batch sizes: they set the leading dimension of tensors, and the issue asked to
  keep them; but one forward of the gpu U-Net at 32 px costs about 2.9 GFLOP an image, so notebook 03's batch of
  1000 alone is tens of seconds on a 2-core CPU, and its 2000 evaluation samples, times the sampling steps, times
  four models, are hours. The dry run has to fit in 5 minutes for all nine notebooks. Kept at the smoke row's counts
  (at least 2 wherever a batch is formed), they still test every batch dimension: a bug that mixes up a batch
  dimension shows at any batch of 2 or more. What only the gpu counts test is memory (a batch of 1000 on a 15 GB
  T4), and a CPU cannot measure a GPU's memory: that is the GPU check's job (tools/gpu_checks.sh);
- Stable Diffusion's model_id (notebook 08): a test must not download 4 GB of weights, so the dry run builds the toy
  random components (:func:`dlcourse.sd.tiny_components`) and runs them at the gpu row's 512-px images (64x64 latents)
  with gradient checkpointing on.

So a dry run says that the notebooks execute at gpu shapes; none of its figures measures anything:
:func:`dlcourse.report.record` marks each one as a dry run, and its checkpoints live apart from real ones
(:func:`dlcourse.runtime.checkpoint_dir`), so a cut-short model is never loaded as a trained gpu model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

__all__ = ["CUT", "DRYRUN_ENV", "DRY_RUN_MODE", "dry_run_requested", "dry_run_table"]

DRYRUN_ENV = "DLCOURSE_DRYRUN"
DRY_RUN_MODE = "gpu-dryrun"

# table -> the entries a dry run takes from the smoke row (everything else is the gpu row's). Steps first, then counts.
CUT: dict[str, tuple[str, ...]] = {
    "01_forward_process": ("n_chain",),
    "02_unet": ("timing_iters", "batch_size"),
    "03_ddpm_training": ("hand_steps", "sample_steps", "n_eval", "sample_batch", "n_x0_error"),
    "04_ddim_sampling": ("steps", "n_eval", "sample_batch"),
    "05_latent_diffusion": ("budget_s", "speed_steps", "warmup_steps", "sample_steps", "n_train", "n_scale",
                            "batch_size", "n_eval", "n_psnr"),
    "06_classifier_free_guidance": ("sample_steps", "n_prompts", "per_prompt", "n_heldout_prompts", "n_negative"),
    "07_lora_dreambooth": ("steps", "sample_steps", "detector_steps", "n_class", "batch_size", "n_eval",
                           "detector_n_train"),
    "08_stable_diffusion": ("num_steps", "class_steps", "lora_steps", "n_class", "model_id"),
    "09_common_mistakes": ("sample_steps", "few_steps", "prompt_steps", "db_steps", "lr_steps", "n_eval", "n_small",
                           "n_prompts", "per_prompt", "n_latent", "n_class", "n_drift", "db_batch"),
    "ddpm_shapes": ("steps", "warmup_steps", "n_train", "batch_size"),
    "vae_shapes": ("steps", "warmup_steps", "n_train", "batch_size"),
    "text_shapes": ("steps", "warmup_steps", "n_train", "batch_size"),
    "feature_net_shapes": ("steps", "n_train", "n_test"),
}


def dry_run_requested() -> bool:
    """True when ``$DLCOURSE_DRYRUN`` is set to anything but ``""`` or ``"0"``."""
    return os.environ.get(DRYRUN_ENV, "").strip() not in ("", "0")


def dry_run_table(name: str, gpu: Mapping[str, Any], smoke: Mapping[str, Any]) -> dict[str, Any]:
    """The dry run's values of table ``name``: the ``gpu`` row with the entries in ``CUT[name]`` from ``smoke``."""
    return dict(gpu) | {key: smoke[key] for key in CUT[name]}
