"""Every argument of dlcourse.data.captions is checked: attributes that are not (N,) index tensors or hold
indices out of range, a bad p_name or generator, non-string captions raise an error naming the argument."""

from __future__ import annotations

import pytest
import torch

from dlcourse.data import attributes_from_captions, captions_from_attributes, parse_caption, partial_captions


def attributes(**changes):
    base = {name: torch.zeros(2, dtype=torch.long) for name in ("shape", "colour", "size", "position")}
    return {**base, **changes}


@pytest.mark.parametrize(
    ("attrs", "error", "match"),
    [
        (attributes(size=torch.tensor([0, -1])), ValueError, r"attributes\['size'\] holds \[-1\], .* run 0\.\.1"),
        (attributes(shape=torch.tensor([0, 9])), ValueError, r"attributes\['shape'\] holds \[9\]"),
        (attributes(colour=torch.zeros(2)), ValueError, r"attributes\['colour'\] must be an \(N,\) LongTensor"),
        (attributes(colour=torch.zeros(3, dtype=torch.long)), ValueError, r"attributes\['colour'\] must be .* N like"),
        ({"shape": torch.zeros(2, dtype=torch.long)}, ValueError, r"attributes lack \['colour', 'size', 'position'\]"),
        ([0, 1], TypeError, r"captions_from_attributes: attributes must be a mapping"),
    ],
)
def test_captions_from_attributes_refuses_bad_indices(attrs, error, match):
    with pytest.raises(error, match=match):
        captions_from_attributes(attrs)


def test_named_must_be_bool_per_image_for_each_optional_attribute():
    ok = {name: torch.ones(2, dtype=torch.bool) for name in ("size", "colour", "position")}
    assert captions_from_attributes(attributes(), ok) == ["a small red circle at the top left"] * 2
    with pytest.raises(ValueError, match=r"named\['colour'\] must be a \(2,\) bool tensor"):
        captions_from_attributes(attributes(), {**ok, "colour": torch.ones(2)})
    with pytest.raises(ValueError, match=r"named\['position'\] must be a \(2,\) bool tensor .* got None"):
        captions_from_attributes(attributes(), {"size": ok["size"], "colour": ok["colour"]})


@pytest.mark.parametrize(
    ("p_name", "generator", "error", "match"),
    [
        (0.0, None, ValueError, r"p_name must be a finite number > 0 and <= 1[,;] got 0.0"),
        (float("nan"), None, ValueError, r"p_name must be .* got nan"),
        (1.5, None, ValueError, r"p_name must be .* got 1.5"),
        ("0.5", None, TypeError, r"p_name must be a finite number"),
        (0.5, 0, ValueError, r"partial_captions: generator must be None or a CPU torch.Generator .*got 0"),
    ],
)
def test_partial_captions_checks_p_name_and_the_generator(p_name, generator, error, match):
    with pytest.raises(error, match=match):
        partial_captions(attributes(), p_name, generator)


@pytest.mark.parametrize(
    ("caption", "error", "match"),
    [
        (None, TypeError, r"parse_caption: caption must be a string .* got None"),
        (3, TypeError, r"parse_caption: caption must be a string .* got 3"),
        ("a purple circle", ValueError, r"unknown word 'purple'"),
        ("a red blue circle", ValueError, r"names the colour twice"),
        ("", ValueError, r"names no attribute"),
    ],
)
def test_parse_caption_refuses_non_strings_and_unknown_words(caption, error, match):
    with pytest.raises(error, match=match):
        parse_caption(caption)


@pytest.mark.parametrize(
    ("captions", "device", "error", "match"),
    [
        ("a small red circle at the top left", None, TypeError, r"takes a list of captions.*wrap a single caption"),
        (5, None, TypeError, r"takes a list of captions[,;] got 5"),
        (["a small red circle at the top left", None], None, TypeError, r"caption must be a string .* got None"),
        (["a red circle"], None, ValueError, r"does not say its size, position"),
        (["a small red circle at the top left"], "gpu", ValueError, r"device must be a .* got the string 'gpu'"),
    ],
)
def test_attributes_from_captions_checks_captions_and_device(captions, device, error, match):
    with pytest.raises(error, match=match):
        attributes_from_captions(captions, device=device)
