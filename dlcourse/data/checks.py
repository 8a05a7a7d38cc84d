"""Input checks of the Shapes world, kept out of the code a learner reads: each says what is wrong and how
to fix it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dlcourse.argument_checks import check_device, check_instance, check_number, describe
from dlcourse.data.world import ATTRIBUTES


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_resolution(resolution: int) -> None:
    if not _is_int(resolution) or not 8 <= resolution <= 512:  # 512: Stable Diffusion's images (notebook 08, gpu)
        raise ValueError(
            f"resolution must be an int from 8 to 512 (pixels per side), got {resolution!r}. "
            "The course uses 32 (24 for quick CPU runs, 64 for larger images, 512 for Stable Diffusion)."
        )


def check_seed(seed: int) -> None:
    if not _is_int(seed) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}.")


def check_split(split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}.")


def check_count(caller: str, name: str, value: int) -> None:
    """An image index or count: an int >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{caller}: {name} must be an int >= 0, got {value!r}.")


def check_holdout(holdout: Mapping[str, str] | Sequence[Mapping[str, str]]) -> tuple[dict[str, str], ...]:
    """The held-out combinations as a tuple of {attribute: value} rules (one dict is one rule)."""
    rules = (holdout,) if isinstance(holdout, Mapping) else tuple(holdout)
    for rule in rules:
        if not isinstance(rule, Mapping) or not rule:
            raise ValueError(
                f"holdout must be a list of non-empty dicts of attributes, e.g. "
                f"[{{'shape': 'triangle', 'colour': 'red'}}], got {holdout!r}."
            )
        for name, value in rule.items():
            if name not in ATTRIBUTES:
                raise ValueError(f"holdout: unknown attribute {name!r}; valid are {list(ATTRIBUTES)}.")
            if value not in ATTRIBUTES[name]:
                raise ValueError(f"holdout: unknown {name} {value!r}; valid are {list(ATTRIBUTES[name])}.")
    return tuple(dict(rule) for rule in rules)


def checked_attributes(
    attributes: Mapping[str, torch.Tensor], device: str | torch.device | None, check_values: bool, caller: str = "render"
) -> dict[str, torch.Tensor]:
    """The attributes as (N,) LongTensors on ``device`` (default: their own device).

    check_values: also check that every index is in range (one host synchronisation).
    """
    check_instance(
        caller, "attributes", attributes, Mapping, f"a mapping {{name: (N,) LongTensor}} for {list(ATTRIBUTES)}",
        "E.g. Shapes(...).batch(0, n).attributes, or attributes_from_captions(captions).",
    )
    check_device(caller, "device", device)
    missing = [name for name in ATTRIBUTES if name not in attributes]
    if missing:
        raise ValueError(f"{caller}: attributes lack {missing}; give all of {list(ATTRIBUTES)} as (N,) tensors")
    device = torch.device(device) if device is not None else torch.as_tensor(attributes["shape"]).device
    attributes = {name: torch.as_tensor(attributes[name], device=device) for name in ATTRIBUTES}
    n = attributes["shape"].shape[0] if attributes["shape"].ndim else None
    for name, t in attributes.items():
        if t.dtype != torch.long or n is None or t.shape != (n,):
            raise ValueError(
                f"{caller}: attributes[{name!r}] must be an (N,) LongTensor with N like attributes['shape'] "
                f"({'a 0-d tensor' if n is None else n}), got {t.dtype} of shape {tuple(t.shape)}."
            )
        if check_values and bool(((t < 0) | (t >= len(ATTRIBUTES[name]))).any()):
            raise ValueError(
                f"{caller}: attributes[{name!r}] must hold indices 0..{len(ATTRIBUTES[name]) - 1} into "
                f"{ATTRIBUTES[name]}; pass check=False to skip this test (it synchronises with the device)."
            )
    return attributes


def check_attribute_indices(values: Mapping[str, list[int]], caller: str) -> None:
    """Indices already read back to the host (lists): in range, so none silently picks a value from the end."""
    for name, indices in values.items():
        bad = sorted({i for i in indices if not 0 <= i < len(ATTRIBUTES[name])})
        if bad:
            raise ValueError(
                f"{caller}: attributes[{name!r}] holds {bad[:5]}, but its indices run 0..{len(ATTRIBUTES[name]) - 1} "
                f"into {ATTRIBUTES[name]}."
            )


