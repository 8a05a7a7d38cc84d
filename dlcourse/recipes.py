"""The recipes of the models that one notebook trains and later notebooks reuse, per run mode.

:func:`dlcourse.modes.settings` reads them like a notebook's sizes (``settings("ddpm_shapes")``, overridable the same
way); :mod:`dlcourse.pretrained` trains and caches each model from its recipe. The comment above each recipe says
what it is and its headline figure; the measurements behind its values are in docs/experiments.md.
"""

from __future__ import annotations

from typing import Any

__all__ = ["RECIPES", "RELEASES"]

# Shared artifacts: models trained in one notebook and reused by later ones (see dlcourse.pretrained).
RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    "ddpm_shapes": {
        # The unconditional DDPM of notebook 03, reused by 04, 06, 07 and 09: a U-Net trained on Shapes with the DDPM
        # loss (v target; notebook 03 measures eps at the same budget). cpu: 24 px (the feature net still recognises 96%
        # of real images there), a narrow U-Net (base 16, mults (1, 2, 4), 0.69M parameters) trained long at Adam beta2
        # 0.99: about 51.5% of samples recognised confidently over three seeds (50% under make course, 445 s, FID 15.6
        # against the reals' 8.7). What was tried and measured: docs/experiments.md.
        "gpu": {"resolution": 32, "n_train": 50_000, "base_channels": 64, "channel_mults": (1, 2, 2),
                "num_res_blocks": 2, "attention_resolutions": (8,), "schedule": "cosine", "num_timesteps": 1000,
                "prediction_type": "v", "steps": 8000, "batch_size": 128, "lr": 3e-4, "betas": (0.9, 0.999),
                "warmup_steps": 200, "lr_decay": "constant", "ema_decay": 0.999, "seed": 0},
        "cpu": {"resolution": 24, "n_train": 10_000, "base_channels": 16, "channel_mults": (1, 2, 4),
                "num_res_blocks": 1, "attention_resolutions": (6,), "schedule": "cosine", "num_timesteps": 1000,
                "prediction_type": "v", "steps": 4800, "batch_size": 32, "lr": 2e-3, "betas": (0.9, 0.99),
                "warmup_steps": 50, "lr_decay": "constant", "ema_decay": 0.995, "seed": 0},
        "smoke": {"resolution": 32, "n_train": 64, "base_channels": 16, "channel_mults": (1, 2, 2),
                  "num_res_blocks": 1, "attention_resolutions": (8,), "schedule": "cosine", "num_timesteps": 1000,
                  "prediction_type": "v", "steps": 4, "batch_size": 8, "lr": 5e-4, "betas": (0.9, 0.999),
                  "warmup_steps": 2, "lr_decay": "constant", "ema_decay": 0.995, "seed": 0},
    },
    "vae_shapes": {
        # The KL autoencoder of notebook 05: 64-px Shapes -> 16x16x4 latents (f = 4), KL weight 1e-6 as in LDM, MSE
        # reconstruction (held-out PSNR 33.7 dB against L1's 24.3 dB; docs/experiments.md).
        "gpu": {"resolution": 64, "n_train": 20_000, "latent_channels": 4, "base_channels": 64,
                "channel_mults": (1, 2, 2), "num_res_blocks": 1, "kl_weight": 1e-6, "reconstruction": "mse",
                "steps": 3000, "batch_size": 64, "lr": 1e-3, "warmup_steps": 100,
                "lr_decay": "constant", "ema_decay": 0.999, "seed": 0},
        "cpu": {"resolution": 64, "n_train": 5_000, "latent_channels": 4, "base_channels": 16,
                "channel_mults": (1, 2, 2), "num_res_blocks": 1, "kl_weight": 1e-6, "reconstruction": "mse",
                "steps": 400, "batch_size": 16, "lr": 2e-3, "warmup_steps": 50,
                "lr_decay": "constant", "ema_decay": 0.99, "seed": 0},
        "smoke": {"resolution": 64, "n_train": 32, "latent_channels": 4, "base_channels": 8,
                  "channel_mults": (1, 2, 2), "num_res_blocks": 1, "kl_weight": 1e-6, "reconstruction": "mse",
                  "steps": 3, "batch_size": 4, "lr": 1e-3, "warmup_steps": 1,
                  "lr_decay": "constant", "ema_decay": 0.99, "seed": 0},
    },
    "text_shapes": {
        # The text-to-image model of notebook 06: notebook 03's U-Net ("ddpm_shapes", same mode) plus cross-attention
        # and a text encoder, trained with prompt dropout p_uncond on captions that name each of size, colour and
        # position with probability p_name (the shape always), so short prompts work too. holdout: colour-shape pairs
        # no training caption names (compositional generalisation). "all" = every attribute of the prompt right
        # (24 prompts x 8 samples, DDIM-20 under make course).
        # cpu, under make course, from the cpu recipe's base (before the released models): all 72% at s = 1, 80% at
        # s = 3, 62% at s = 7.5, held-out pairs 72% at s = 3 (447 s). In cpu mode it now starts from the released base.
        # What was tried and measured: docs/experiments.md.
        "gpu": {"n_train": 50_000, "holdout": ("red triangle", "blue circle", "yellow square"), "max_length": 12,
                "p_name": 0.8, "text_dim": 128, "text_depth": 2, "text_heads": 4, "p_uncond": 0.1, "steps": 4000,
                "batch_size": 128, "lr": 5e-4, "warmup_steps": 100,
                "lr_decay": "constant", "ema_decay": 0.999, "seed": 0},
        "cpu": {"n_train": 10_000, "holdout": ("red triangle", "blue circle", "yellow square"), "max_length": 12,
                "p_name": 0.8, "text_dim": 64, "text_depth": 2, "text_heads": 4, "p_uncond": 0.1, "steps": 2400,
                "batch_size": 48, "lr": 1e-3, "warmup_steps": 50,
                "lr_decay": "constant", "ema_decay": 0.995, "seed": 0},
        "smoke": {"n_train": 64, "holdout": ("red triangle", "blue circle", "yellow square"), "max_length": 12,
                  "p_name": 0.8, "text_dim": 16, "text_depth": 1, "text_heads": 2, "p_uncond": 0.1, "steps": 3,
                  "batch_size": 8, "lr": 5e-4, "warmup_steps": 1,
                  "lr_decay": "constant", "ema_decay": 0.995, "seed": 0},
    },
    "feature_net_shapes": {
        # The classifier whose features FID/KID compare (dlcourse.metrics.load_feature_net): 100% on every
        # attribute of unseen images after 600 steps (about 45 s on a 2-core CPU).
        "gpu": {"n_train": 10_000, "n_test": 2_000, "steps": 600},
        "cpu": {"n_train": 10_000, "n_test": 2_000, "steps": 600},
        "smoke": {"n_train": 256, "n_test": 64, "steps": 10},
    },
}

