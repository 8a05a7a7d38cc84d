"""Input checks of dlcourse.finetune (LoRA, adapters, textual inversion, DreamBooth), kept out of the code a learner
reads. Each error names the function and the argument, says what it got, what it needs and how to fix it. None of
them runs inside a LoRA layer's forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from dlcourse.argument_checks import (
    check_dtype,
    check_images,
    check_instance,
    check_int,
    check_number,
    check_path,
    check_strings,
    describe,
)

__all__ = [
    "check_adapter",
    "check_adapter_path",
    "check_base_layer",
    "check_caption_inputs",
    "check_concept_token",
    "check_extended_embedding",
    "check_has_lora",
    "check_inject_lora",
    "check_lora_settings",
    "check_model",
    "check_prior_preservation",
    "check_save_path",
    "check_scale",
    "check_targets_matched",
]


def check_model(caller: str, model: Any, name: str = "model") -> None:
    check_instance(caller, name, model, nn.Module, "a torch.nn.Module (the network to fine-tune)")


def _check_rank(caller: str, rank: Any, limit: int, layer: str) -> None:
    check_int(caller, "rank", rank, 1, limit,
              fix=f"{layer}'s smaller dimension is {limit}: a rank above it adds parameters without adding "
                  f"expressiveness; 4 to 64 are usual.")  # fmt: skip


def check_lora_settings(caller: str, rank: Any, alpha: Any, dtype: Any) -> None:
    """rank a positive int, alpha None or a finite number > 0, dtype None or a floating dtype."""
    check_int(caller, "rank", rank, 1, fix="The rank r of the update B A; 4 to 64 are usual.")
    if alpha is not None:
        check_number(caller, "alpha", alpha, 0, above=True,
                     fix="The update is scaled by alpha / rank; None means alpha = rank (scale 1).")  # fmt: skip
    check_dtype(caller, "dtype", dtype)


def check_base_layer(caller: str, base: Any, kind: type[nn.Module], rank: Any, alpha: Any, dtype: Any) -> None:
    """LoRALinear's / LoRAConv2d's arguments: the layer to wrap (of ``kind``, not already wrapped) and the settings."""
    check_instance(caller, "base", base, kind, f"an nn.{kind.__name__} (the frozen layer to wrap)",
                   "inject_lora(model, ...) finds the layers of a whole model for you.")  # fmt: skip
    if isinstance(base, nn.Conv2d) and base.groups != 1:
        raise ValueError(f"{caller}: base must be a groups=1 convolution (B A must have the layer's shape); "
                         f"got one with groups={base.groups}. Leave this layer out of the targets.")  # fmt: skip
    if isinstance(base, nn.Linear):
        _check_rank(caller, rank, min(base.in_features, base.out_features),
                    f"Linear({base.in_features}, {base.out_features})")  # fmt: skip
    else:
        _check_rank(caller, rank, min(base.in_channels, base.out_channels),
                    f"Conv2d({base.in_channels}, {base.out_channels})")  # fmt: skip
    check_lora_settings(caller, rank, alpha, dtype)


def check_inject_lora(
    model: Any, rank: Any, alpha: Any, targets: Any, dtype: Any, lora_type: type[nn.Module], caller: str = "inject_lora"
) -> None:
    """inject_lora's arguments, before the model is touched: targets a list of patterns (a single string would be
    read letter by letter), the LoRA settings, and a model without LoRA layers yet."""
    check_model(caller, model)
    check_strings(caller, "targets", targets, single=False,
                  fix="Module-name patterns (fnmatch), e.g. ['*.attn.qkv', '*.cross_attn.to_q'].")  # fmt: skip
    check_lora_settings(caller, rank, alpha, dtype)
    if any(isinstance(m, lora_type) for m in model.modules()):
        raise ValueError(f"{caller}: model already has LoRA layers; inject once (or start from a fresh model). "
                         "To load an adapter into it, call load_adapter on the plain model.")  # fmt: skip


def check_targets_matched(model: nn.Module, names: list[str], targets: Any, rank: int,
                          caller: str = "inject_lora") -> None:  # fmt: skip
    """The layers ``targets`` matched: at least one, each one LoRA can wrap at ``rank`` (checked before any is)."""
    if not names:
        layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
        raise ValueError(f"{caller}: targets {list(targets)} match no Linear or Conv2d layer of the model; its "
                         f"layers: {layers[:6]}...")  # fmt: skip
    for name in names:
        layer = model.get_submodule(name)
        if isinstance(layer, nn.Conv2d) and layer.groups != 1:
            raise ValueError(f"{caller}: targets match {name!r}, a groups={layer.groups} convolution LoRA cannot "
                             "wrap; narrow the patterns to leave it out.")  # fmt: skip
        dims = (layer.in_features, layer.out_features) if isinstance(layer, nn.Linear) else (
            layer.in_channels, layer.out_channels)  # fmt: skip
        _check_rank(caller, rank, min(dims), f"{type(layer).__name__}{dims} {name!r}")


def check_has_lora(caller: str, model: Any, name: str = "model") -> None:
    """``model`` is a module with LoRA layers."""
    from dlcourse.finetune.lora import lora_layers

    check_model(caller, model, name)
    if not lora_layers(model):
        raise ValueError(f"{caller}: {name} has no LoRA layers; call inject_lora({name}, ...) first (or "
                         f"load_adapter({name}, path)).")  # fmt: skip


def check_scale(caller: str, scale: Any) -> None:
    check_number(caller, "scale", scale, fix="0 gives the base model, 1 the update as trained.")


def check_save_path(caller: str, path: Any) -> Path:
    return check_path(caller, "path", path)


def check_adapter_path(path: Any) -> Path:
    return check_path("load_adapter", "path", path, exists=True, fix="Write one with save_adapter(model, path).")


def check_adapter(model: Any, path: Any, state: Mapping[str, Any], existing: Mapping[str, Any]) -> None:
    """load_adapter: the file's settings and tensors, against the model (and its LoRA layers when it has some)."""
    if "lora" not in state or "weights" not in state:
        from dlcourse.checkpoints import CheckpointError

        raise CheckpointError(f"load_adapter: {path} is not a LoRA adapter written by save_adapter (no 'lora' "
                              "settings in it).")  # fmt: skip
    config, weights = state["lora"], state["weights"]
    modules = dict(model.named_modules())
    if existing:
        if any(layer.merged for layer in existing.values()):
            raise ValueError("load_adapter: model's LoRA layers are merged into its weights (merge_lora), so new A "
                             "and B would not be used. Call unmerge_lora(model) first, load, then merge_lora(model) "
                             "again if you want it merged.")  # fmt: skip
        rank = next(iter(existing.values())).rank
        if sorted(existing) != sorted(config["layers"]) or any(lay.rank != config["rank"] for lay in existing.values()):
            raise ValueError(f"load_adapter: model's LoRA layers (rank {rank}, {len(existing)} layers) differ from the "
                             f"adapter's (rank {config['rank']}, {len(config['layers'])} layers); load it into the "
                             "plain model instead.")  # fmt: skip
    else:
        missing = [n for n in config["layers"] if n not in modules]
        if missing:
            raise ValueError(f"load_adapter: model has no layers {missing[:3]}; it is not the model the adapter at "
                             f"{path} was trained on.")  # fmt: skip
    for name in config["layers"]:
        layer = existing.get(name) if existing else None
        base = layer.base if layer is not None else modules[name]
        if not isinstance(base, (nn.Linear, nn.Conv2d)):
            raise ValueError(f"load_adapter: the adapter wraps {name!r}, which in model is a {type(base).__name__}, "
                             "not a Linear or Conv2d; it is not the model the adapter was trained on.")  # fmt: skip
        out_dim, in_dim = base.weight.shape[:2]
        down, up = weights.get(f"{name}.lora_down"), weights.get(f"{name}.lora_up")
        if down is None or up is None or down.shape[1] != in_dim or up.shape[0] != out_dim:
            raise ValueError(f"load_adapter: the adapter's A and B for {name!r} ({describe(down)}, {describe(up)}) "
                             f"do not fit model's layer of {in_dim} -> {out_dim}; it is not the model the adapter "
                             "was trained on.")  # fmt: skip


