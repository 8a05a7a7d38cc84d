"""A detector for the concept that notebook 07 teaches: hollow shapes, which no Shapes image shows.

Concept fidelity (how often "a sks triangle" draws the new concept) and language drift (how often the plain class
prompt now draws it too) are both the rate at which a detector says "hollow". The detector is a
:class:`~dlcourse.metrics.FeatureNet` with one two-way head, trained like the feature classifier (with its mild
degradations, so blurry samples are read correctly) on Shapes images drawn half hollow, half filled, and cached.

Used in notebooks/07_lora_dreambooth.ipynb, "The concept: hollow shapes" and "What we measure".
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from dlcourse.checkpoints import load_or_train
from dlcourse.data.datasets import SHAPES_TEST_START
from dlcourse.data.rendering import render
from dlcourse.data.shapes import Shapes
from dlcourse.metrics._checks import (
    check_concept_detector,
    check_concept_examples,
    check_feature_net,
    check_scored_images,
)
from dlcourse.metrics.attributes import attribute_accuracy
from dlcourse.metrics.feature_net import FeatureNet, predict_probabilities
from dlcourse.metrics.feature_training import train_feature_net
from dlcourse.runtime import get_device, select_precision

__all__ = ["concept_examples", "concept_rate", "load_concept_detector"]

CONCEPT_DETECTOR_VERSION = 1  # part of the cache key: bump it when the data or the training recipe changes


def concept_examples(
    resolution: int, n: int, seed: int = 0, start: int = 0, device: str | torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """n Shapes images (their attributes, random jitter), every other one drawn hollow: images (n, 3, R, R) in
    [-1, 1] and labels (n,) long (1 = hollow). ``start`` picks another stretch of the world (held-out images)."""
    check_concept_examples(resolution, n, seed, start)
    device = get_device(device)
    attributes = Shapes(resolution=resolution, seed=seed, device=device).batch(start, n).attributes
    generator = torch.Generator(device=device).manual_seed((seed * 2**20 + start) % 2**62)  # other images, other jitter
    jitter = torch.rand(n, 4, device=device, generator=generator) * 2 - 1
    labels = torch.arange(n, device=device) % 2
    return render(attributes, resolution, jitter=jitter, hollow=labels.bool(), check=False), labels


def load_concept_detector(
    resolution: int = 32,
    device: str | torch.device | None = None,
    *,
    n_train: int = 10_000,
    n_test: int = 2_000,
    steps: int = 400,
    seed: int = 0,
    directory: str | Path | None = None,
) -> FeatureNet:
    """The hollow-vs-filled detector at ``resolution``: loaded from ``data/checkpoints/``, else trained and cached.

    Its accuracy on n_test images it never saw is kept in ``net.test_accuracy`` ({"hollow": ..., "all": ...}).
    """
    check_concept_detector(resolution, n_train, n_test, steps, seed, directory)
    device = get_device(device)
    precision = select_precision(device)
    config = {
        "version": CONCEPT_DETECTOR_VERSION, "resolution": resolution, "n_train": n_train, "n_test": n_test,
        "steps": steps, "seed": seed, "autocast": str(precision.dtype),
    }  # fmt: skip

    def build() -> FeatureNet:
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching the global RNG
            torch.manual_seed(seed)
            return FeatureNet({"hollow": 2}, 3, resolution).to(device)

    def train(net: FeatureNet) -> dict:
        images, labels = concept_examples(resolution, n_train, seed, device=device)
        history = train_feature_net(net, images, {"hollow": labels}, steps=steps, seed=seed, precision=precision)
        test_images, test_labels = concept_examples(resolution, n_test, seed, SHAPES_TEST_START, device)
        return history | {"test_accuracy": attribute_accuracy(net, test_images, {"hollow": test_labels})}

    net, extra = load_or_train("concept_detector", config, build, train, directory=directory)
    net.test_accuracy = dict(extra.get("test_accuracy", {}))
    return net


def concept_rate(detector: FeatureNet, images: Tensor) -> float:
    """The fraction of ``images`` (N, 3, H, W) in [-1, 1] that the detector calls hollow."""
    check_feature_net("concept_rate", "detector", detector, ["hollow"],
                      "Use the detector from load_concept_detector, not the feature classifier.")  # fmt: skip
    check_scored_images("concept_rate", images)
    return predict_probabilities(detector, images)["hollow"].argmax(-1).float().mean().item()
