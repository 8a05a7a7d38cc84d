"""Captions of Shapes images, and the attributes read back out of them.

``captions_from_attributes`` writes "a {size} {colour} {shape} {where}" for each image (``partial_captions``
leaves some attributes out at random, for a text model that should also understand "a red circle");
``parse_caption`` is its inverse for one caption (and accepts partial ones, "a red triangle");
``attributes_from_captions`` turns complete captions into the (N,) index tensors that
:func:`dlcourse.data.render` draws. The words are those of :mod:`dlcourse.data.world`.

Shown in notebooks/01_forward_process.ipynb, "The data: Shapes" (each image printed with its caption).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from dlcourse.data.checks import (
    check_attribute_indices,
    check_caption,
    check_caption_found,
    check_caption_word,
    check_captions,
    check_cpu_generator,
    check_named,
    check_p_name,
    checked_attributes,
)
from dlcourse.data.world import ATTRIBUTES, COLOURS, POSITIONS, SHAPES, SIZES
from dlcourse.runtime import get_device

__all__ = ["attributes_from_captions", "captions_from_attributes", "parse_caption", "partial_captions"]

# Position -> how a caption says it: "a small red circle" + " at the top left".
_POSITION_PHRASES = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}


_OPTIONAL = ("size", "colour", "position")  # what a partial caption may leave out; it always names the shape


def captions_from_attributes(
    attributes: Mapping[str, torch.Tensor], named: Mapping[str, torch.Tensor] | None = None
) -> list[str]:
    """One caption per image: "a {size} {colour} {shape} {position phrase}".

    attributes: {"shape", "colour", "size", "position"} -> (N,) LongTensor of indices into ATTRIBUTES.
    named: {"size", "colour", "position"} -> (N,) bool, which of them each caption names (default: all); the
    shape is always named ("a red circle", "a small circle on the left"). Moves the tensors to the CPU.
    """
    attributes = checked_attributes(attributes, None, check_values=False, caller="captions_from_attributes")
    values = {name: attributes[name].tolist() for name in ATTRIBUTES}
    check_attribute_indices(values, "captions_from_attributes")  # on the lists: no extra synchronisation
    n = len(values["shape"])
    check_named(named, n, _OPTIONAL)
    says = {name: [True] * n if named is None else named[name].tolist() for name in _OPTIONAL}
    captions = []
    for i, (shape, colour, size, position) in enumerate(
        zip(values["shape"], values["colour"], values["size"], values["position"], strict=True)
    ):
        words = ["a", SIZES[size] if says["size"][i] else "", COLOURS[colour] if says["colour"][i] else "",
                 SHAPES[shape], _POSITION_PHRASES[POSITIONS[position]] if says["position"][i] else ""]  # fmt: skip
        captions.append(" ".join(w for w in words if w))
    return captions


def partial_captions(
    attributes: Mapping[str, torch.Tensor], p_name: float, generator: torch.Generator | None = None
) -> list[str]:
    """Captions that name each of size, colour and position with probability ``p_name`` (the shape always), so a
    text model trained on them also understands short prompts ("a red circle", "a square on the left")."""
    check_p_name(p_name)
    check_cpu_generator("partial_captions", generator)
    attributes = checked_attributes(attributes, None, check_values=False, caller="partial_captions")
    n = attributes["shape"].shape[0]
    coins = torch.rand(n, len(_OPTIONAL), generator=generator) < p_name
    return captions_from_attributes(attributes, {name: coins[:, k] for k, name in enumerate(_OPTIONAL)})


def parse_caption(caption: str) -> dict[str, str]:
    """Read the attributes back out of a caption: the inverse of :func:`captions_from_attributes`.

    "a small red circle at the top left" -> {"size": "small", "colour": "red", "shape": "circle",
    "position": "top left"}. Partial captions give the attributes they name ("a red triangle" ->
    {"colour": "red", "shape": "triangle"}); case, commas and extra spaces are ignored. An unknown word raises
    a ValueError listing the words Shapes knows.
    """
    check_caption(caption)
    text = " ".join(caption.lower().replace(",", " ").split())
    found: dict[str, str] = {}
    for position, phrase in _POSITION_PHRASES.items():  # the position is a phrase at the end
        if text == phrase or text.endswith(" " + phrase):
            found["position"] = position
            text = text[: -len(phrase)]
            break
    words = text.split()
    if words[:1] in (["a"], ["an"]):
        words = words[1:]
    for word in words:  # every other word names one value of one attribute
        name = next((name for name, values in ATTRIBUTES.items() if word in values), None)
        check_caption_word(caption, word, name, found, list(_POSITION_PHRASES.values()))  # known, and named once
        found[name] = word
    check_caption_found(caption, found, complete=False)
    return found


def attributes_from_captions(
    captions: Sequence[str], device: str | torch.device | None = None
) -> dict[str, torch.Tensor]:
    """Parse complete captions into attribute index tensors, ready for :func:`render` or a classifier.

    captions: N strings, each naming all four attributes -> {"shape", "colour", "size", "position"} -> (N,)
    LongTensor on ``device`` (default: :func:`dlcourse.runtime.get_device`).
    """
    check_captions(captions, device)
    device = get_device(device)
    rows = []
    for caption in captions:
        parsed = parse_caption(caption)
        check_caption_found(caption, parsed, complete=True)
        rows.append([ATTRIBUTES[name].index(parsed[name]) for name in ATTRIBUTES])
    table = torch.tensor(rows, dtype=torch.long).reshape(len(rows), len(ATTRIBUTES)).to(device)
    return {name: table[:, k] for k, name in enumerate(ATTRIBUTES)}
