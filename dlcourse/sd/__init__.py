"""Stable Diffusion taken apart and driven by the course's own code (notebooks/08_stable_diffusion.ipynb).

An optional part of the package: ``pip install "dlcourse[sd]"`` (diffusers, transformers, safetensors). Read in
this order:

1. :mod:`~dlcourse.sd.components`: the tokenizer, CLIP text encoder, U-Net, VAE and scheduler config, loaded by
   model id (:func:`load_components`), with a clear :class:`SDLoadError` offline or for a wrong id;
2. :mod:`~dlcourse.sd.tiny`: the same components at toy size with random weights, for tests and smoke mode;
3. :mod:`~dlcourse.sd.pipeline`: our DDIM + classifier-free guidance over SD's U-Net on latents, and img2img;
4. :mod:`~dlcourse.sd.lora`: our LoRA in SD's attention, saved in the file format diffusers loads;
5. :mod:`~dlcourse.sd.dreambooth`: DreamBooth-LoRA on a folder of your own images, with prior preservation,
   through :func:`dlcourse.training.train`.
"""

from dlcourse.sd.components import (
    DEFAULT_MODEL_ID,
    SDComponents,
    SDLoadError,
    load_components,
    require_sd_packages,
    stable_diffusion,
)

require_sd_packages()

from dlcourse.sd.dreambooth import IMAGE_SUFFIXES, dreambooth_lora, load_image_folder  # noqa: E402
from dlcourse.sd.lora import SD_TARGETS, inject_sd_lora, load_sd_lora, save_sd_lora  # noqa: E402
from dlcourse.sd.pipeline import (  # noqa: E402  (after the check, so a missing package gets the clear message)
    SDUNet,
    decode_latents,
    encode_images,
    encode_prompt,
    img2img,
    img2img_start,
    text_to_image,
)
from dlcourse.sd.tiny import tiny_components, tiny_tokenizer  # noqa: E402

__all__ = [
    "DEFAULT_MODEL_ID",
    "IMAGE_SUFFIXES",
    "SD_TARGETS",
    "SDComponents",
    "SDLoadError",
    "SDUNet",
    "decode_latents",
    "dreambooth_lora",
    "encode_images",
    "encode_prompt",
    "img2img",
    "img2img_start",
    "inject_sd_lora",
    "load_components",
    "load_image_folder",
    "load_sd_lora",
    "require_sd_packages",
    "save_sd_lora",
    "stable_diffusion",
    "text_to_image",
    "tiny_components",
    "tiny_tokenizer",
]
