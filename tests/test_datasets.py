"""load_dataset on small files written here in each dataset's own format; the network is never used."""

import hashlib
import pickle
import socket
import struct
import time
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision.datasets.cifar
import torchvision.datasets.mnist

from dlcourse.data import SHAPES, DatasetUnavailableError, Shapes, load_dataset

CPU = "cpu"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails at once, as on a machine without internet."""

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file (MNIST's format): 0, 0, 0x08 (uint8), ndim, big-endian sizes, the bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 20, n_test: int = 7, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    arrays = {
        "train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train)),
        "t10k": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test)),
    }
    arrays["train"][0][0] = 0  # make sure both ends of the range occur
    arrays["train"][0][1] = 255
    for prefix, (images, labels) in arrays.items():
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
    return arrays


def pixels_back(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> the uint8 values they came from."""
    return ((images + 1) * 127.5).round().to(torch.uint8)


@pytest.mark.parametrize(
    ("name", "folder"),
    [
        ("mnist", "MNIST"),
        ("MNIST", "MNIST"),
        ("fashion_mnist", "FashionMNIST"),
        ("Fashion-MNIST", "FashionMNIST"),
        ("FashionMNIST", "FashionMNIST"),
    ],
)
def test_mnist_format_round_trip(tmp_path, name, folder):
    arrays = write_mnist(tmp_path, folder)
    data = load_dataset(name, root=tmp_path, resolution=28, device=CPU)
    images, labels = arrays["train"]
    assert data.images.shape == (20, 1, 28, 28) and data.images.dtype == torch.float32
    assert data.images.min() == -1 and data.images.max() == 1
    assert torch.equal(pixels_back(data.images[:, 0]), torch.from_numpy(images))
    assert torch.equal(data.images, torch.from_numpy(images).float().unsqueeze(1) / 255 * 2 - 1)
    assert data.labels.dtype == torch.long and torch.equal(data.labels, torch.from_numpy(labels).long())
    assert len(data.class_names) == 10 and data.captions is None and len(data) == 20

    test = load_dataset(name, train=False, root=tmp_path, resolution=28, device=CPU)
    assert torch.equal(pixels_back(test.images[:, 0]), torch.from_numpy(arrays["t10k"][0]))
    assert torch.equal(test.labels, torch.from_numpy(arrays["t10k"][1]).long())

    first = load_dataset(name, n=5, root=tmp_path, resolution=28, device=CPU)
    assert torch.equal(first.images, data.images[:5]) and torch.equal(first.labels, data.labels[:5])


def test_mnist_is_resized_to_the_requested_resolution(tmp_path):
    write_mnist(tmp_path, "MNIST")
    native = load_dataset("mnist", root=tmp_path, resolution=28, device=CPU)
    resized = load_dataset("mnist", root=tmp_path, resolution=32, device=CPU)
    assert resized.images.shape == (20, 1, 32, 32)
    assert resized.images.min() >= -1 and resized.images.max() <= 1
    # resizing keeps the mean brightness of each image (antialiased bilinear is a normalised filter)
    brightness = resized.images.mean(dim=(1, 2, 3)), native.images.mean(dim=(1, 2, 3))
    torch.testing.assert_close(*brightness, atol=0.02, rtol=0)


def test_default_root_is_the_course_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path))
    arrays = write_mnist(tmp_path, "MNIST")
    data = load_dataset("mnist", resolution=28, device=CPU)
    assert torch.equal(pixels_back(data.images[:, 0]), torch.from_numpy(arrays["train"][0]))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_cifar10(root: Path, monkeypatch, per_batch: int = 3, n_test: int = 4) -> dict:
    """The python-pickle CIFAR-10 layout; rows are 3072 bytes: the R plane, then G, then B, each 32x32."""
    rng = np.random.default_rng(1)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    written = {}
    for name, count in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        data = rng.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, count).tolist()
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "data": data, "labels": labels}, f)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch}, f)
    # torchvision checks every file against the md5 of the real dataset; point it at ours instead
    cls = torchvision.datasets.CIFAR10
    train_list = [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    monkeypatch.setattr(cls, "train_list", train_list)
    monkeypatch.setattr(cls, "test_list", [["test_batch", md5(folder / "test_batch")]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / "batches.meta")})
    return written