def check_named(named: Any, n: int, optional: tuple[str, ...]) -> None:
    """captions_from_attributes' named: None or {name: (N,) bool} for each optional attribute."""
    if named is None:
        return
    check_instance("captions_from_attributes", "named", named, Mapping, f"None or {{name: (N,) bool}} for {optional}")
    for name in optional:
        value = named.get(name)
        if not isinstance(value, torch.Tensor) or value.dtype != torch.bool or value.shape != (n,):
            raise ValueError(
                f"captions_from_attributes: named[{name!r}] must be a ({n},) bool tensor (True: the caption names "
                f"the {name}), one entry per image; got {describe(value)}. named needs every one of {list(optional)}."
            )


def check_p_name(p_name: Any) -> None:
    check_number(
        "partial_captions", "p_name", p_name, 0, 1, above=True,
        fix="It is the chance a caption names each of size, colour and position (1: every caption is complete).",
    )


def check_cpu_generator(caller: str, generator: Any) -> None:
    """A generator for random numbers drawn on the CPU: None or a CPU torch.Generator."""
    if generator is not None and (
        not isinstance(generator, torch.Generator) or torch.device(generator.device).type != "cpu"
    ):
        raise ValueError(
            f"{caller}: generator must be None or a CPU torch.Generator (the coins are drawn on the CPU), got "
            f"{describe(generator)}. Use torch.Generator().manual_seed(seed)."
        )


def check_caption(caption: Any) -> None:
    if not isinstance(caption, str):
        raise TypeError(
            f"parse_caption: caption must be a string like 'a small red circle at the top left', got {describe(caption)} "
            f"({type(caption).__name__})."
        )


def check_caption_word(caption: str, word: str, name: str | None, found: Mapping[str, str], phrases: list[str]) -> None:
    """One word of a caption names a value of an attribute (``name``; None if of none) not named before."""
    if name is None:
        words_known = "; ".join(f"{k}: {', '.join(v)}" for k, v in ATTRIBUTES.items() if k != "position")
        raise ValueError(
            f"parse_caption: unknown word {word!r} in {caption!r}. Shapes captions read "
            f"'a <size> <colour> <shape> <where>', with {words_known}; <where> is one of "
            f"{', '.join(repr(p) for p in phrases)}."
        )
    if name in found:
        raise ValueError(f"parse_caption: {caption!r} names the {name} twice ({found[name]!r} and {word!r}).")


def check_caption_found(caption: str, found: Mapping[str, str], complete: bool) -> None:
    """A caption names some attribute; all four when ``complete`` (attributes_from_captions)."""
    if not found:
        raise ValueError(f"parse_caption: {caption!r} names no attribute; try 'a small red circle at the top left'.")
    missing = [name for name in ATTRIBUTES if name not in found]
    if complete and missing:
        raise ValueError(
            f"caption {caption!r} does not say its {', '.join(missing)}; attributes_from_captions needs "
            f"all four attributes, e.g. 'a small red circle at the top left'."
        )


def check_captions(captions: Any, device: Any) -> None:
    """attributes_from_captions' captions (a list or tuple of strings; each is checked when parsed) and device."""
    check_device("attributes_from_captions", "device", device)
    if isinstance(captions, str) or not isinstance(captions, Sequence):
        raise TypeError(
            f"attributes_from_captions takes a list of captions, got {describe(captions)}; wrap a single caption in a list."
        )


def check_jitter(jitter: Any, n: int, check_values: bool) -> None:
    """render's jitter: a float (N, 4) tensor in [-1, 1] (values checked, one host synchronisation, if asked)."""
    if not isinstance(jitter, torch.Tensor) or jitter.shape != (n, 4) or not jitter.is_floating_point():
        raise ValueError(f"render: jitter must be a float ({n}, 4) tensor, values in [-1, 1]; got {describe(jitter)}.")
    if check_values and n and not bool((jitter.abs() <= 1).all()):  # NaN fails too
        raise ValueError(
            "render: jitter must be in [-1, 1] (fractions of the largest offset, size change and rotation), but some "
            "values are outside (or NaN); pass check=False to skip this test (it synchronises with the device)."
        )


def check_hollow(hollow: Any, n: int) -> None:
    if isinstance(hollow, bool):
        return
    if not isinstance(hollow, torch.Tensor) or hollow.dtype != torch.bool or hollow.shape != (n,):
        raise ValueError(f"render: hollow must be True, False or an ({n},) bool tensor; got {describe(hollow)}.")