# Notebook 10's flow model: notebook 03's U-Net recipe, the same steps and optimiser (so the same training time), with
# the flow matching loss (dlcourse.training.FlowMatchingLoss) in place of the DDPM loss: no noise schedule, the network
# predicts the velocity. t_distribution: "logit_normal" (SD3) or "uniform" (Liu et al. 2023); notebook 10 measures both,
# and in cpu mode logit-normal t gave FID 13.6 (68% confident) against uniform's 19.0 (50%) at 50 Euler steps.
RECIPES["flow_shapes"] = {
    mode: {k: v for k, v in recipe.items() if k not in ("schedule", "num_timesteps", "prediction_type")}
    | {"t_distribution": "logit_normal"}
    for mode, recipe in RECIPES["ddpm_shapes"].items()
}
# Notebook 10's reflowed model (Liu et al. 2023, 2-rectified flow): n_pairs noises taken to images by the flow model
# above (pair_solver, pair_steps, pair_spacing: dlcourse.sampling.flow_sigmas), then that model trained on the fixed
# pairs for `steps` more steps.
RECIPES["reflow_shapes"] = {
    "gpu": {"n_pairs": 50_000, "pair_solver": "heun", "pair_steps": 16, "pair_spacing": "uniform", "steps": 4000,
            "batch_size": 128, "lr": 1e-4, "warmup_steps": 100, "lr_decay": "constant", "ema_decay": 0.999, "seed": 0},
    "cpu": {"n_pairs": 10_000, "pair_solver": "heun", "pair_steps": 16, "pair_spacing": "uniform", "steps": 2400,
            "batch_size": 32, "lr": 5e-4, "warmup_steps": 50, "lr_decay": "constant", "ema_decay": 0.995, "seed": 0},
    "smoke": {"n_pairs": 16, "pair_solver": "heun", "pair_steps": 2, "pair_spacing": "uniform", "steps": 4,
              "batch_size": 8, "lr": 5e-4, "warmup_steps": 2, "lr_decay": "constant", "ema_decay": 0.995, "seed": 0},
}

