"""Training the :class:`FeatureNet` that FID, KID and prompt adherence are measured with, and caching it.

:func:`train_feature_net` is a plain supervised loop on tensors already on the device. :func:`load_feature_net`
is what a notebook calls: it builds the net for a dataset, trains it once (about 45 s on a 2-core CPU for
Shapes at 32 px, seconds on a GPU), measures its accuracy on images it never saw, and caches it under
``data/checkpoints/`` with :func:`dlcourse.checkpoints.load_or_train`; later calls load it.

Used in notebooks/03_ddpm_training.ipynb, "Measuring quality: FID against a baseline" (trained once and
cached), and notebooks/04_ddim_sampling.ipynb, "Steps x sampler, measured".
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from dlcourse.checkpoints import load_or_train
from dlcourse.data.datasets import SHAPES_TEST_START, canonical_name, load_dataset
from dlcourse.data.shapes import ATTRIBUTES, Shapes
from dlcourse.metrics.attributes import attribute_accuracy
from dlcourse.metrics.feature_net import FeatureNet
from dlcourse.runtime import Precision, get_device, select_precision

__all__ = ["degrade", "load_feature_net", "train_feature_net"]

FEATURE_NET_VERSION = 1  # part of the cache key: bump it when the architecture or the training recipe changes
# dataset -> (channels, heads). Shapes: one head per attribute; the labelled datasets: one 10-way "class" head.
_DATASET_HEADS = {
    "shapes": (3, {name: len(values) for name, values in ATTRIBUTES.items()}),
    "mnist": (1, {"class": 10}),
    "fashion_mnist": (1, {"class": 10}),
    "cifar10": (3, {"class": 10}),
}


def degrade(x: Tensor, generator: torch.Generator | None = None, max_noise_std: float = 0.1) -> Tensor:
    """Random mild degradations, the kind generated images show: a soft blur and Gaussian noise.

    x: (B, C, H, W) in [-1, 1] -> (B, C, H, W). Each image is mixed with its 3x3 box blur by a weight drawn from
    U(0, 1), then gets noise of a std drawn from U(0, max_noise_std). On x's device; generator: for the draws.
    """
    u = torch.rand(x.shape[0], 2, 1, 1, 1, device=x.device, generator=generator)  # per image: blur, noise level
    blurred = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    noise = torch.randn(x.shape, device=x.device, generator=generator, dtype=x.dtype)
    return torch.lerp(x, blurred, u[:, 0]) + max_noise_std * u[:, 1] * noise


def train_feature_net(
    net: FeatureNet,
    images: Tensor,
    targets: Mapping[str, Tensor],
    *,
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 0.01,
    augment: bool = True,
    seed: int = 0,
    precision: Precision | None = None,
) -> dict[str, list[float] | float]:
    """Train ``net`` in place: multi-task cross-entropy (the sum over heads), AdamW, one-cycle learning rate.

    images: (N, C, H, W) in [-1, 1] on the net's device; targets: {head name: (N,) LongTensor} for every head.
    Each step draws ``batch_size`` random indices (a generator seeded with ``seed``, on the device), so no
    data ever leaves the device and no step waits for the host. augment: train on :func:`degrade`-d images,
    so the net still reads a slightly noisy or soft sample correctly (without it, noise of std 0.05 drops
    its colour accuracy on Shapes from 100% to about 50%). precision: autocast recipe (default
    :func:`dlcourse.runtime.select_precision` for the device). Leaves the net in eval mode.
    Returns {"loss": the loss of every step, "seconds": the training time}.
    """
    missing = sorted(set(net.head_sizes) - set(targets))
    if missing:
        raise ValueError(f"train_feature_net: no targets for the heads {missing}; pass targets={{name: labels}}.")
    n = images.shape[0]
    if any(t.shape != (n,) for t in targets.values()):
        shapes = {name: tuple(t.shape) for name, t in targets.items()}
        raise ValueError(f"train_feature_net: each target must be ({n},), one label per image; got {shapes}.")
    device = images.device
    precision = precision or select_precision(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.15)
    scaler = precision.grad_scaler()
    generator = torch.Generator(device=device).manual_seed(seed)
    losses = torch.empty(steps, device=device)  # filled on the device; read once at the end (no per-step sync)

    net.train()
    start = time.perf_counter()
    for step in range(steps):
        index = torch.randint(n, (batch_size,), device=device, generator=generator)
        x = degrade(images[index], generator) if augment else images[index]
        with precision.autocast():
            logits = net(x)
            loss = sum(F.cross_entropy(logits[name], targets[name][index]) for name in net.head_sizes)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        schedule.step()
        losses[step] = loss.detach()
    history = losses.tolist()  # the one host synchronisation, after the loop
    net.eval()
    return {"loss": history, "seconds": time.perf_counter() - start}


def _labelled_split(
    dataset: str, train: bool, n: int | None, resolution: int, seed: int, device: torch.device
) -> tuple[Tensor, dict[str, Tensor]]:
    """Images (N, C, H, W) in [-1, 1] and their targets {head name: (N,)}: Shapes attributes or class labels."""
    if dataset == "shapes":
        batch = Shapes(resolution=resolution, seed=seed, device=device).batch(0 if train else SHAPES_TEST_START, n)
        return batch.images, batch.attributes
    data = load_dataset(dataset, train=train, n=n, resolution=resolution, device=device)
    return data.images, {"class": data.labels}


def load_feature_net(
    dataset: str = "shapes",
    resolution: int = 32,
    in_channels: int | None = None,
    device: str | torch.device | None = None,
    *,
    n_train: int | None = 10_000,
    n_test: int = 2_000,
    steps: int = 600,
    batch_size: int = 64,
    lr: float = 2e-3,
    widths: Sequence[int] = (32, 64, 128),
    feature_dim: int = 128,
    augment: bool = True,
    seed: int = 0,
    directory: str | Path | None = None,
    retrain: bool = False,
) -> FeatureNet:
    """The FeatureNet for ``dataset`` at ``resolution``: loaded from ``data/checkpoints/``, else trained and cached.

    dataset: "shapes", "mnist", "fashion_mnist" or "cifar10". in_channels: None for the dataset's own (3 for
    Shapes and CIFAR-10, 1 for MNIST and Fashion-MNIST); a number is checked against it.
    n_train: training images (Shapes: indices 0..n_train-1 of world ``seed``; a real dataset: its first
    n_train, None for all). n_test: unseen images the accuracy is measured on afterwards (Shapes: from index
    2**40), kept in ``net.test_accuracy`` ({head: accuracy, "all": ...}) and in the checkpoint.
    Every setting and the autocast dtype form the cache key, so changing one trains a new net instead of
    loading a wrong one. directory: the cache folder (default data/checkpoints); retrain: ignore the cache.
    Returns the net on ``device`` (default :func:`dlcourse.runtime.get_device`), in eval mode.
    """
    dataset = canonical_name(dataset)
    channels, heads = _DATASET_HEADS[dataset]
    if in_channels is not None and in_channels != channels:
        raise ValueError(
            f"load_feature_net: {dataset} images have {channels} channel(s), not in_channels={in_channels}. "
            f"Pass in_channels=None (or {channels}); a FeatureNet must see images like the ones it was trained on."
        )
    if dataset == "shapes" and n_train is None:
        raise ValueError("load_feature_net: Shapes is unlimited, so n_train must be a number (10_000 is plenty).")
    device = get_device(device)
    precision = select_precision(device)
    config = {
        "version": FEATURE_NET_VERSION, "dataset": dataset, "resolution": resolution, "in_channels": channels,
        "heads": heads, "widths": list(widths), "feature_dim": feature_dim, "n_train": n_train, "n_test": n_test,
        "steps": steps, "batch_size": batch_size, "lr": lr, "augment": augment, "seed": seed,
        "autocast": str(precision.dtype),
    }  # fmt: skip

    def build() -> FeatureNet:
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, without touching the global RNG
            torch.manual_seed(seed)
            return FeatureNet(heads, channels, resolution, widths, feature_dim).to(device)

    def train(net: FeatureNet) -> dict:
        images, targets = _labelled_split(dataset, True, n_train, resolution, seed, device)
        history = train_feature_net(
            net, images, targets, steps=steps, batch_size=batch_size, lr=lr, augment=augment, seed=seed,
            precision=precision,
        )
        test_images, test_targets = _labelled_split(dataset, False, n_test, resolution, seed, device)
        return history | {"test_accuracy": attribute_accuracy(net, test_images, test_targets)}

    net, extra = load_or_train("feature_net", config, build, train, directory=directory, retrain=retrain)
    net.test_accuracy = dict(extra.get("test_accuracy", {}))
    return net
