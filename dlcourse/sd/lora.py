"""Our LoRA (:mod:`dlcourse.finetune.lora`, notebook 07) in Stable Diffusion's attention, saved so diffusers loads it.

SD's U-Net has 16 transformer blocks; each has self-attention (attn1) and cross-attention to the prompt (attn2), both
with the projections to_q, to_k, to_v and to_out.0 (nn.Linear). :data:`SD_TARGETS` picks those 128 layers, as the
diffusers DreamBooth-LoRA script does.

The file (:func:`save_sd_lora`) is a safetensors file in the layout diffusers' ``pipe.load_lora_weights(path)``
reads (peft's names): ``unet.<layer>.lora_A.weight`` = A (r x in) and ``unet.<layer>.lora_B.weight`` =
(alpha / r) * B (out x r). diffusers assumes alpha = r when a file gives no alphas, so folding alpha / r into B makes
its update exactly ours. :func:`load_sd_lora` reads the same file back into our LoRA layers.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dlcourse.argument_checks import check_path
from dlcourse.finetune.checks import check_model
from dlcourse.finetune.lora import inject_lora, lora_layers, unmerged_lora_layers
from dlcourse.sd.finetune_checks import check_sd_lora, check_sd_lora_file

__all__ = ["SD_TARGETS", "inject_sd_lora", "load_sd_lora", "save_sd_lora"]

SD_TARGETS = ("*.attn1.to_q", "*.attn1.to_k", "*.attn1.to_v", "*.attn1.to_out.0",
              "*.attn2.to_q", "*.attn2.to_k", "*.attn2.to_v", "*.attn2.to_out.0")


def inject_sd_lora(unet: nn.Module, rank: int = 4, alpha: float | None = None) -> list[str]:
    """Wrap the attention projections of SD's U-Net in LoRA layers of ``rank``, A and B in float32 (trainable under
    fp16 autocast), everything else frozen. Returns the wrapped layers' names."""
    check_sd_lora("inject_sd_lora", unet, rank, alpha)
    return inject_lora(unet, rank, alpha, targets=SD_TARGETS, dtype=torch.float32)


def save_sd_lora(unet: nn.Module, path: str | Path) -> Path:
    """Write the U-Net's LoRA as a diffusers-loadable safetensors file (atomically); returns the path."""
    from safetensors.torch import save_file

    check_model("save_sd_lora", unet, "unet")
    path = check_path("save_sd_lora", "path", path)
    layers = unmerged_lora_layers(unet, "save_sd_lora", inject="inject_sd_lora(unet)")
    tensors = {}
    for name, layer in layers.items():
        tensors[f"unet.{name}.lora_A.weight"] = layer.lora_down.weight.detach().float().cpu().contiguous()
        b = layer.lora_up.weight.detach().float().cpu() * (layer.alpha / layer.rank)  # alpha / r folded into B
        tensors[f"unet.{name}.lora_B.weight"] = b.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file(tensors, str(partial), metadata={"format": "pt", "written_by": "dlcourse.sd.save_sd_lora"})
    partial.replace(path)  # atomic: a crash leaves the old file or the new one, never half of one
    return path


def load_sd_lora(unet: nn.Module, path: str | Path) -> list[str]:
    """Put the LoRA of a file written by :func:`save_sd_lora` (or a diffusers peft-style file with the same names)
    into a U-Net without LoRA layers. Returns the wrapped layers' names."""
    from safetensors.torch import load_file

    check_model("load_sd_lora", unet, "unet")
    path = check_path("load_sd_lora", "path", path, exists=True, fix="Save one with save_sd_lora(unet, path).")
    tensors = load_file(str(path))
    names = sorted({key.removeprefix("unet.").rsplit(".lora_", 1)[0] for key in tensors if key.startswith("unet.")})
    rank = check_sd_lora_file(unet, path, tensors, names)  # one rank, layers the U-Net has, A and B that fit
    inject_lora(unet, rank, targets=names, dtype=torch.float32)
    layers = lora_layers(unet)
    with torch.no_grad():
        for name in names:  # alpha = rank here, so B is the file's (alpha / r) B as it is
            layers[name].lora_down.weight.copy_(tensors[f"unet.{name}.lora_A.weight"])
            layers[name].lora_up.weight.copy_(tensors[f"unet.{name}.lora_B.weight"])
    return names