def test_cifar10_format_round_trip(tmp_path, monkeypatch):
    written = write_cifar10(tmp_path, monkeypatch)
    data = load_dataset("CIFAR-10", root=tmp_path, device=CPU)
    rows = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    labels = sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert data.images.shape == (15, 3, 32, 32) and data.images.dtype == torch.float32
    assert data.images.min() >= -1 and data.images.max() <= 1
    expected = torch.from_numpy(rows).view(15, 3, 32, 32)  # channel planes, row-major pixels
    assert torch.equal(pixels_back(data.images), expected)
    # spot-check the layout by hand: image 4, green channel, row 5, column 7
    assert pixels_back(data.images)[4, 1, 5, 7] == rows[4, 1024 + 5 * 32 + 7]
    assert data.labels.tolist() == labels
    assert data.class_names == tuple(CIFAR_CLASSES)

    test = load_dataset("cifar10", train=False, root=tmp_path, device=CPU)
    expected = torch.from_numpy(written["test_batch"][0]).view(4, 3, 32, 32)
    assert torch.equal(pixels_back(test.images), expected)
    assert test.labels.tolist() == written["test_batch"][1]


@pytest.mark.parametrize(
    ("name", "module", "where", "files"),
    [
        ("mnist", torchvision.datasets.mnist, "MNIST/raw", "train-images-idx3-ubyte"),
        ("fashion_mnist", torchvision.datasets.mnist, "FashionMNIST/raw", "t10k-labels-idx1-ubyte"),
        ("cifar10", torchvision.datasets.cifar, "cifar-10-batches-py", "data_batch_1"),
    ],
)
def test_offline_error_says_what_to_do(tmp_path, monkeypatch, name, module, where, files):
    calls = []

    def offline(url, *args, **kwargs):
        calls.append(url)
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(module, "download_and_extract_archive", offline)
    start = time.perf_counter()
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset(name, root=tmp_path, device=CPU)
    assert time.perf_counter() - start < 5
    assert calls, "the download was not even attempted"
    message = str(caught.value)
    assert "download" in message and "no internet?" in message
    assert "load_dataset('shapes')" in message and "dataset='shapes'" in message
    assert str(tmp_path / where) in message and files in message
    assert isinstance(caught.value, RuntimeError)
    assert isinstance(caught.value.__cause__, (OSError, RuntimeError))


def test_shapes_dataset():
    data = load_dataset("shapes", n=64, resolution=16, seed=3, device=CPU)
    batch = Shapes(resolution=16, seed=3, device=CPU).batch(0, 64)
    assert torch.equal(data.images, batch.images)
    assert torch.equal(data.labels, batch.attributes["shape"])
    assert data.class_names == SHAPES and data.captions == batch.captions
    test = load_dataset("Shapes", train=False, n=64, resolution=16, seed=3, device=CPU)
    assert test.images.shape == data.images.shape and not torch.equal(test.images, data.images)
    assert len(load_dataset("shapes", resolution=8, device=CPU)) == 10_000


def test_unknown_dataset_and_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"'imagenet'.*'shapes', 'mnist', 'fashion_mnist', 'cifar10'"):
        load_dataset("imagenet")
    with pytest.raises(TypeError, match="string"):
        load_dataset(10)
    with pytest.raises(ValueError, match="n must be"):
        load_dataset("shapes", n=0, device=CPU)
    with pytest.raises(ValueError, match="resolution"):
        load_dataset("shapes", resolution=4, device=CPU)
    with pytest.raises(ValueError, match="resolution"):
        load_dataset("mnist", resolution=0, root=tmp_path, device=CPU)
    write_mnist(tmp_path, "MNIST")
    with pytest.raises(ValueError, match="only 20 images"):
        load_dataset("mnist", n=21, root=tmp_path, device=CPU)
