"""DreamBooth-LoRA on Stable Diffusion: your own photos, a rare word, and prior preservation (Ruiz et al. 2023).

The same recipe as notebook 07 (:mod:`dlcourse.finetune.dreambooth`) on the real model: the images are encoded once
by the frozen VAE (cached latents, so the VAE costs nothing per step), the prompts once by the frozen CLIP encoder,
and :func:`dlcourse.training.train` trains only the LoRA of :func:`~dlcourse.sd.lora.inject_sd_lora` with SD's own
loss (its scheduler's betas and target: eps for SD 1.x, v for SD 2.x at 768 px), plus the prior-preservation term on
the base model's images of the class. On a GPU it runs at fp16 autocast with float32 LoRA weights;
``gradient_checkpointing`` recomputes the U-Net's activations in the backward pass instead of storing them: less
memory for one more forward pass per step. Whether SD 1.5 then fits a T4's 15 GB, and what the recomputation costs in
time, are not yet measured (``bench/sd_real_size.py`` measures both on a GPU; no run has had one yet).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor

from dlcourse.finetune.lora import lora_parameters
from dlcourse.runtime import Precision
from dlcourse.sd.components import SDComponents
from dlcourse.sd.finetune_checks import check_dreambooth, check_image_files, check_image_folder
from dlcourse.sd.lora import inject_sd_lora
from dlcourse.sd.pipeline import SDUNet, encode_images, encode_prompt
from dlcourse.training import LossTerm, TrainConfig, TrainResult, train

__all__ = ["IMAGE_SUFFIXES", "dreambooth_lora", "load_image_folder"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def load_image_folder(folder: str | Path, size: int) -> Tensor:
    """Every image in ``folder`` as (N, 3, size, size) in [-1, 1]: the shorter side resized to ``size``, then the
    centre cropped (what DreamBooth scripts do). Files of other suffixes are skipped with a warning naming them;
    a file named as an image that is not one is an error naming it."""
    from PIL import Image
    from torchvision.transforms import v2

    files = check_image_folder(folder, size, IMAGE_SUFFIXES)  # the image files, sorted
    check_image_files(files)
    to_tensor = v2.Compose([v2.PILToTensor(), v2.Resize(size, antialias=True), v2.CenterCrop(size),
                            v2.ToDtype(torch.float32, scale=True)])
    return torch.stack([to_tensor(Image.open(f).convert("RGB")) for f in files]) * 2 - 1


def _latents_and_prompts(components: SDComponents, images: Tensor, prompt: str, generator: torch.Generator):
    """{"x0": cached latents (N, 4, h, w), "context": the prompt's embeddings (N, 77, D)}, encoded in chunks of 8."""
    latents = torch.cat([encode_images(components, chunk, generator).float() for chunk in images.split(8)])
    context = encode_prompt(components, prompt).float().expand(latents.shape[0], -1, -1)
    return {"x0": latents, "context": context.contiguous()}


def dreambooth_lora(
    components: SDComponents,
    instance_images: Tensor,
    instance_prompt: str,
    config: TrainConfig,
    *,
    class_images: Tensor | None = None,
    class_prompt: str | None = None,
    prior_weight: float = 1.0,
    rank: int = 4,
    gradient_checkpointing: bool = False,
    precision: Precision | None = None,
    progress: bool = True,
) -> TrainResult:
    """Inject a LoRA of ``rank`` into the U-Net and train it on ``instance_images`` (N, 3, H, W) in [-1, 1] captioned
    ``instance_prompt`` ("a photo of sks dog"), with prior preservation on ``class_images`` of ``class_prompt``
    ("a photo of a dog", the base model's own samples) at ``prior_weight`` when given.

    config: steps, batch size, lr, seed...; its prediction_type is replaced by the model's. The U-Net keeps the
    trained LoRA (raw weights; its EMA is in the result). Save it with :func:`~dlcourse.sd.lora.save_sd_lora`.
    """
    check_dreambooth(components, instance_images, instance_prompt, config, class_images, class_prompt, prior_weight,
                     rank, gradient_checkpointing, precision, progress)  # fmt: skip
    generator = torch.Generator(instance_images.device).manual_seed(config.seed)  # the VAE posterior samples
    data = _latents_and_prompts(components, instance_images, instance_prompt, generator)
    terms = []
    if class_images is not None:
        terms.append(LossTerm(_latents_and_prompts(components, class_images, class_prompt, generator), prior_weight))
    inject_sd_lora(components.unet, rank)
    if gradient_checkpointing:
        components.unet.enable_gradient_checkpointing()
    config = dataclasses.replace(config, prediction_type=components.prediction_type)
    return train(
        SDUNet(components.unet), data, components.schedule(), config, trainable=lora_parameters(components.unet),
        extra_terms=terms, data_range=None, device=components.device, precision=precision, progress=progress,
    )
