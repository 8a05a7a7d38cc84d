"""Saving and loading a LoRA adapter alone: A and B of every LoRA layer plus the settings to rebuild them.

The file holds what the fine-tune changed and nothing else: kilobytes, against megabytes (Stable Diffusion:
gigabytes) for the whole model. It is written atomically and read with ``weights_only=True``
(:mod:`dlcourse.checkpoints`): ``{"lora": {"rank", "alpha", "layers": [names]}, "weights": {name: tensor}}``.
This is the course's own format, not diffusers' (notebook 08 covers Stable Diffusion's).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from dlcourse.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from dlcourse.finetune.lora import inject_lora, lora_layers, unmerged_lora_layers

__all__ = ["load_adapter", "save_adapter"]


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write the LoRA weights of ``model`` (unmerged values) and their settings to ``path``; returns the path."""
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
    state = load_checkpoint(path)
    if "lora" not in state or "weights" not in state:
        raise CheckpointError(f"{path} is not a LoRA adapter written by save_adapter (no 'lora' settings in it).")
    config, weights = state["lora"], state["weights"]
    existing = lora_layers(model)
    if not existing:
        missing = [n for n in config["layers"] if n not in dict(model.named_modules())]
        if missing:
            raise ValueError(f"load_adapter: the model has no layers {missing[:3]}; it is not the model the adapter "
                             f"was trained on.")  # fmt: skip
        inject_lora(model, config["rank"], config["alpha"], targets=config["layers"])
    elif sorted(existing) != sorted(config["layers"]) or any(
        layer.rank != config["rank"] for layer in existing.values()
    ):
        rank = next(iter(existing.values())).rank
        raise ValueError(
            f"load_adapter: the model's LoRA layers (rank {rank}) differ from the adapter's (rank {config['rank']}); "
            f"load it into the plain model instead."
        )
    for name, layer in lora_layers(model).items():
        for part in ("lora_down", "lora_up"):
            weight = getattr(layer, part).weight
            weight.data.copy_(weights[f"{name}.{part}"].to(weight.device, weight.dtype))
        layer.alpha = float(config["alpha"])
    return config["layers"]
