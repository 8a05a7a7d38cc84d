"""Measure a released model as the notebook that uses it does, and its snapshots along the run (the curve).

Called by tools/release_models.py (``measure NAME``); writes ``figures`` and ``curve`` into the release's manifest
entry. The settings are the notebooks' cpu rows, so the manifest's figures are the ones a learner's cpu run shows:
- DDPMs (notebook 03): n_eval samples with DDPM sample_steps, FID and the confident fraction next to the reals';
- the VAE (notebook 05): PSNR of n_psnr held-out images reconstructed from the posterior mean;
- the text model (notebook 06): every attribute right at s = 1, 3, 7.5 (n_prompts x per_prompt, DDIM sample_steps)
  and on held-out pairs at s = 3;
- flow models (notebook 10): n_eval samples with the flow Euler sampler at a few step counts, FID and the confident
  fraction (notebook 03's noise, reals and n).
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any

import torch

from dlcourse import Shapes, ddpm_sample, settings
from dlcourse.checkpoints import checkpoint_dir
from dlcourse.metrics import evaluate_samples, load_feature_net, prompt_adherence, psnr
from dlcourse.pretrained import TrainedDDPM, released_ddpm, released_text2img, shapes_vae
from dlcourse.pretrained_flow import released_flow
from dlcourse.recipes import RELEASES
from dlcourse.releases import load_release, read_manifest, release_recipe, save_release
from dlcourse.sampling import flow_euler_sample, generate

__all__ = ["measure", "release_folder"]


def release_folder(name: str) -> Path:
    """Where the training run of release ``name`` keeps its snapshots and log: beside the data folder's checkpoints."""
    return checkpoint_dir().parent / "releases" / name


def _feature_net(resolution: int) -> Any:
    features = settings("feature_net_shapes", "cpu")
    return load_feature_net("shapes", resolution=resolution, device="cpu", n_train=features.n_train,
                            n_test=features.n_test, steps=features.steps)


def _sample_figures(sample: Any, resolution: int) -> dict[str, float]:
    """Notebook 03's measurement (cells "FID of the EMA model"): same noise, same reals, same n; sample(x_T, g)."""
    cfg = settings("03_ddpm_training", "cpu")
    net = _feature_net(resolution)
    reals = Shapes(resolution=resolution, seed=cfg.seed + 1).batch(0, 2 * cfg.n_eval).images
    samples = []
    for start in range(0, cfg.n_eval, cfg.sample_batch):
        g = torch.Generator().manual_seed(10_000 + start)
        x_T = torch.randn(min(cfg.sample_batch, cfg.n_eval - start), 3, resolution, resolution, generator=g)
        samples.append(sample(x_T, g))
    report = evaluate_samples(net, torch.cat(samples), reals)
    return {"fid": report.fid, "fid_reals": report.baseline.fid, "fid_ratio": report.fid_ratio,
            "confident": report.confident, "confident_reals": report.baseline_confident, "n": cfg.n_eval}


