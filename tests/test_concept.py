"""The hollow-shape detector of notebook 07: trained once and cached, right on held-out drawings, and its rate."""

import pytest
import torch

from dlcourse.data import Shapes
from dlcourse.metrics import load_feature_net
from dlcourse.metrics.concept import concept_examples, concept_rate, load_concept_detector


def test_examples_alternate_hollow_and_filled_and_differ_between_stretches():
    images, labels = concept_examples(16, 6, device="cpu")
    assert images.shape == (6, 3, 16, 16) and labels.tolist() == [0, 1, 0, 1, 0, 1]
    other, _ = concept_examples(16, 6, start=10**6, device="cpu")
    assert not torch.equal(images, other)


def test_the_detector_tells_hollow_from_filled_on_unseen_images_and_is_cached(tmp_path):
    kwargs = {"device": "cpu", "n_train": 2000, "n_test": 400, "steps": 150, "directory": tmp_path}
    detector = load_concept_detector(24, **kwargs)
    assert detector.test_accuracy["hollow"] > 0.9, detector.test_accuracy
    filled = Shapes(resolution=24, seed=5).batch(0, 64)
    large = filled.images[filled.attributes["size"] == 1]  # a small hollow shape at 24 px is nearly a blob
    assert concept_rate(detector, large) < 0.1
    hollow, labels = concept_examples(24, 128, seed=5, start=10**7, device="cpu")
    assert concept_rate(detector, hollow[labels == 1]) > 0.8
    again = load_concept_detector(24, **kwargs)  # loaded, not trained again
    assert again.test_accuracy == detector.test_accuracy
    with pytest.raises(ValueError, match="load_concept_detector"):
        concept_rate(load_feature_net("shapes", 16, device="cpu", n_train=64, n_test=16, steps=2, directory=tmp_path),
                     large[:, :, :16, :16])  # fmt: skip
