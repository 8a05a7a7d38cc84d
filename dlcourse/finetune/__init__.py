"""Teaching a trained model something new: LoRA (lora.py) and its adapter files (adapter.py), textual inversion
(textual_inversion.py) and DreamBooth's prior preservation (dreambooth.py)."""

from dlcourse.finetune.adapter import load_adapter, save_adapter
from dlcourse.finetune.dreambooth import captioned, prior_preservation
from dlcourse.finetune.lora import (
    DEFAULT_TARGETS,
    LoRAConv2d,
    LoRALinear,
    inject_lora,
    lora_layers,
    lora_parameters,
    merge_lora,
    set_lora_scale,
    unmerge_lora,
)
from dlcourse.finetune.textual_inversion import ExtendedEmbedding, add_concept_token

__all__ = [
    "DEFAULT_TARGETS",
    "ExtendedEmbedding",
    "LoRAConv2d",
    "LoRALinear",
    "add_concept_token",
    "captioned",
    "inject_lora",
    "load_adapter",
    "lora_layers",
    "lora_parameters",
    "merge_lora",
    "prior_preservation",
    "save_adapter",
    "set_lora_scale",
    "unmerge_lora",
]
