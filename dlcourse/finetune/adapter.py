"""Saving and loading a LoRA adapter alone: A and B of every LoRA layer plus the settings to rebuild them.

The file holds what the fine-tune changed and nothing else: kilobytes, against megabytes (Stable Diffusion:
gigabytes) for the whole model. It is written atomically and read with ``weights_only=True``
(:mod:`dlcourse.checkpoints`): ``{"lora": {"rank", "alpha", "layers": [names]}, "weights": {name: tensor}}``.
This is the course's own format, not diffusers' (notebook 08 covers Stable Diffusion's).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dlcourse.checkpoints import load_checkpoint, save_checkpoint
from dlcourse.finetune.checks import check_adapter, check_adapter_path, check_model, check_save_path
from dlcourse.finetune.lora import inject_lora, lora_layers, unmerged_lora_layers

__all__ = ["load_adapter", "save_adapter"]


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write the LoRA weights of ``model`` (unmerged values) and their settings to ``path``; returns the path."""
    check_model("save_adapter", model)
    path = check_save_path("save_adapter", path)
    layers = unmerged_lora_layers(model, "save_adapter")
    first = next(iter(layers.values()))
    weights = {
        f"{name}.{part}": getattr(layer, part).weight.detach().cpu()
        for name, layer in layers.items()
        for part in ("lora_down", "lora_up")
    }
    config = {"rank": first.rank, "alpha": first.alpha, "layers": list(layers)}
    return save_checkpoint({"lora": config, "weights": weights}, path)


def load_adapter(model: nn.Module, path: str | Path) -> list[str]:
    """Put the adapter saved at ``path`` into ``model``: LoRA layers are injected where the file has them (or
    reused if the model already has the same ones) and their weights loaded. Returns the layer names."""
    check_model("load_adapter", model)
    state = load_checkpoint(check_adapter_path(path))
    existing = lora_layers(model)
    check_adapter(model, path, state, existing)  # a merged model, or one the adapter was not trained on, is refused
    config, weights = state["lora"], state["weights"]
    if not existing:
        inject_lora(model, config["rank"], config["alpha"], targets=config["layers"])
    for name, layer in lora_layers(model).items():
        for part in ("lora_down", "lora_up"):
            weight = getattr(layer, part).weight
            weight.data.copy_(weights[f"{name}.{part}"].to(weight.device, weight.dtype))
        layer.alpha = float(config["alpha"])
    return config["layers"]
