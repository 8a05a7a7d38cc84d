"""Input checks of fine-tuning Stable Diffusion (LoRA in its attention and its file, DreamBooth on a photo folder),
kept out of the code a learner reads; the checks of the components and the pipeline are in :mod:`dlcourse.sd.checks`.
Each error names the function and the argument, says what it got, what it needs and how to fix it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from dlcourse.argument_checks import (
    check_bool,
    check_instance,
    check_int,
    check_number,
    check_path,
    describe,
)
from dlcourse.finetune.checks import check_lora_settings, check_model
from dlcourse.sd.checks import check_components, check_sd_images

__all__ = ["check_dreambooth", "check_image_files", "check_image_folder", "check_sd_lora", "check_sd_lora_file"]


def check_sd_lora(caller: str, unet: Any, rank: Any, alpha: Any) -> None:
    check_model(caller, unet, "unet")
    check_lora_settings(caller, rank, alpha, None)


def check_sd_lora_file(unet: Any, path: Path, tensors: Mapping[str, Tensor], names: Sequence[str]) -> int:
    """load_sd_lora: a U-Net LoRA file of one rank whose layers the U-Net has, each A and B of the layer's size, into
    a U-Net without LoRA layers yet. Returns the rank."""
    from dlcourse.finetune.lora import lora_layers

    caller = "load_sd_lora"
    if lora_layers(unet):
        raise ValueError(f"{caller}: unet already has LoRA layers; load the file into a U-Net without them (fresh "
                         "components), or set_lora_scale(unet, 0) to turn the present one off.")  # fmt: skip
    if not names or any(f"unet.{n}.lora_A.weight" not in tensors or f"unet.{n}.lora_B.weight" not in tensors
                        for n in names):  # fmt: skip
        raise ValueError(f"{caller}: {path} is not a U-Net LoRA file (keys unet.<layer>.lora_A/lora_B.weight).")
    ranks = {tensors[f"unet.{n}.lora_A.weight"].shape[0] for n in names}
    if len(ranks) != 1:
        raise ValueError(f"{caller}: the file mixes ranks {sorted(ranks)}; dlcourse LoRA uses one rank.")
    modules = dict(unet.named_modules())
    missing = [n for n in names if not isinstance(modules.get(n), nn.Linear)]
    if missing:
        raise ValueError(f"{caller}: unet lacks Linear layers the file has: {missing[:4]}; it is a LoRA of another "
                         "model.")  # fmt: skip
    for n in names:
        a, b, layer = tensors[f"unet.{n}.lora_A.weight"], tensors[f"unet.{n}.lora_B.weight"], modules[n]
        if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features:
            raise ValueError(f"{caller}: the file's A {tuple(a.shape)} and B {tuple(b.shape)} for {n!r} do not fit "
                             f"unet's Linear({layer.in_features}, {layer.out_features}); it is a LoRA of another "
                             "model.")  # fmt: skip
    return ranks.pop()


def check_image_folder(folder: Any, size: Any, suffixes: Sequence[str]) -> list[Path]:
    """load_image_folder: the folder and the size; returns its image files (by suffix), sorted. Other files are
    skipped with a warning that names them (hidden files and folders quietly)."""
    caller, kinds = "load_image_folder", ", ".join(suffixes)
    folder = check_path(caller, "folder", folder)
    check_int(caller, "size", size, 8, fix="The side of the square images, e.g. 512 for SD 1.5.")
    if not folder.is_dir():
        raise FileNotFoundError(f"{caller}: folder must be a folder of 3-20 photos of your subject ({kinds}); there "
                                f"is none at {folder}. Make it and put the photos in it.")  # fmt: skip
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    images = [p for p in files if p.suffix.lower() in suffixes]
    if not images:
        raise ValueError(f"{caller}: folder {folder} holds no images ({kinds}): add 3-20 photos of your subject.")
    skipped = [p.name for p in files if p.suffix.lower() not in suffixes]
    if skipped:
        warnings.warn(f"{caller}: skipped {len(skipped)} file(s) in {folder} that are not {kinds} by their suffix: "
                      f"{', '.join(skipped[:10])}. Convert any that are photos (e.g. .heic) to .png or .jpg.",
                      stacklevel=3)  # fmt: skip
    return images


def check_image_files(files: Sequence[Path]) -> None:
    """Every file opens as an image; the error names each one that does not (refused rather than skipped: a photo
    you put there and that silently did not train is worse than a message)."""
    from PIL import Image, UnidentifiedImageError

    bad = []
    for path in files:
        try:
            with Image.open(path) as image:
                image.verify()  # reads the header and the structure, not the pixels
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
            bad.append(f"{path.name} ({type(error).__name__})")
    if bad:
        raise ValueError(f"load_image_folder: folder has {len(bad)} file(s) named as images that cannot be read as "
                         f"images: {', '.join(bad)}. Delete them, or open and save them again as .png or .jpg.")


def check_dreambooth(components: Any, instance_images: Any, instance_prompt: Any, config: Any, class_images: Any,
                     class_prompt: Any, prior_weight: Any, rank: Any, gradient_checkpointing: Any, precision: Any,
                     progress: Any) -> None:  # fmt: skip
    """dreambooth_lora's arguments, all of them before any image is encoded."""
    from dlcourse.finetune.lora import lora_layers
    from dlcourse.runtime import Precision
    from dlcourse.training import TrainConfig

    caller = "dreambooth_lora"
    check_components(caller, components)
    check_sd_images(caller, "instance_images", instance_images, components)
    for name, prompt in (("instance_prompt", instance_prompt), ("class_prompt", class_prompt)):
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise (TypeError if not isinstance(prompt, str) else ValueError)(
                f"{caller}: {name} must be a non-empty string such as 'a photo of sks dog' ('a photo of a dog' for "
                f"the class); got {describe(prompt)}."
            )
    check_instance(caller, "config", config, TrainConfig, "a dlcourse.training.TrainConfig",
                   "e.g. TrainConfig(steps=400, batch_size=1, lr=1e-4).")  # fmt: skip
    if (class_images is None) != (class_prompt is None):
        raise ValueError(f"{caller}: prior preservation needs both class_images and class_prompt (or neither); got "
                         f"class_images={describe(class_images)}, class_prompt={describe(class_prompt)}.")
    if class_images is not None:
        check_sd_images(caller, "class_images", class_images, components)
        if tuple(class_images.shape[1:]) != tuple(instance_images.shape[1:]):
            raise ValueError(f"{caller}: class_images must have the instance images' size "
                             f"{tuple(instance_images.shape[1:])}; got {describe(class_images)}.")  # fmt: skip
    check_number(caller, "prior_weight", prior_weight, 0, fix="lambda of Ruiz et al. 2023, Eq. 2 (1 in the paper).")
    check_lora_settings(caller, rank, None, None)
    check_bool(caller, "gradient_checkpointing", gradient_checkpointing)
    if precision is not None:
        check_instance(caller, "precision", precision, Precision, "None or a dlcourse.runtime.Precision",
                       "dlcourse.select_precision(device) picks one.")  # fmt: skip
    check_bool(caller, "progress", progress)
    if lora_layers(components.unet):
        raise ValueError(f"{caller}: components.unet already has LoRA layers (from an earlier run?); start from "
                         "fresh components, e.g. dlcourse.sd.stable_diffusion(model_id) again.")  # fmt: skip
