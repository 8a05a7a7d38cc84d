"""One call that says how good a set of samples is, and how good "as good as the data" would be.

An FID of 12 means nothing by itself: it depends on the feature network, on the number of images (FID is
biased upward at small N) and on the dataset. So :func:`evaluate_samples` always reports, next to the
samples' FID and KID, the same numbers between two *disjoint* sets of real images of the same size: the
score a perfect generator would get at that sample count. The ratio FID / baseline is what a reader should
look at (1x: indistinguishable from real data at this N).

Taught in notebooks/03_ddpm_training.ipynb, "Measuring quality: FID against a baseline" and "EMA vs raw
weights"; :func:`reals_baseline` also in notebooks/04_ddim_sampling.ipynb, "Steps x sampler, measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from dlcourse.metrics.attributes import confident_fraction
from dlcourse.metrics.feature_net import FeatureNet, compute_features
from dlcourse.metrics.frechet import fid
from dlcourse.metrics.kid import kid

__all__ = ["Distances", "QualityReport", "evaluate_samples", "feature_distances", "reals_baseline"]


@dataclass(frozen=True)
class Distances:
    """FID and KID (mean and spread over subsets) between two feature sets of ``n_a`` and ``n_b`` images."""

    fid: float
    kid: float
    kid_std: float
    n_a: int
    n_b: int

    def __str__(self) -> str:
        return f"FID {self.fid:.2f}, KID {self.kid:.4f} ± {self.kid_std:.4f} (n={self.n_a} vs {self.n_b})"


@dataclass(frozen=True)
class QualityReport:
    """Sample quality next to the reals-vs-reals baseline at the same sample count.

    fid, kid, kid_std: samples vs ``n_reals`` real images; confident: :func:`confident_fraction` of the
    samples. baseline: the same distances between two disjoint real sets of ``n_samples`` images each;
    baseline_confident: the confident fraction of real images. ``str(report)`` reads as one line.
    """

    fid: float
    kid: float
    kid_std: float
    n_samples: int
    n_reals: int
    confident: float
    baseline: Distances
    baseline_confident: float
    feature_dim: int

    @property
    def fid_ratio(self) -> float:
        """FID / baseline FID: 1 means as close to the data as another draw of real images is."""
        return self.fid / self.baseline.fid if self.baseline.fid > 0 else math.inf

    def __str__(self) -> str:
        n = self.n_samples
        return (
            f"FID {self.fid:.2f} (reals vs reals at n={n}: {self.baseline.fid:.2f}; ratio {self.fid_ratio:.1f}x), "
            f"KID {self.kid:.4f} ± {self.kid_std:.4f} (reals vs reals: {self.baseline.kid:.4f} ± "
            f"{self.baseline.kid_std:.4f}), confident {self.confident:.0%} (reals {self.baseline_confident:.0%}); "
            f"{n} samples vs {self.n_reals} real images, {self.feature_dim}-d FeatureNet features"
        )


def feature_distances(
    features_a: Tensor,
    features_b: Tensor,
    num_subsets: int = 100,
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
) -> Distances:
    """FID and KID between two (N, D) feature sets, as one :class:`Distances`.

    """
    kid_mean, kid_std = kid(features_a, features_b, num_subsets, subset_size, generator)
    return Distances(fid(features_a, features_b), kid_mean, kid_std, features_a.shape[0], features_b.shape[0])


def _split_reals(reals: Tensor, n: int, caller: str) -> None:
    if n < 2 or reals.shape[0] < 2 * n:
        raise ValueError(
            f"{caller}: the reals-vs-reals baseline compares two disjoint sets of n={n} real images each, so it "
            f"needs n >= 2 and at least 2n = {2 * n} real images; got {reals.shape[0]}. Pass more real images "
            "(Shapes has unlimited ones) or evaluate fewer samples."
        )


def reals_baseline(
    net: FeatureNet,
    reals: Tensor,
    n: int | None = None,
    *,
    batch_size: int = 256,
    num_subsets: int = 100,
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
    check: bool = True,
) -> Distances:
    """FID and KID between ``reals[n:2n]`` and ``reals[:n]``: two disjoint sets of n real images.

    reals: (M, C, H, W) in [-1, 1], M >= 2n; n: default M // 2. The score of a perfect generator evaluated
    with n samples. generator: for KID's subsets (None: seeded with 0).
    """
    n = reals.shape[0] // 2 if n is None else n
    _split_reals(reals, n, "reals_baseline")
    features = compute_features(net, reals[: 2 * n], batch_size, check=check)
    return feature_distances(features[n:], features[:n], num_subsets, subset_size, generator)


def evaluate_samples(
    net: FeatureNet,
    samples: Tensor,
    reals: Tensor,
    *,
    threshold: float = 0.9,
    batch_size: int = 256,
    num_subsets: int = 100,
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
    check: bool = True,
) -> QualityReport:
    """FID, KID and confident fraction of ``samples``, next to the reals-vs-reals baseline at the same count.

    samples: (N, C, H, W) in [-1, 1]; reals: (M, C, H, W) in [-1, 1] with M >= 2N. The samples are compared
    with ``reals[:N]`` and the baseline compares ``reals[N:2N]`` with the same ``reals[:N]``, so every number
    uses N images a side and the two are directly comparable. threshold: for :func:`confident_fraction`.
    generator: for KID's subsets (None: seeded with 0, so a re-run gives the same numbers). check: validate
    the value range of the images (a host synchronisation).
    """
    n = samples.shape[0]
    _split_reals(reals, n, "evaluate_samples")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    sample_features = compute_features(net, samples, batch_size, check=check)
    real_features = compute_features(net, reals[: 2 * n], batch_size, check=check)
    reference = real_features[:n]
    result = feature_distances(sample_features, reference, num_subsets, subset_size, generator)
    baseline = feature_distances(real_features[n:], reference, num_subsets, subset_size, generator)
    return QualityReport(
        fid=result.fid,
        kid=result.kid,
        kid_std=result.kid_std,
        n_samples=n,
        n_reals=n,
        confident=confident_fraction(net, samples, threshold, batch_size, check=False),
        baseline=baseline,
        baseline_confident=confident_fraction(net, reals[:n], threshold, batch_size, check=False),
        feature_dim=net.feature_dim,
    )
