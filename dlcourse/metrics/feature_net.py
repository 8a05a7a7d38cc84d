"""A small classifier trained on the dataset itself, whose features measure sample quality.

FID and KID compare two sets of images through the features of a network. The usual network, Inception-v3,
cannot be downloaded here and was trained on 299 px photographs, so on 28-32 px images its features mean
little. The course trains its own: :class:`FeatureNet`, a few conv blocks and a ``feature_dim``-d feature
vector with one classification head per attribute (Shapes: shape, colour, size, position) or one ``"class"``
head (MNIST, Fashion-MNIST, CIFAR-10). Trained to recognise what the images show, its features react to what
matters in them, and its heads also score prompt adherence (:mod:`dlcourse.metrics.attributes`).
:func:`compute_features` and :func:`predict_probabilities` run it over many images in batches; training and
caching live in :mod:`dlcourse.metrics.feature_training`.

Taught in notebooks/03_ddpm_training.ipynb, "Measuring quality: FID against a baseline" (why a classifier
trained on Shapes replaces Inception).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["FeatureNet", "compute_features", "predict_probabilities"]


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """3x3 conv (stride 1 keeps the size, stride 2 halves it) -> BatchNorm -> ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FeatureNet(nn.Module):
    """A small CNN: conv blocks -> pool to 4x4 -> a ``feature_dim``-d feature vector -> one linear head per task.

    heads: head name -> number of classes, e.g. ``{"shape": 5, "colour": 6, "size": 2, "position": 9}`` or
        ``{"class": 10}``. in_channels: 3 (RGB) or 1 (MNIST). resolution: the image size it is trained for
        (checked by :func:`compute_features`: features of another size are not comparable).
    widths: channels of each stage; every stage after the first halves the resolution (32 -> 16 -> 8).
    feature_dim: D, the length of the feature vector FID and KID use.

    The conv stages are pooled to a 4x4 grid rather than to 1x1 ("global pooling"), so the features keep
    *where* things are (a Shapes attribute) as well as what they are. ``features(x)``: (N, C, H, W) in
    [-1, 1] -> (N, D); ``forward(x)`` -> {head name: (N, classes) logits}. ``test_accuracy`` holds the
    held-out accuracy measured when it was trained by :func:`load_feature_net` (empty otherwise).
    """

    def __init__(
        self,
        heads: Mapping[str, int],
        in_channels: int = 3,
        resolution: int = 32,
        widths: Sequence[int] = (32, 64, 128),
        feature_dim: int = 128,
    ) -> None:
        super().__init__()
        if not heads or any(not isinstance(k, int) or k < 2 for k in heads.values()):
            raise ValueError(f"FeatureNet: heads maps names to class counts >= 2, e.g. {{'class': 10}}; got {heads}")
        if not widths or min(widths) < 1 or feature_dim < 1:
            raise ValueError(f"FeatureNet: need at least one width and positive sizes; got {widths=}, {feature_dim=}")
        self.in_channels, self.resolution, self.feature_dim = in_channels, resolution, feature_dim
        self.head_sizes = dict(heads)
        stages, channels = [], in_channels
        for i, width in enumerate(widths):
            stages += [_conv_block(channels, width, stride=1 if i == 0 else 2), _conv_block(width, width, 1)]
            channels = width
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(4), nn.Flatten())
        # BatchNorm before the ReLU keeps every feature on a unit scale, so FID and KID come out in a readable
        # range (an unnormalised layer can grow to any scale, and FID grows with its square).
        self.embed = nn.Sequential(
            nn.Linear(channels * 16, feature_dim, bias=False), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True)
        )
        self.heads = nn.ModuleDict({name: nn.Linear(feature_dim, k) for name, k in self.head_sizes.items()})
        self.test_accuracy: dict[str, float] = {}

    def features(self, x: Tensor) -> Tensor:
        """x: (N, in_channels, H, W) in [-1, 1] -> (N, feature_dim), the vector FID and KID compare."""
        return self.embed(self.body(x))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """x: (N, in_channels, H, W) in [-1, 1] -> {head name: (N, classes) logits}."""
        h = self.features(x)
        return {name: head(h) for name, head in self.heads.items()}


def _check_images(net: FeatureNet, images: Tensor, check: bool, caller: str) -> None:
    if net.training:
        raise ValueError(
            f"{caller}: the FeatureNet is in training mode, where BatchNorm normalises with the statistics of each "
            "batch, so an image's features would depend on its batch-mates. Call net.eval() first."
        )
    expected = (net.in_channels, net.resolution, net.resolution)
    if images.ndim != 4 or tuple(images.shape[1:]) != expected or images.shape[0] == 0:
        raise ValueError(
            f"{caller}: images must be (N, {', '.join(map(str, expected))}), N >= 1, for this FeatureNet (trained on "
            f"{net.resolution}x{net.resolution} images with {net.in_channels} channel(s)); got {tuple(images.shape)}. "
            "Use a FeatureNet trained on the same dataset and resolution as the images."
        )
    if check and images.numel() and bool((images.abs() > 1.5).any()):  # one host synchronisation
        raise ValueError(
            f"{caller}: images must be in [-1, 1] (the model range), but some pixels are at "
            f"{images.min().item():.3g}..{images.max().item():.3g}. Convert [0, 1] or 0..255 images with "
            "dlcourse.to_model_range(x / 255) first, or clamp samples with x.clamp(-1, 1). check=False skips this."
        )


def _run_batched(net: FeatureNet, images: Tensor, batch_size: int, fn: Callable[[Tensor], Any]) -> list:
    device = next(net.parameters()).device
    with torch.inference_mode():
        return [fn(images[i : i + batch_size].to(device)) for i in range(0, images.shape[0], batch_size)]


def compute_features(net: FeatureNet, images: Tensor, batch_size: int = 256, *, check: bool = True) -> Tensor:
    """The features of many images, in batches, under inference mode: (N, C, H, W) in [-1, 1] -> (N, D) float32.

    The net must be in eval mode. check: validate the value range (one host synchronisation).
    """
    _check_images(net, images, check, "compute_features")
    return torch.cat(_run_batched(net, images, batch_size, net.features))


def predict_probabilities(
    net: FeatureNet, images: Tensor, batch_size: int = 256, *, check: bool = True
) -> dict[str, Tensor]:
    """The class probabilities of many images: (N, C, H, W) in [-1, 1] -> {head name: (N, classes) softmax}."""
    _check_images(net, images, check, "predict_probabilities")
    chunks = _run_batched(net, images, batch_size, lambda x: {k: v.softmax(-1) for k, v in net(x).items()})
    return {name: torch.cat([c[name] for c in chunks]) for name in net.head_sizes}
