"""KID: the Kernel Inception Distance, an unbiased alternative to FID (Binkowski et al. 2018).

KID is the squared maximum mean discrepancy (MMD) between the two feature distributions, with the cubic
polynomial kernel k(x, y) = (x . y / D + 1)^3. For subsets X = {x_i} and Y = {y_j} of m samples each, the
unbiased estimator (Binkowski et al. 2018, Eq. (2); Gretton et al. 2012, Lemma 6) is

    MMD^2_u = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(m(m-1)) sum_{i != j} k(y_i, y_j) - 2/m^2 sum_{i,j} k(x_i, y_j).

Unlike FID its expected value is exactly 0 when both sets come from the same distribution, whatever m: a
small sample gives a noisy number, not a biased one (it can come out slightly negative). We average it over
``num_subsets`` random subsets and also report the spread.

Reported next to FID by :func:`~dlcourse.metrics.evaluate_samples` in notebooks/03_ddpm_training.ipynb,
"Measuring quality: FID against a baseline"; the notebook prints the number but does not derive KID.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dlcourse.metrics._checks import check_feature_sets

__all__ = ["KID", "kid", "polynomial_mmd2"]

_KERNEL_ELEMENTS = 2**23  # entries of one batch of (size, size) kernel matrices: 64 MB in float64


class KID(NamedTuple):
    """KID averaged over subsets (``mean``) and the standard deviation of the single-subset estimates (``std``)."""

    mean: float
    std: float


def polynomial_mmd2(x: Tensor, y: Tensor) -> Tensor:
    """The unbiased MMD^2 between x: (..., m, D) and y: (..., n, D) with k(a, b) = (a . b / D + 1)^3 -> (...).

    Leading dimensions are batch dimensions: many subsets are computed in one go.
    """
    m, n, d = x.shape[-2], y.shape[-2], x.shape[-1]
    k_xx = (x @ x.mT / d + 1) ** 3  # Binkowski et al. 2018, Sec. 4: the cubic polynomial kernel
    k_yy = (y @ y.mT / d + 1) ** 3
    k_xy = (x @ y.mT / d + 1) ** 3
    trace_xx, trace_yy = k_xx.diagonal(dim1=-2, dim2=-1).sum(-1), k_yy.diagonal(dim1=-2, dim2=-1).sum(-1)
    within_x = (k_xx.sum((-2, -1)) - trace_xx) / (m * (m - 1))  # i != j: leave out k(x_i, x_i)
    within_y = (k_yy.sum((-2, -1)) - trace_yy) / (n * (n - 1))
    return within_x + within_y - 2 * k_xy.mean((-2, -1))  # Binkowski et al. 2018, Eq. (2)


def kid(
    features_a: Tensor,
    features_b: Tensor,
    num_subsets: int = 100,
    subset_size: int | None = None,
    generator: torch.Generator | None = None,
) -> KID:
    """Kernel Inception Distance between two feature sets (FeatureNet features here): ``KID(mean, std)``.

    features_a: (N_a, D), features_b: (N_b, D). Each of ``num_subsets`` rounds draws ``subset_size`` rows from
    each set without replacement and computes :func:`polynomial_mmd2` in float64, many subsets per batched
    matrix product. The default subset size is the paper's 1000, or half the smaller set when that is less
    (subsets of a whole set would all be the same set, and ``std`` would be a meaningless 0). ``std`` is the
    spread of one subset's estimate, not the standard error of the mean (subsets overlap, so the mean's error
    is hard to state). generator: a ``torch.Generator`` for the subsets; None uses a CPU one seeded with 0, so
    the same features give the same KID.
    """
    check_feature_sets(features_a, features_b, "kid")
    n_a, n_b = features_a.shape[0], features_b.shape[0]
    size = max(2, min(1000, n_a // 2, n_b // 2)) if subset_size is None else subset_size
    if not 2 <= size <= min(n_a, n_b):
        raise ValueError(
            f"kid: subset_size must be between 2 and the smaller set's size ({min(n_a, n_b)}); got {size}. "
            "Pass subset_size=None for min(1000, N_a // 2, N_b // 2)."
        )
    if num_subsets < 1:
        raise ValueError(f"kid: num_subsets must be >= 1 (100 is usual); got {num_subsets}.")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    a, b = features_a.to(torch.float64), features_b.to(torch.float64)

    def draw(n: int) -> Tensor:  # (num_subsets, size) row indices, each row without repeats
        keys = torch.rand(num_subsets, n, generator=generator, device=generator.device)
        return keys.argsort(dim=1)[:, :size].to(a.device)

    subsets_a, subsets_b = draw(n_a), draw(n_b)
    per_batch = max(1, _KERNEL_ELEMENTS // size**2)  # subsets per batched kernel computation: bounded memory
    estimates = torch.cat([
        polynomial_mmd2(a[rows_a], b[rows_b])  # (per_batch, size, D) each
        for rows_a, rows_b in zip(subsets_a.split(per_batch), subsets_b.split(per_batch), strict=True)
    ])  # fmt: skip
    std = estimates.std().item() if num_subsets > 1 else 0.0
    return KID(estimates.mean().item(), std)
