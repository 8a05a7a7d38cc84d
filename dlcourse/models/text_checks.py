"""Input checks of the tokenizer, the text encoder and the text-conditioned U-Net, kept apart so that
dlcourse/models/text.py reads as the networks alone.

Each error says what was passed, what the model was built for, and how to fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from dlcourse.argument_checks import (
    check_instance,
    check_int,
    check_on_device,
    check_tensor,
    describe,
)

__all__ = [
    "check_from_unconditional",
    "check_prompt_words",
    "check_prompts",
    "check_text_encoder_args",
    "check_text_encoder_inputs",
    "check_text_unet",
    "check_token_ids",
    "check_tokenizer_args",
    "check_weights_map",
]


def check_tokenizer_args(
    vocabulary: Any, max_length: Any, specials: tuple[str, ...], split: Callable[[str], list[str]]
) -> list[str]:
    """Tokenizer(vocabulary, max_length): the vocabulary's words, without duplicates or the special tokens.

    specials: the special tokens (<pad>, <start>); split: how the tokenizer splits a prompt into words.
    """
    if isinstance(vocabulary, str) or not isinstance(vocabulary, Sequence | set | frozenset):
        raise TypeError(
            f"Tokenizer: vocabulary must be a list of words, got {describe(vocabulary)}. Pass e.g. "
            "['a', 'red', 'circle'] (a single string would be split into letters)."
        )
    for word in vocabulary:
        if not isinstance(word, str) or (word not in specials and split(word) != [word]):
            raise ValueError(
                f"Tokenizer: vocabulary must hold lower-case words without spaces, commas or full stops (the tokenizer "
                f"splits prompts into such words, so it could never look this one up); got {word!r}."
            )
    words = [w for w in dict.fromkeys(vocabulary) if w not in specials]
    if not words:
        raise ValueError("Tokenizer needs at least one word in its vocabulary.")
    check_int("Tokenizer", "max_length", max_length, 2, fix="It counts the start token and the words.")
    return words


def check_prompts(prompts: Any) -> list[str]:
    """Tokenizer.encode's prompts: one string or a sequence of strings; returned as a list."""
    if isinstance(prompts, str):
        return [prompts]
    if not isinstance(prompts, Sequence):
        raise TypeError(f"Tokenizer.encode: prompts must be a string or a list of strings, got {describe(prompts)}.")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise TypeError(
                f"Tokenizer.encode: prompts[{i}] must be a string, got {describe(prompt)} ({type(prompt).__name__}). "
                "Pass the prompts as text, e.g. ['a red circle', ''] ('' is the unconditional prompt)."
            )
    return list(prompts)


def check_prompt_words(prompt: str, words: list[str], vocabulary: list[str], max_length: int) -> None:
    """Every word of a prompt is known (else the closest known words are named), and the prompt fits."""
    known = set(vocabulary[2:])
    unknown = [w for w in words if w not in known]
    if unknown:
        close = {w: difflib.get_close_matches(w, vocabulary[2:], n=3) for w in unknown}
        hints = "; ".join(f"{w!r}: did you mean {', '.join(c)}?" if c else f"{w!r}" for w, c in close.items())
        raise ValueError(
            f"prompt {prompt!r} has words the text encoder has never seen ({hints}). It knows "
            f"{len(vocabulary) - 2} words: {', '.join(vocabulary[2:])}."
        )
    if len(words) + 1 > max_length:
        raise ValueError(
            f"prompt {prompt!r} has {len(words)} words, but a prompt holds at most {max_length - 1} "
            f"(max_length={max_length}, one position for the start token). Shorten it."
        )


def check_token_ids(ids: Any, vocab_size: int) -> list[list[int]]:
    """Tokenizer.decode's ids: an integer tensor (B, L) of indices into the vocabulary; returned as lists."""
    check_tensor("Tokenizer.decode", "ids", ids, "token ids (B, L) from Tokenizer.encode", ndim=2)
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor (torch.long) from Tokenizer.encode, got dtype {ids.dtype}.")
    rows = ids.tolist()  # decode reads every id on the host anyway
    bad = sorted({i for row in rows for i in row if not 0 <= i < vocab_size})
    if bad:
        raise ValueError(f"ids holds {bad[:5]}, outside the vocabulary's ids 0..{vocab_size - 1}.")
    return rows