def ddpm_figures(ddpm: TrainedDDPM, model: torch.nn.Module | None = None) -> dict[str, float]:
    """Notebook 03's figures: DDPM with its sample_steps."""
    steps = settings("03_ddpm_training", "cpu").sample_steps

    def sample(x_T: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return ddpm_sample(model or ddpm.model, ddpm.schedule, x_T, num_steps=steps, generator=g, clip_x0=(-1, 1),
                           prediction_type=ddpm.prediction_type, progress=False)

    return _sample_figures(sample, ddpm.recipe.resolution) | {"sample_steps": steps}


FLOW_STEPS = (1, 2, 8, 50)  # the flow Euler step counts a flow release is measured at


def flow_figures(model: torch.nn.Module, resolution: int) -> dict[str, Any]:
    """Notebook 10's figures of a flow model: the flow Euler sampler at FLOW_STEPS steps, {"euler_S": figures}."""
    figures = {}
    for steps in FLOW_STEPS:
        sample = functools.partial(_flow_sample, model, steps)
        figures[f"euler_{steps}"] = _sample_figures(sample, resolution)
    return figures


def _flow_sample(model: torch.nn.Module, steps: int, x_T: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # deterministic (g is not used); clamped to the image range as shown (a flow sampler does not clip)
    return flow_euler_sample(model, x_T, num_steps=steps, progress=False).clamp(-1, 1)


def vae_figures(vae: torch.nn.Module) -> dict[str, float]:
    """Notebook 05's PSNR: held-out images through the posterior mean."""
    cfg, recipe = settings("05_latent_diffusion", "cpu"), release_recipe("vae_shapes")
    held_out = Shapes(resolution=recipe.resolution, seed=cfg.seed + 1).batch(0, cfg.n_psnr).images
    with torch.no_grad():
        scores = psnr(held_out, vae.decode(vae.encode(held_out).mean).clamp(-1, 1))
    return {"psnr": scores.mean().item(), "psnr_worst": scores.min().item(), "n": cfg.n_psnr}


def text_figures(model: torch.nn.Module, text: Any, scales: tuple[float, ...] = (1.0, 3.0, 7.5)) -> dict[str, float]:
    """Notebook 06's guidance sweep at a few scales: every attribute right, seen and held-out pairs."""
    cfg = settings("06_classifier_free_guidance", "cpu")
    resolution = text.model.unet.config.resolution
    net = _feature_net(resolution)
    prompts = Shapes(resolution=16, seed=cfg.seed + 7, holdout=text.holdout).batch(0, cfg.n_prompts).captions
    heldout = Shapes(resolution=16, seed=cfg.seed + 7, holdout=text.holdout, split="heldout").batch(
        0, cfg.n_heldout_prompts).captions
    sampling = {"schedule": text.schedule, "prediction_type": text.prediction_type, "num_steps": cfg.sample_steps,
                "clip_x0": (-1, 1)}
    figures: dict[str, float] = {"n_prompts": cfg.n_prompts, "per_prompt": cfg.per_prompt}
    for name, chosen, at in (("all", prompts, scales), ("heldout_all", heldout, (3.0,))):
        repeated = [p for p in chosen for _ in range(cfg.per_prompt)]
        for s in at:
            images = generate(model, text.tokenizer, repeated, guidance_scale=s, seed=cfg.seed, **sampling)
            figures[f"{name}_s{s:g}"] = prompt_adherence(net, images, repeated)["all"]
    return figures


def measure(name: str, points: int | None = None) -> dict[str, Any]:
    """Measure release ``name`` (shipped weights and snapshots) and write the figures to its manifest entry.
    points: how many snapshots the curve measures, evenly spaced along the run (None: every one)."""
    from safetensors.torch import load_file

    start = time.perf_counter()
    kind = RELEASES[name]["recipe"]
    release = load_release(name)
    snapshots = [path for path in sorted(release_folder(name).glob("step-*.safetensors"))
                 if int(path.stem.split("-")[1]) < release.entry["steps"]]  # the last step's is the shipped one
    if points is not None and len(snapshots) > points:
        snapshots = [snapshots[round((i + 1) * len(snapshots) / points) - 1] for i in range(points)]
    if kind == "ddpm_shapes":
        ddpm = released_ddpm(name, "cpu")
        figures = ddpm_figures(ddpm)
        if ddpm.raw_model is not None:
            figures["raw"] = ddpm_figures(ddpm, ddpm.raw_model)

        def at(weights: dict) -> dict:
            model = type(ddpm.model)(ddpm.model.config)
            model.load_state_dict(weights)
            return ddpm_figures(ddpm, model.eval())
    elif kind == "vae_shapes":
        trained = shapes_vae("cpu", "cpu", released=True)
        figures = vae_figures(trained.vae)

        def at(weights: dict) -> dict:
            vae = type(trained.vae)(trained.vae.config)
            vae.load_state_dict(weights)
            return vae_figures(vae.eval())
    elif kind in ("flow_shapes", "reflow_shapes"):
        flow = released_flow(name, "cpu")
        resolution = flow.model.config.resolution
        figures = flow_figures(flow.model, resolution)

        def at(weights: dict) -> dict:
            model = type(flow.model)(flow.model.config)
            model.load_state_dict(weights)
            return flow_figures(model.eval(), resolution)
    else:
        text = released_text2img(name, "cpu")
        figures = text_figures(text.model, text)

        def at(weights: dict) -> dict:
            import copy

            model = copy.deepcopy(text.model)
            model.load_state_dict(weights)
            return text_figures(model.eval(), text, scales=(3.0,))
    log_path = release_folder(name) / "log.json"
    pieces = json.loads(log_path.read_text())["pieces"] if log_path.is_file() else []

    def seconds(step: int) -> float:  # training time up to this step, summed over the pieces that led to it
        return round(sum(p["seconds"] for p in pieces if p["to"] <= step), 1)

    curve = []
    for path in snapshots:
        step = int(path.stem.split("-")[1])
        curve.append({"step": step, "seconds": seconds(step), **at(load_file(str(path)))})
        print(name, json.dumps(curve[-1]), flush=True)
    final = {k: v for k, v in figures.items() if k != "raw"}
    curve.append({"step": release.entry["steps"], "seconds": seconds(release.entry["steps"]), **final})
    entry = {k: v for k, v in release.entry.items()
             if k not in ("file", "sha256", "bytes", "dtype", "recipe", "recipe_hash")}
    entry |= {"figures": figures, "curve": curve}
    save_release(name, release.ema, release.raw, release.loss_history, entry)
    print(name, json.dumps(figures), f"({time.perf_counter() - start:.0f} s)", flush=True)
    return figures


if __name__ == "__main__":
    import sys

    for name in sys.argv[1:]:
        measure(name)
    print(read_manifest().keys())