def check_extended_embedding(base: Any, new: Any) -> None:
    caller = "ExtendedEmbedding"
    check_instance(caller, "base", base, nn.Embedding, "an nn.Embedding (the frozen token table)")
    check_instance(caller, "new", new, Tensor, f"a float tensor (n, {base.embedding_dim}) of new rows")
    if new.ndim != 2 or new.shape[0] < 1 or new.shape[1] != base.embedding_dim or not new.is_floating_point():
        raise ValueError(f"{caller}: new must be a float tensor (n, {base.embedding_dim}), n >= 1, one row per new "
                         f"word; got {describe(new)}.")  # fmt: skip


def check_concept_token(tokenizer: Any, text_encoder: Any, word: Any, init_word: Any) -> None:
    """add_concept_token: a course Tokenizer and the TextEncoder trained with it, a new single word, a known one."""
    from dlcourse.finetune.textual_inversion import ExtendedEmbedding
    from dlcourse.models.text import PAD, START, TextEncoder, Tokenizer, _words

    caller = "add_concept_token"
    check_instance(caller, "tokenizer", tokenizer, Tokenizer, "a dlcourse Tokenizer",
                   "For Stable Diffusion's CLIP tokenizer use tokenizer.add_tokens (notebook 08 uses a rare word).")
    check_instance(caller, "text_encoder", text_encoder, TextEncoder, "the dlcourse TextEncoder the tokenizer feeds")
    for name, value in (("word", word), ("init_word", init_word)):
        check_instance(caller, name, value, str, "a single word (a string)")
    if _words(word) != [word.lower()] or word.lower() in (PAD, START):
        raise ValueError(
            f"{caller}: word must be one word the tokenizer reads as one token (letters or digits, no spaces, "
            f"commas or full stops); got {word!r}, which it splits into {_words(word)}, so no prompt could "
            "produce it. Pick one rare identifier such as 'sks'."
        )
    if word.lower() in tokenizer.ids:
        raise ValueError(f"{caller}: word {word!r} is already in the vocabulary; a known word brings its meaning "
                         "along. Pick a rare identifier such as 'sks'.")  # fmt: skip
    if init_word not in tokenizer.ids or init_word in (PAD, START):
        raise ValueError(f"{caller}: init_word must be a word of the vocabulary (its embedding is the start); got "
                         f"{init_word!r}. Use the concept's class, e.g. 'triangle'.")  # fmt: skip
    if isinstance(text_encoder.token_embedding, ExtendedEmbedding):
        raise ValueError(f"{caller}: text_encoder already has a concept token; start from the plain model for "
                         "another one.")  # fmt: skip
    rows = text_encoder.token_embedding.num_embeddings
    if rows != len(tokenizer):
        raise ValueError(f"{caller}: text_encoder has {rows} token rows but tokenizer {len(tokenizer)} words; pass "
                         "the tokenizer it was trained with.")  # fmt: skip


