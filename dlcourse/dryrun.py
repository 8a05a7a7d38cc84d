"""The gpu dry run: every notebook executed on a CPU at gpu mode's shapes, with its step counts and sample counts cut.

The gpu rows of :data:`dlcourse.modes.NOTEBOOK_SETTINGS` and :data:`dlcourse.recipes.RECIPES` set sizes that no CPU
run of the cpu or smoke rows ever builds: the wide U-Net (base 64, two blocks a level, attention at 8 px), notebook 05's
64-px pixel model and 64-px feature-net resolution, the 128-wide text encoder, Stable Diffusion's 512-px images. A shape
bug there would first show on a rented GPU. ``DLCOURSE_MODE=gpu DLCOURSE_DRYRUN=1`` runs mode ``"gpu-dryrun"``: the
gpu row, except the entries listed in :data:`CUT`, which take the values given there. ``make test`` runs every notebook
this way after the smoke run.

What is kept: every entry not in :data:`CUT`: resolutions, widths, depths, attention resolutions, the evaluation
resolution, latent and text sizes, LoRA ranks, schedules, learning rates, probabilities, guidance scales and strengths
(the lists themselves). What is cut, and why:

- steps and repetitions (training steps, warm-up steps, sampling steps, timing repetitions, time budgets): they
  repeat one computation, so two show every shape the thousandth would;
- sample, image and prompt counts, display counts and batch sizes: they set the leading dimension of tensors, and the
  issue asked to keep them; but one forward of the gpu U-Net at 32 px costs about 2.9 GFLOP an image (11.5 at 64 px),
  so notebook 03's sampling batch of 1000 alone is tens of seconds on a 2-core CPU, and its 2000 evaluation samples,
  times the sampling steps, times four models, are hours; the dry run has to fit in 5 minutes for all nine notebooks.
  Cut to 2-8, they still test every batch dimension: a bug that mixes up a batch dimension shows at any batch of 2 or
  more. What only the gpu counts test is memory (a batch of 1000 on a 15 GB T4), and a CPU cannot measure a GPU's
  memory: that is the GPU check's job (tools/gpu_checks.sh);
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

# table -> the entries a dry run cuts, with their dry-run values (every other entry is the gpu row's). Steps and
# repetitions first, then counts and batch sizes. The values are the smoke row's, which CI already runs (so the counts
# fit one another: n_show <= n_eval, n_small <= n_eval, ...), lowered further where the gpu shapes make them slow:
# 2 steps, batches of 2 to 4, 8 images wherever a FID is computed (it needs a few per set).
CUT: dict[str, dict[str, Any]] = {
    "01_forward_process": {"n_chain": 256},
    "02_unet": {"timing_iters": 1, "batch_size": 4},
    "03_ddpm_training": {"hand_steps": 2, "sample_steps": 2, "n_eval": 8, "sample_batch": 4, "n_x0_error": 2,
                         "n_show": 4},
    "04_ddim_sampling": {"steps": (2, 3), "few_steps": 2, "n_eval": 8, "sample_batch": 4, "n_show": 4,
                         "n_interpolate": 3},
    "05_latent_diffusion": {"budget_s": 1, "speed_steps": 1, "warmup_steps": 1, "sample_steps": 2, "n_train": 16,
                            "n_scale": 8, "batch_size": 2, "n_eval": 8, "n_psnr": 4, "n_show": 4, "spread_steps": 2,
                            "spread_seeds": (0, 1)},
    "06_classifier_free_guidance": {"sample_steps": 2, "n_prompts": 2, "per_prompt": 2, "n_heldout_prompts": 1,
                                    "n_negative": 2, "n_show": 2},
    "07_lora_dreambooth": {"steps": 2, "sample_steps": 2, "detector_steps": 10, "n_class": 2, "batch_size": 2,
                           "n_eval": 2, "detector_n_train": 256, "n_show": 2},
    # num_steps 4: img2img runs int(num_steps x strength) steps, at least 1 for the gpu row's smallest strength, 0.3
    "08_stable_diffusion": {"num_steps": 4, "class_steps": 2, "lora_steps": 2, "n_class": 2, "model_id": None},
    # n_eval 8: the learning-rate section trains on the 2 x n_eval reals with a batch of 16. It is also the notebook's
    # slowest cell in a dry run: section 6 runs the U-Net in fp16 autocast on images[:n_eval], which a CPU has no fast
    # kernels for (over 110 s of one core's time at 8 images, more than the rest of the notebook together).
    "09_common_mistakes": {"sample_steps": 2, "few_steps": 2, "prompt_steps": 2, "db_steps": 2, "lr_steps": 2,
                           "n_eval": 8, "n_small": 4, "n_prompts": 2, "per_prompt": 1, "n_latent": 4, "n_class": 2,
                           "n_drift": 2, "db_batch": 2, "lr_batch": 4, "fp16_batch": 4, "n_show": 4},
    "10_flow_matching": {"n_eval": 8, "sample_batch": 8, "nfes": (1, 2), "reference_steps": 2, "dpm_steps": 2,
                         "few_steps": 2, "n_page": 16, "page_batch": 4, "hand_steps": 2, "n_show": 4, "path_steps": 2,
                         "straight_n": 4},
    "ddpm_shapes": {"steps": 2, "warmup_steps": 1, "n_train": 16, "batch_size": 2},
    "vae_shapes": {"steps": 2, "warmup_steps": 1, "n_train": 8, "batch_size": 2},
    "text_shapes": {"steps": 2, "warmup_steps": 1, "n_train": 16, "batch_size": 2},
    "feature_net_shapes": {"steps": 10, "n_train": 256, "n_test": 64},
    "flow_shapes": {"steps": 2, "warmup_steps": 1, "n_train": 16, "batch_size": 2},
    "reflow_shapes": {"n_pairs": 4, "pair_steps": 2, "steps": 2, "warmup_steps": 1, "batch_size": 2},
}


def dry_run_requested() -> bool:
    """True when ``$DLCOURSE_DRYRUN`` is set to anything but ``""`` or ``"0"``."""
    return os.environ.get(DRYRUN_ENV, "").strip() not in ("", "0")


def dry_run_table(name: str, gpu: Mapping[str, Any]) -> dict[str, Any]:
    """The dry run's values of table ``name``: its ``gpu`` row with the entries of ``CUT[name]`` replaced."""
    return dict(gpu) | CUT[name]
