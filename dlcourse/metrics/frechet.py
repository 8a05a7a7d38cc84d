"""The Frechet distance between two Gaussians, and FID: that distance between Gaussians fitted to features.

Heusel et al. 2017 fit a Gaussian N(mu, Sigma) to the features of real images and another to the features of
generated ones, and measure (their Eq. (6))

    d^2 = ||mu_1 - mu_2||^2 + Tr(Sigma_1 + Sigma_2 - 2 (Sigma_1 Sigma_2)^(1/2)).

0 means the same mean and covariance; it grows as the generated images drift from the real ones. The one
awkward term is the trace of a matrix square root. Sigma_1 Sigma_2 is not symmetric, but it is similar to the
symmetric positive semi-definite M = Sigma_1^(1/2) Sigma_2 Sigma_1^(1/2) (conjugate by Sigma_1^(1/2)), so
both have the same eigenvalues lambda_i >= 0 and Tr((Sigma_1 Sigma_2)^(1/2)) = sum_i sqrt(lambda_i). Two
symmetric eigendecompositions in float64 (torch.linalg.eigh) give it, without scipy's general sqrtm.

An estimate from N samples is biased upward (two sets of N images of the same distribution score above 0, by
an amount that shrinks roughly like 1/N), and with N <= D the sample covariance is singular: compare FIDs only
at the same N, next to the reals-vs-reals baseline of :mod:`dlcourse.metrics.quality`.

Taught in notebooks/03_ddpm_training.ipynb, "Measuring quality: FID against a baseline" (the formula, and why
FID is always shown next to the reals-vs-reals baseline).
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from dlcourse.metrics._checks import check_feature_sets

__all__ = ["FewSamplesWarning", "feature_statistics", "fid", "frechet_distance"]


class FewSamplesWarning(UserWarning):
    """FID from N <= D samples: the covariance estimate is singular and the number is strongly biased upward."""


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """The Gaussian fitted to features: (N, D) -> mean (D,) and covariance (D, D), float64 (1/(N-1), like numpy)."""
    features = features.to(torch.float64)
    return features.mean(dim=0), torch.cov(features.T)


def _sqrt_psd(matrix: Tensor) -> Tensor:
    """The symmetric square root of a symmetric positive semi-definite matrix, via its eigendecomposition."""
    eigenvalues, eigenvectors = torch.linalg.eigh(matrix)
    return (eigenvectors * eigenvalues.clamp(min=0).sqrt()) @ eigenvectors.T  # V diag(sqrt(lambda)) V^T


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> Tensor:
    """The squared Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    mu1, mu2: (D,); sigma1, sigma2: (D, D) symmetric positive semi-definite. Computed in float64.
    Returns a 0-d float64 tensor >= 0.
    """
    d = mu1.shape[-1]
    if mu1.shape != (d,) or mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"frechet_distance: expected mu1, mu2 of shape (D,) and sigma1, sigma2 of shape (D, D) with one D; got "
            f"{tuple(mu1.shape)}, {tuple(sigma1.shape)}, {tuple(mu2.shape)}, {tuple(sigma2.shape)}."
        )
    mu1, sigma1, mu2, sigma2 = (t.to(torch.float64) for t in (mu1, sigma1, mu2, sigma2))
    sqrt_sigma1 = _sqrt_psd(sigma1)
    m = sqrt_sigma1 @ sigma2 @ sqrt_sigma1  # similar to sigma1 @ sigma2: the same eigenvalues
    m = (m + m.T) / 2  # symmetric in exact arithmetic; remove the rounding so eigvalsh applies
    trace_sqrt = torch.linalg.eigvalsh(m).clamp(min=0).sqrt().sum()  # Tr((sigma1 sigma2)^(1/2))
    # Heusel et al. 2017, Eq. (6)
    distance = (mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt
    return distance.clamp(min=0)  # rounding can leave a tiny negative number when the Gaussians are equal


def fid(features_a: Tensor, features_b: Tensor) -> float:
    """Frechet Inception Distance between two feature sets (here with FeatureNet features, not Inception's).

    features_a: (N_a, D), features_b: (N_b, D), e.g. from :func:`dlcourse.metrics.compute_features`.
    Needs N >= 2 in each set (ValueError otherwise); with N <= D it warns (:class:`FewSamplesWarning`) and
    still returns the number, which is then dominated by estimation bias: compare it only with the
    reals-vs-reals baseline at the same N.
    """
    check_feature_sets(features_a, features_b, "fid")
    n, d = min(features_a.shape[0], features_b.shape[0]), features_a.shape[1]
    if n <= d:
        warnings.warn(
            f"fid: {n} samples for {d}-d features: the covariance estimate is singular (rank < {d}), so FID is "
            f"strongly biased upward. Use more than {d} samples (a few thousand on a GPU), and compare with the "
            "reals-vs-reals baseline at the same count.",
            FewSamplesWarning,
            stacklevel=2,
        )
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b)).item()