def check_caption_inputs(caller: str, images: Any, prompts: Any, tokenizer: Any, *, images_name: str = "images",
                         prompts_name: str = "prompts", min_count: int = 1) -> list[str]:  # fmt: skip
    """Images (N, C, H, W), one prompt or N, and a course Tokenizer; returns the N prompts."""
    from dlcourse.models.text import Tokenizer

    check_images(caller, images_name, images, min_count=min_count)
    prompts = check_strings(caller, prompts_name, prompts, count=images.shape[0],
                            fix="Pass one prompt or one per image.")  # fmt: skip
    check_instance(caller, "tokenizer", tokenizer, Tokenizer, "a dlcourse Tokenizer (e.g. Tokenizer.for_shapes())")
    return prompts


def check_prior_preservation(class_images: Any, class_prompt: Any, tokenizer: Any, weight: Any,
                             batch_size: Any) -> None:  # fmt: skip
    caller = "prior_preservation"
    check_instance(caller, "class_prompt", class_prompt, str, "the class prompt, a string such as 'a triangle'")
    if not class_prompt.strip():
        raise ValueError(f"{caller}: class_prompt must name the class, e.g. 'a triangle'; got the empty prompt.")
    check_caption_inputs(caller, class_images, class_prompt, tokenizer, images_name="class_images",
                         prompts_name="class_prompt", min_count=2)  # fmt: skip
    check_number(caller, "weight", weight, 0, fix="lambda of Ruiz et al. 2023, Eq. 2 (1 in the paper).")
    if batch_size is not None:
        check_int(caller, "batch_size", batch_size, 1, class_images.shape[0],
                  fix="Class images per step; None uses the run's batch size.")  # fmt: skip
