"""Input checks of the metrics, kept out of the code a learner reads: two (N, D) feature sets with the same D (FID
and KID), and the arguments of prompt adherence, diversity and the concept detector."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from dlcourse.argument_checks import check_images, check_instance, check_int, check_path, check_strings
from dlcourse.data.checks import check_count, check_resolution, check_seed
from dlcourse.data.world import ATTRIBUTES


def check_feature_sets(features_a: Tensor, features_b: Tensor, caller: str, min_samples: int = 2) -> None:
    """Raise a ValueError unless both are (N, D) with the same D and at least ``min_samples`` rows each."""
    for name, f in (("features_a", features_a), ("features_b", features_b)):
        if f.ndim != 2:
            raise ValueError(
                f"{caller}: {name} must be (N, D), one feature vector per image; got shape {tuple(f.shape)}. "
                "Compute them with compute_features(net, images)."
            )
        if f.shape[0] < min_samples:
            raise ValueError(
                f"{caller}: {name} has {f.shape[0]} sample(s); at least {min_samples} are needed (a covariance "
                "needs two). Use hundreds or thousands of images for a meaningful number."
            )
    if features_a.shape[1] != features_b.shape[1]:
        raise ValueError(
            f"{caller}: the feature sets have different dimensions ({features_a.shape[1]} vs "
            f"{features_b.shape[1]}); both must come from the same feature network."
        )


def check_feature_net(caller: str, name: str, net: Any, heads: Sequence[str], fix: str) -> None:
    """A FeatureNet with (at least) the classifier heads ``heads``."""
    from dlcourse.metrics.feature_net import FeatureNet

    check_instance(caller, name, net, FeatureNet, "a dlcourse.metrics.FeatureNet", fix)
    missing = [head for head in heads if head not in net.head_sizes]
    if missing:
        raise ValueError(f"{caller}: {name} must have the heads {list(heads)}; this one has {list(net.head_sizes)}. "
                         f"{fix}")  # fmt: skip


def check_scored_images(caller: str, images: Any, batch_size: Any = None, min_count: int = 1) -> None:
    """Images (N, C, H, W), N >= min_count, and a batch size when given (the images' shape against the net and their
    range are checked by compute_features / predict_probabilities)."""
    check_images(caller, "images", images, min_count=min_count)
    if batch_size is not None:
            check_int(caller, "batch_size", batch_size, 1, fix="Images per forward pass; 256 fits any GPU at 32 px.")


def check_prompt_adherence(net: Any, images: Any, prompts: Any, batch_size: Any) -> list[str]:
    """prompt_adherence's arguments; returns one prompt per image."""
    caller = "prompt_adherence"
    check_feature_net(caller, "net", net, list(ATTRIBUTES), "Use load_feature_net('shapes', resolution), the "
                      "attribute classifier (not the concept detector).")  # fmt: skip
    check_scored_images(caller, images, batch_size)
    return check_strings(caller, "prompts", prompts, count=images.shape[0],
                         fix="Pass one prompt per image (or one string for all).")  # fmt: skip


def check_concept_examples(resolution: Any, n: Any, seed: Any, start: Any) -> None:
    check_resolution(resolution)
    check_int("concept_examples", "n", n, 1, fix="The number of images to draw.")
    check_seed(seed)
    check_count("concept_examples", "start", start)


def check_concept_detector(resolution: Any, n_train: Any, n_test: Any, steps: Any, seed: Any, directory: Any) -> None:
    caller = "load_concept_detector"
    check_resolution(resolution)
    check_int(caller, "n_train", n_train, 2, fix="Training images, half hollow, half filled; 10_000 by default.")
    check_int(caller, "n_test", n_test, 2, fix="Held-out images for the test accuracy; 2_000 by default.")
    check_int(caller, "steps", steps, 1, fix="Training steps; 400 by default.")
    check_seed(seed)
    if directory is not None:
        check_path(caller, "directory", directory)
