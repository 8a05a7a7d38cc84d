"""Stable Diffusion's four parts, loaded by model id: tokenizer + CLIP text encoder, U-Net, VAE, and a DDIM scheduler.

:class:`SDComponents` holds them with what our loop needs from their configs: the noise schedule (:meth:`schedule`,
scaled-linear betas), the prediction type, the timestep spacing, and the VAE's scaling factor (0.18215 for SD 1.x,
which brings the latents to unit variance). :func:`load_components` reads them from the Hugging Face Hub (or a local
folder) through diffusers; every way that can fail (offline, a wrong or removed id, a gated model) ends in an
:class:`SDLoadError` that says what to do. :func:`stable_diffusion` is what notebook 08 calls: the real model, or,
when it cannot be had, the toy random components of :mod:`dlcourse.sd.tiny`, saying so.
"""

from __future__ import annotations

import contextlib
import importlib.util
from dataclasses import dataclass
from typing import Any

import torch

from dlcourse.argument_checks import check_device, check_dtype
from dlcourse.schedules import NoiseSchedule
from dlcourse.sd.checks import check_load, check_parts

__all__ = ["DEFAULT_MODEL_ID", "SDComponents", "SDLoadError", "load_components", "require_sd_packages",
           "stable_diffusion"]

# Stable Diffusion 1.5 (runwayml's original repository was withdrawn in 2024; this is its maintained public copy).
DEFAULT_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"

_PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}  # diffusers' names -> the course's


class SDLoadError(RuntimeError):
    """Stable Diffusion's weights could not be loaded; the message says why and what to do."""


def require_sd_packages() -> None:
    """Raise an ImportError naming the extra to install when diffusers or transformers is missing."""
    missing = [name for name in ("diffusers", "transformers", "safetensors") if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"dlcourse.sd needs {', '.join(missing)}: pip install 'dlcourse[sd]' (or pip install diffusers "
            "transformers safetensors)."
        )


