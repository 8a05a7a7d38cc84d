"""Input checks shared by FID and KID: two (N, D) feature sets with the same D."""

from __future__ import annotations

from torch import Tensor


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
