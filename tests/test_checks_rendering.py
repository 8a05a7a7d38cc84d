"""Every argument of dlcourse.data.render is checked: attributes, resolution, jitter (shape, dtype, range), device,
check and hollow raise an error naming the argument."""

from __future__ import annotations

import pytest
import torch

from dlcourse.data import render

ATTRS = {name: torch.zeros(2, dtype=torch.long) for name in ("shape", "colour", "size", "position")}
BAD_COLOUR = {**ATTRS, "colour": torch.tensor([0, 6])}  # there are 6 colours: indices 0..5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attributes": [0, 1]}, TypeError, r"render: attributes must be a mapping"),
        ({"attributes": BAD_COLOUR}, ValueError, r"render: attributes\['colour'\] must hold indices 0\.\.5"),
        ({"attributes": {**ATTRS, "shape": torch.tensor(0)}}, ValueError, r"\['shape'\] must be an \(N,\) Long"),
        ({"resolution": 4}, ValueError, r"resolution must be an int from 8 to 512"),
        ({"resolution": 16.0}, ValueError, r"resolution must be an int from 8 to 512 .*got 16.0"),
        ({"jitter": torch.zeros(2, 3)}, ValueError, r"render: jitter must be a float \(2, 4\) tensor"),
        ({"jitter": torch.zeros(2, 4, dtype=torch.long)}, ValueError, r"jitter must be a float \(2, 4\) tensor"),
        ({"jitter": torch.full((2, 4), 2.0)}, ValueError, r"render: jitter must be in \[-1, 1\]"),
        ({"jitter": torch.full((2, 4), float("nan"))}, ValueError, r"render: jitter must be in \[-1, 1\].*NaN"),
        ({"device": "gpu"}, ValueError, r"render: device must be a device such as"),
        ({"check": "yes"}, TypeError, r"render: check must be True or False[,;] got the string 'yes'"),
        ({"hollow": torch.ones(2)}, ValueError, r"render: hollow must be True, False or an \(2,\) bool tensor"),
        ({"hollow": 1}, ValueError, r"render: hollow must be True, False or an \(2,\) bool tensor; got 1"),
    ],
)
def test_render_checks_every_argument(kwargs, error, match):
    args = {"attributes": ATTRS, "resolution": 16, **kwargs}
    with pytest.raises(error, match=match):
        render(**args)


def test_check_false_skips_the_value_tests_only():
    assert render(ATTRS, 16, jitter=torch.full((2, 4), 2.0), check=False).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"render: jitter must be a float \(2, 4\) tensor"):
        render(ATTRS, 16, jitter=torch.zeros(2, 3), check=False)  # shapes are always checked