@dataclass
class SDComponents:
    """tokenizer (CLIPTokenizer), text_encoder (CLIPTextModel), unet (UNet2DConditionModel), vae (AutoencoderKL),
    scheduler (a DDIMScheduler: its config is read, its step never called by our loop), source (where they came
    from, e.g. the model id)."""

    tokenizer: Any
    text_encoder: Any
    unet: Any
    vae: Any
    scheduler: Any
    source: str

    def __post_init__(self) -> None:
        check_parts(self.tokenizer, self.text_encoder, self.unet, self.vae, self.scheduler, self.source)

    @property
    def scaling_factor(self) -> float:
        """z = scaling_factor * (a sample of the VAE's posterior): SD 1.x's 0.18215 brings latents to unit std."""
        return float(self.vae.config.scaling_factor)

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel along each side: 2 per downsampling VAE block, 8 for SD."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def prediction_type(self) -> str:
        """What the U-Net predicts, in the course's names: "eps" (SD 1.x), "v" (SD 2.x at 768 px) or "x0"."""
        return _PREDICTION_TYPES[self.scheduler.config.prediction_type]

    @property
    def device(self) -> torch.device:
        return self.unet.device

    def schedule(self) -> NoiseSchedule:
        """The noise schedule the U-Net was trained with, built from the scheduler's config."""
        config = self.scheduler.config
        if config.beta_schedule not in ("scaled_linear", "linear"):
            raise ValueError(f"dlcourse.sd supports linear and scaled_linear betas; got {config.beta_schedule!r}.")
        return NoiseSchedule.from_name(
            config.beta_schedule, config.num_train_timesteps, beta_start=config.beta_start, beta_end=config.beta_end
        )

    def sampler_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~dlcourse.sampling.ddim_sample` that match the scheduler's config."""
        config = self.scheduler.config
        return {
            "prediction_type": self.prediction_type,
            "timestep_spacing": config.timestep_spacing,
            "steps_offset": config.steps_offset,
            "set_alpha_to_one": config.set_alpha_to_one,
        }

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> SDComponents:
        """Move the three networks to ``device`` (and ``dtype``, e.g. torch.float16 on a GPU); returns self."""
        check_device("SDComponents.to", "device", device, optional=False)
        check_dtype("SDComponents.to", "dtype", dtype)
        for module in (self.text_encoder, self.unet, self.vae):
            module.to(device) if dtype is None else module.to(device, dtype)
        return self


def _diagnose(model_id: str, error: BaseException) -> str:
    """What went wrong loading ``model_id`` and what to do about it, from the exception chain."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    chain, seen = [], error
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    if any(isinstance(e, GatedRepoError) for e in chain):
        return (
            f"'{model_id}' is gated: its licence must be accepted first. Open https://huggingface.co/{model_id}, "
            "accept the licence while logged in, then log in here: `huggingface-cli login` (or set HF_TOKEN)."
        )
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return (
            f"There is no model '{model_id}' on the Hugging Face Hub (a typo, or the repository was renamed or "
            f"removed; SD 1.5 now lives at '{DEFAULT_MODEL_ID}'). Check the id, or pass the path of a local folder "
            "that holds a diffusers Stable Diffusion model."
        )
    return (
        f"Could not load '{model_id}': the Hugging Face Hub cannot be reached (offline?) and the model is not in the "
        f"local cache ({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}). "
        f"Connect to the internet (Colab has it) and run again, or on a machine that has it run "
        f"`huggingface-cli download {model_id}` and copy ~/.cache/huggingface here, or pass a local folder. "
        "dlcourse.sd.tiny_components() gives toy random components that run the same code meanwhile."
    )


def load_components(
    model_id: str = DEFAULT_MODEL_ID,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    local_files_only: bool = False,
) -> SDComponents:
    """Stable Diffusion's components from the Hub (or a local folder), with a DDIM scheduler of the model's config.

    dtype: e.g. torch.float16 on a GPU (half the memory; the repository's fp16 files are fetched when it has
    them, about 2 GB for SD 1.5). No safety checker is loaded (it is a separate 1.2 GB model). Raises
    :class:`SDLoadError` with what to do when the model cannot be had (offline and not cached, a wrong id, a gated
    model).
    """
    require_sd_packages()
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    check_load("load_components", model_id, dtype, device, local_files_only, optional=False)

    kwargs = {"torch_dtype": dtype, "safety_checker": None, "feature_extractor": None,
              "requires_safety_checker": False, "local_files_only": local_files_only}
    try:
        pipe = None
        if dtype == torch.float16:  # the repository's fp16 files when it has them: half the download
            with contextlib.suppress(ValueError, OSError):  # no such variant (or not cached as one)
                pipe = StableDiffusionPipeline.from_pretrained(model_id, variant="fp16", **kwargs)
        if pipe is None:  # the default files
            pipe = StableDiffusionPipeline.from_pretrained(model_id, **kwargs)
    except Exception as error:  # the hub, requests and diffusers raise many types; _diagnose tells them apart
        raise SDLoadError(_diagnose(model_id, error)) from error
    components = SDComponents(
        pipe.tokenizer, pipe.text_encoder, pipe.unet, pipe.vae, DDIMScheduler.from_config(pipe.scheduler.config),
        source=model_id,
    )
    for module in (components.text_encoder, components.unet, components.vae):
        module.eval().requires_grad_(False)
    return components.to(device, dtype) if device is not None else components


def stable_diffusion(
    model_id: str | None,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    local_files_only: bool = False,
) -> SDComponents:
    """The real model when ``model_id`` is given and can be loaded; otherwise the toy random components of
    :func:`~dlcourse.sd.tiny.tiny_components`, after printing why (smoke mode and the gpu dry run pass None)."""
    from dlcourse.sd.tiny import tiny_components

    check_load("stable_diffusion", model_id, dtype, device, local_files_only, optional=True)
    if model_id is not None:
        try:
            return load_components(model_id, dtype=dtype, device=device, local_files_only=local_files_only)
        except SDLoadError as error:
            print(f"{error}\nFalling back to toy random components: the code runs, the pictures are noise.")
    else:
        print("No model id (smoke mode, or a gpu dry run): toy random components; the code runs, the pictures are "
              "noise.")
    return tiny_components().to(device or "cpu")