# The released models (dlcourse/weights/, made by `make release-models` with tools/release_models.py): each is a recipe
# above in cpu mode, with `variant` (which model of that recipe) and `training` (how much longer it trains) applied. A
# notebook in cpu mode that asks for the recipe with the variant's values gets the released weights (dlcourse.releases).
# Only the length and what a long run needs (cosine learning-rate decay, a slower EMA) change, never the architecture
# or the data, so a released model stands in for the one the notebook would train. The manifest holds each one's
# measured figures; what was tried: docs/experiments.md. "ship_raw": ship the raw weights beside the EMA ones (notebook
# 09 samples with the raw weights of notebook 03's model; the others need only the EMA weights, half the bytes).
RELEASES: dict[str, dict[str, Any]] = {
    # notebook 03's v-model, 5x the cpu recipe's steps
    "ddpm_shapes": {"recipe": "ddpm_shapes", "variant": {}, "ship_raw": True,
                    "training": {"steps": 24_000, "lr_decay": "cosine", "ema_decay": 0.999}},
    # the eps models notebooks 03 and 09 compare with it, at the cpu recipe's length (the comparison is at equal
    # budget), released so that notebook 03 trains one model on the page, not three
    "ddpm_shapes_eps_cosine": {"recipe": "ddpm_shapes", "variant": {"prediction_type": "eps"}, "training": {}},
    "ddpm_shapes_eps_linear": {"recipe": "ddpm_shapes", "variant": {"prediction_type": "eps", "schedule": "linear"},
                               "training": {}},
    # notebook 05's autoencoder, 10x the cpu recipe's steps
    "vae_shapes": {"recipe": "vae_shapes", "variant": {},
                   "training": {"steps": 4000, "lr_decay": "cosine", "ema_decay": 0.999}},
    # notebook 06's text-to-image model, 5x the cpu recipe's steps, from the released "ddpm_shapes"
    "text_shapes": {"recipe": "text_shapes", "variant": {},
                    "training": {"steps": 12_000, "lr_decay": "cosine", "ema_decay": 0.999}},
    # notebook 10's flow models at the cpu recipe's length (the comparison with notebook 03's own model is at equal
    # training time), released so that notebook 10 fits in minutes: logit-normal and uniform t, and the reflowed
    # model, trained on pairs drawn from the released "flow_shapes"
    "flow_shapes": {"recipe": "flow_shapes", "variant": {}, "training": {}},
    "flow_shapes_uniform": {"recipe": "flow_shapes", "variant": {"t_distribution": "uniform"}, "training": {}},
    "reflow_shapes": {"recipe": "reflow_shapes", "variant": {}, "training": {}},
}
