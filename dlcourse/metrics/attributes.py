"""What a trained :class:`FeatureNet` says about images: accuracy, predicted distribution, confidence.

- :func:`attribute_accuracy`: how often the classifier reads the intended attributes (or class) back out of
  images, per head and for all heads at once. On real held-out images it checks the classifier; on images
  generated from captions it measures prompt adherence.
- :func:`attribute_distribution`: how often each value is predicted, e.g. the fraction of circles among
  unconditional samples; compare with the same on real images to see a model that drops a mode.
- :func:`confident_fraction`: the fraction of images the classifier assigns confidently to one class on
  every head, a "looks like a valid image" rate; compare samples with reals.

The confident fraction is printed in every :func:`~dlcourse.metrics.evaluate_samples` report of
notebooks/03_ddpm_training.ipynb, "Measuring quality: FID against a baseline", where
:func:`attribute_accuracy` also gives the feature net's accuracy on unseen images.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from dlcourse.metrics.feature_net import FeatureNet, predict_probabilities

__all__ = ["attribute_accuracy", "attribute_distribution", "confident_fraction"]


def attribute_accuracy(
    net: FeatureNet, images: Tensor, attributes: Mapping[str, Tensor], batch_size: int = 256, *, check: bool = True
) -> dict[str, float]:
    """The fraction of images whose predicted value equals the given one, per head, and for all of them at once.

    images: (N, C, H, W) in [-1, 1]; attributes: {head name: (N,) LongTensor}, e.g. a ShapesBatch's
    ``attributes`` or ``{"class": labels}``; a subset of the heads is fine. Returns {name: accuracy} plus
    ``"all"``: the fraction with every given attribute right (for Shapes: the whole caption obeyed).
    """
    unknown = sorted(set(attributes) - set(net.head_sizes))
    if unknown or not attributes:
        raise ValueError(
            f"attribute_accuracy: the net has heads {list(net.head_sizes)}; got attributes {list(attributes)}. "
            "Pass labels for some of those heads, e.g. batch.attributes for Shapes or {'class': labels}."
        )
    n = images.shape[0]
    for name, labels in attributes.items():
        if labels.shape != (n,):
            raise ValueError(f"attribute_accuracy: attributes[{name!r}] must be ({n},); got {tuple(labels.shape)}.")
    probabilities = predict_probabilities(net, images, batch_size, check=check)
    correct = {name: probabilities[name].argmax(-1) == labels.to(probabilities[name].device)
               for name, labels in attributes.items()}  # fmt: skip
    every = torch.stack(list(correct.values())).all(dim=0)
    return {name: c.float().mean().item() for name, c in correct.items()} | {"all": every.float().mean().item()}


def attribute_distribution(
    net: FeatureNet, images: Tensor, batch_size: int = 256, *, check: bool = True
) -> dict[str, Tensor]:
    """How often each value is predicted: {head name: (classes,) frequencies summing to 1}.

    Compare samples with reals, e.g. ``0.5 * (p_samples - p_reals).abs().sum()`` (the total variation
    distance: 0 for the same mix of shapes, 1 for no overlap).
    """
    probabilities = predict_probabilities(net, images, batch_size, check=check)
    return {
        name: torch.bincount(p.argmax(-1), minlength=p.shape[-1]).float() / p.shape[0]
        for name, p in probabilities.items()
    }


def confident_fraction(
    net: FeatureNet, images: Tensor, threshold: float = 0.9, batch_size: int = 256, *, check: bool = True
) -> float:
    """The fraction of images whose top class probability exceeds ``threshold`` on every head.

    Real Shapes images score close to 1: each shows one clear shape, colour, size and position. A half-formed
    or two-headed sample leaves the classifier unsure on some head.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"confident_fraction: threshold is a probability in (0, 1), e.g. 0.9; got {threshold}.")
    probabilities = predict_probabilities(net, images, batch_size, check=check)
    confident = torch.stack([p.amax(-1) > threshold for p in probabilities.values()]).all(dim=0)
    return confident.float().mean().item()
