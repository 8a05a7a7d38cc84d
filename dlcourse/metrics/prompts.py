"""Scores for text-conditioned samples: does an image show what its prompt says, and how varied are the images?

- :func:`prompt_adherence`: the classifier reads each attribute the prompt names (shape, colour, size,
  position) back out of the image; per attribute, and "all": every named attribute right at once.
- :func:`diversity`: the mean distance between the feature vectors of every pair of images; computed over the
  samples of one prompt, it falls when guidance makes them all alike.

These are the measures of classifier-free guidance's trade-off (more adherence, less diversity as the guidance
scale grows); measured in notebooks/06_classifier_free_guidance.ipynb, "The guidance sweep, measured".
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from dlcourse.data.captions import parse_caption
from dlcourse.data.world import ATTRIBUTES
from dlcourse.metrics._checks import check_feature_net, check_prompt_adherence, check_scored_images
from dlcourse.metrics.feature_net import FeatureNet, compute_features, predict_probabilities

__all__ = ["diversity", "prompt_adherence"]


def prompt_adherence(
    net: FeatureNet, images: Tensor, prompts: str | Sequence[str], batch_size: int = 256
) -> dict[str, float]:
    """How often the images show the attributes their prompts name: {attribute: accuracy, "all": accuracy}.

    images: (N, C, H, W) in [-1, 1]; prompts: one Shapes prompt per image, or one for all ("a red circle",
    "a small blue cross at the top left"). An attribute's accuracy is over the images whose prompt names it;
    "all" is the fraction of images with every named attribute right. Prompts that name nothing (the empty
    prompt) are not scored; if none names anything, this is a ValueError.
    """
    prompts = check_prompt_adherence(net, images, prompts, batch_size)  # one prompt per image
    n = images.shape[0]
    named = [parse_caption(prompt) if prompt.strip() else {} for prompt in prompts]  # "": the unconditional prompt
    if not any(named):
        raise ValueError("prompt_adherence: no prompt names an attribute (all empty?), so there is nothing to score.")
    predicted = {name: p.argmax(-1).cpu() for name, p in predict_probabilities(net, images, batch_size).items()}
    right = torch.ones(n, dtype=torch.bool)
    scores = {}
    for name, values in ATTRIBUTES.items():
        rows = [i for i, attributes in enumerate(named) if name in attributes]
        if rows:
            wanted = torch.tensor([values.index(named[i][name]) for i in rows])
            hits = predicted[name][rows] == wanted
            scores[name] = hits.float().mean().item()
            right[rows] &= hits
    scored = torch.tensor([bool(attributes) for attributes in named])
    return scores | {"all": right[scored].float().mean().item()}


def diversity(net: FeatureNet, images: Tensor, batch_size: int = 256) -> float:
    """Mean Euclidean distance between the features of every pair of images (N >= 2): 0 for identical images."""
    check_feature_net("diversity", "net", net, [], "Use load_feature_net('shapes', resolution).")
    check_scored_images("diversity", images, batch_size, min_count=2)  # pairs need two
    features = compute_features(net, images, batch_size).double()
    distances = torch.pdist(features)  # the N (N - 1) / 2 pairs i < j
    return distances.mean().item()
