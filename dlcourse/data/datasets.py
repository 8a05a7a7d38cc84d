"""A dataset as one tensor on the device: the built-in Shapes world, or MNIST, Fashion-MNIST and CIFAR-10.

``load_dataset("mnist")`` reads the dataset's raw arrays once (torchvision's ``.data`` / ``.targets``, no
per-image PIL transforms), moves them to the device as uint8, and converts them there to float32 in [-1, 1],
so a training loop indexes a tensor that already lives on the GPU. Real datasets come through
torchvision: files already under ``root`` are used as they are; missing ones are downloaded; offline, the
download fails with a :class:`DatasetUnavailableError` that says where to put the files, or to use
``"shapes"``, which needs no download. The feature network that FID is measured with
(:mod:`dlcourse.metrics.feature_training`) loads its training images here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision import datasets as tv_datasets

from dlcourse.data.shapes import Shapes
from dlcourse.data.transforms import to_model_range
from dlcourse.data.world import SHAPES
from dlcourse.runtime import data_dir, get_device

__all__ = ["DATASETS", "SHAPES_TEST_START", "DatasetUnavailableError", "ImageData", "canonical_name", "load_dataset"]

DATASETS = ("shapes", "mnist", "fashion_mnist", "cifar10")
SHAPES_DEFAULT_N = 10_000  # images per split when load_dataset("shapes") is not given n
SHAPES_TEST_START = 2**40  # the Shapes test split: the same world, from this index on (never trained on)


class DatasetUnavailableError(RuntimeError):
    """A real dataset is neither on disk nor downloadable (no internet?); the message says how to fix it."""


@dataclass
class ImageData:
    """A whole dataset split in memory.

    images: (N, C, H, W) float32 in [-1, 1] on the device; labels: (N,) long, indices into class_names;
    captions: one per image (Shapes only, else None).
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    captions: list[str] | None = None

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass(frozen=True)
class _Source:
    """A torchvision dataset, and the folder (under ``root``) and files it reads, for the error message."""

    title: str
    cls: type
    folder: str
    files: str


_MNIST_FILES = (
    "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte; "
    "or the four .gz files as downloaded"
)
_SOURCES = {
    "mnist": _Source("MNIST", tv_datasets.MNIST, "MNIST/raw", _MNIST_FILES),
    "fashion_mnist": _Source("Fashion-MNIST", tv_datasets.FashionMNIST, "FashionMNIST/raw", _MNIST_FILES),
    "cifar10": _Source(
        "CIFAR-10",
        tv_datasets.CIFAR10,
        "cifar-10-batches-py",
        "data_batch_1 ... data_batch_5, test_batch, batches.meta: the folder inside cifar-10-python.tar.gz; "
        "or put the .tar.gz itself next to that folder",
    ),
}


def canonical_name(name: str) -> str:
    """Map any spelling to a name in DATASETS: "Fashion-MNIST", "FashionMNIST" -> "fashion_mnist"."""
    if not isinstance(name, str):
        raise TypeError(f"load_dataset: name must be a string such as 'shapes', got {type(name).__name__}.")
    squashed = re.sub(r"[^a-z0-9]", "", name.lower())
    for known in DATASETS:
        if squashed == known.replace("_", ""):
            return known
    raise ValueError(f"load_dataset: unknown dataset {name!r}; the datasets are {DATASETS}.")


def _open_torchvision(source: _Source, root: Path, train: bool):
    """The torchvision dataset object: from the files under ``root``, else downloaded there."""
    try:
        return source.cls(root, train=train, download=False)
    except RuntimeError:  # torchvision: "Dataset not found (or corrupted)"; try downloading it
        pass
    try:
        return source.cls(root, train=train, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision wraps some in RuntimeError
        raise DatasetUnavailableError(
            f"Could not load {source.title}: its files are not in {root / source.folder}, and the download "
            f"of {source.title} failed (no internet?): {type(err).__name__}: {err}\n"
            f"To fix it, either\n"
            f"  - use the built-in Shapes dataset, which needs no download: load_dataset('shapes') "
            f"(dataset='shapes' in a notebook's settings), or\n"
            f"  - put the {source.title} files in {root / source.folder}/ ({source.files}), then run again."
        ) from err


def load_dataset(
    name: str,
    *,
    train: bool = True,
    n: int | None = None,
    resolution: int = 32,
    seed: int = 0,
    root: str | Path | None = None,
    device: str | torch.device | None = None,
) -> ImageData:
    """Load a dataset split as one tensor on the device, in [-1, 1].

    name: "shapes" (built in), "mnist", "fashion_mnist" or "cifar10" (case, "-" and "_" do not matter).
    train: the training split, else the test split (for Shapes: images from index 2**40 of the same world).
    n: how many images (the first n; default: all of a real split, 10,000 Shapes images).
    resolution: output height = width; real images are resized (bilinear, antialiased) unless already that
        size (MNIST is 28, CIFAR-10 is 32), so a model built for one dataset runs on all of them.
    seed: which Shapes world (ignored by real datasets, which keep their file order).
    root: the folder holding downloaded datasets (default :func:`dlcourse.runtime.data_dir`).
    device: where the tensors live (default :func:`dlcourse.runtime.get_device`).
    Returns ImageData: images (N, C, resolution, resolution) float32 in [-1, 1], labels (N,) long (for Shapes:
    the shape), class_names, and captions (Shapes only).
    Raises DatasetUnavailableError when a real dataset is neither under root nor downloadable.
    """
    key = canonical_name(name)
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        raise ValueError(f"load_dataset: n must be None (all) or an int >= 1, got {n!r}.")
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise ValueError(f"load_dataset: resolution must be an int >= 1 (pixels a side), got {resolution!r}.")
    device = get_device(device)

    if key == "shapes":
        shapes = Shapes(resolution=resolution, seed=seed, device=device)
        batch = shapes.batch(0 if train else SHAPES_TEST_START, SHAPES_DEFAULT_N if n is None else n)
        return ImageData(batch.images, batch.attributes["shape"], SHAPES, batch.captions)

    source = _SOURCES[key]
    root = Path(root) if root is not None else data_dir()
    dataset = _open_torchvision(source, root, train)
    pixels = torch.as_tensor(dataset.data)  # uint8; MNIST keeps a tensor, CIFAR-10 a numpy array
    labels = torch.as_tensor(dataset.targets, dtype=torch.long)
    if n is not None:
        if n > len(labels):
            split = "train" if train else "test"
            raise ValueError(
                f"load_dataset: the {source.title} {split} split has only {len(labels)} images, not n={n}; "
                f"pass a smaller n, or n=None for all of them."
            )
        pixels, labels = pixels[:n], labels[:n]
    # -> (N, C, H, W): MNIST is (N, H, W), CIFAR-10 is (N, H, W, C)
    pixels = pixels.unsqueeze(1) if pixels.ndim == 3 else pixels.permute(0, 3, 1, 2).contiguous()
    images = to_model_range(pixels.to(device).float() / 255)  # move uint8 (4x smaller), convert on the device
    if images.shape[-2:] != (resolution, resolution):
        images = F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True)
    return ImageData(images, labels.to(device), tuple(dataset.classes))