def check_text_encoder_args(vocab_size: Any, max_length: Any, dim: Any, depth: Any, num_heads: Any) -> None:
    """TextEncoder(vocab_size, max_length, dim, depth, num_heads): positive integers, heads dividing dim."""
    for name, value in (("vocab_size", vocab_size), ("max_length", max_length), ("dim", dim), ("depth", depth),
                        ("num_heads", num_heads)):  # fmt: skip
        check_int("TextEncoder", name, value, 1, fix="Build it as TextEncoder(len(tokenizer), tokenizer.max_length).")
    if dim % num_heads:
        raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads} (each head gets dim / num_heads).")


def check_text_encoder_inputs(ids: Any, mask: Any, max_length: int, device: torch.device) -> None:
    """TextEncoder.forward's ids (B, L) integer and mask (B, L) bool, L <= max_length, on the encoder's device.
    Metadata only (it runs in every training step): the ids' values are not read."""
    check_tensor("TextEncoder", "ids", ids, "token ids (B, L) from Tokenizer.encode")
    check_tensor("TextEncoder", "mask", mask, "the padding mask (B, L), bool, from Tokenizer.encode")
    if ids.ndim != 2 or mask.shape != ids.shape or ids.shape[1] > max_length:
        raise ValueError(
            f"TextEncoder takes ids (B, L) and a mask of the same shape with L <= {max_length} "
            f"(from Tokenizer.encode); got ids {tuple(ids.shape)} and mask {tuple(mask.shape)}."
        )
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor (torch.long) from Tokenizer.encode, got dtype {ids.dtype}.")
    if mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a bool tensor (True = a real token), got dtype {mask.dtype}: ~mask of an integer mask "
            "is not its complement. Use mask.bool()."
        )
    check_on_device("TextEncoder", "ids", ids, device, "the text encoder's weights are")
    check_on_device("TextEncoder", "mask", mask, device, "the text encoder's weights are")


def check_text_unet(unet: Any, text_encoder: Any, encoder_type: type) -> None:
    """TextConditionedUNet(unet, text_encoder): a U-Net with cross-attention of the text encoder's width."""
    check_instance("TextConditionedUNet", "unet", unet, nn.Module, "a UNet", "Build it with context_dim=...")
    check_instance("TextConditionedUNet", "text_encoder", text_encoder, encoder_type, "a TextEncoder")
    if not hasattr(unet, "config"):
        raise TypeError(f"unet must be a dlcourse.models.UNet (a module with a config), got {type(unet).__name__}.")
    context_dim = getattr(unet.config, "context_dim", None)
    if context_dim != text_encoder.dim:
        raise ValueError(
            f"the U-Net's cross-attention reads context_dim={context_dim}, but the text encoder gives "
            f"{text_encoder.dim}-d embeddings: build the U-Net with UNetConfig(context_dim={text_encoder.dim})."
        )


def check_from_unconditional(unet: Any, text_encoder: Any, encoder_type: type) -> None:
    """TextConditionedUNet.from_unconditional(unet, text_encoder): a trained U-Net without cross-attention."""
    check_instance("from_unconditional", "unet", unet, nn.Module, "a UNet", "Pass e.g. shapes_ddpm().model.")
    check_instance("from_unconditional", "text_encoder", text_encoder, encoder_type, "a TextEncoder")
    if not hasattr(unet, "config"):
        raise TypeError(f"unet must be a dlcourse.models.UNet (a module with a config), got {type(unet).__name__}.")
    if getattr(unet.config, "context_dim", None) is not None:
        raise ValueError(
            f"from_unconditional takes a U-Net without cross-attention, but this one already reads a context "
            f"(context_dim={unet.config.context_dim}); wrap it directly: TextConditionedUNet(unet, text_encoder)."
        )


def check_weights_map(missing: list[str], unexpected: list[str]) -> None:
    """The unconditional U-Net's weights load into the conditioned copy, only cross-attention left new."""
    if unexpected or not all(".cross_attn." in key for key in missing):
        raise ValueError(
            f"from_unconditional takes a U-Net without cross-attention; its weights do not map onto the "
            f"conditioned copy (missing: {[k for k in missing if '.cross_attn.' not in k][:3]}, unexpected: "
            f"{unexpected[:3]}). Pass the plain unconditional U-Net (e.g. shapes_ddpm().model)."
        )
