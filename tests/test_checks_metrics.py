"""Prompt adherence, diversity and the concept detector refuse bad arguments with an error that names the argument
(dlcourse/metrics/_checks.py). Untrained nets suffice: every call here fails in its checks."""

from __future__ import annotations

import pytest
import torch

from dlcourse.data.world import ATTRIBUTES
from dlcourse.metrics import (
    FeatureNet,
    concept_examples,
    concept_rate,
    diversity,
    load_concept_detector,
    prompt_adherence,
)

BAD = (TypeError, ValueError)
IMAGES = torch.zeros(4, 3, 16, 16)


def _net(heads: dict[str, int]) -> FeatureNet:
    torch.manual_seed(0)
    return FeatureNet(heads, 3, 16).eval()


ATTRIBUTE_NET = _net({name: len(values) for name, values in ATTRIBUTES.items()})
DETECTOR = _net({"hollow": 2})


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"net": DETECTOR}, r"net must have the heads \['shape'"),
        ({"net": "shapes"}, "net must be a dlcourse.metrics.FeatureNet"),
        ({"images": [IMAGES[0]]}, "images must be a float tensor"),
        ({"images": IMAGES[0]}, r"images must be .*images\[None\]"),
        ({"prompts": ["a red circle", None, "", ""]}, "prompts must be"),
        ({"prompts": ["a red circle"] * 3}, "prompts must be one string for all or 4"),
        ({"prompts": 3}, "prompts must be"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
    ],
)
def test_prompt_adherence_names_the_bad_argument(kwargs, match):
    args = {"net": ATTRIBUTE_NET, "images": IMAGES, "prompts": "a red circle"} | kwargs
    with pytest.raises(BAD, match=match):
        prompt_adherence(**args)


def test_diversity_and_concept_rate_name_the_bad_argument():
    with pytest.raises(ValueError, match="images must be .* N >= 2"):
        diversity(ATTRIBUTE_NET, IMAGES[:1])
    with pytest.raises(TypeError, match="batch_size must be an integer"):
        diversity(ATTRIBUTE_NET, IMAGES, batch_size="8")
    with pytest.raises(TypeError, match="net must be a dlcourse.metrics.FeatureNet"):
        diversity(None, IMAGES)
    with pytest.raises(ValueError, match=r"detector must have the heads \['hollow'\].*load_concept_detector"):
        concept_rate(ATTRIBUTE_NET, IMAGES)
    with pytest.raises(TypeError, match="images must be a float tensor"):
        concept_rate(DETECTOR, IMAGES.numpy())
    assert 0 <= concept_rate(DETECTOR, IMAGES) <= 1  # good arguments pass


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n": 0}, "n must be an integer >= 1"),
        ({"n": 4.0}, "n must be an integer"),
        ({"seed": -1}, "seed must be an int"),
        ({"start": -1}, "start must be an int >= 0"),
        ({"resolution": 7}, "resolution must be an int from 8 to 512"),
    ],
)
def test_concept_examples_name_the_bad_argument(kwargs, match):
    with pytest.raises(BAD, match=match):
        concept_examples(**{"resolution": 16, "n": 4, "device": "cpu"} | kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": 1}, "n_train must be an integer >= 2"),
        ({"n_test": "100"}, "n_test must be an integer"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"directory": 3}, "directory must be a path"),
        ({"resolution": 600}, "resolution must be an int from 8 to 512"),
    ],
)
def test_load_concept_detector_names_the_bad_argument_before_training(kwargs, match, tmp_path):
    with pytest.raises(BAD, match=match):
        load_concept_detector(**{"resolution": 16, "device": "cpu", "directory": tmp_path} | kwargs)
    assert not any(tmp_path.iterdir())  # nothing trained or cached
