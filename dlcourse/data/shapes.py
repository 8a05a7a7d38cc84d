"""Shapes: the course's built-in dataset of captioned images, unlimited and generated on the device.

Every image shows one shape described by four attributes (:mod:`dlcourse.data.world`), drawn by
:mod:`dlcourse.data.rendering` and captioned by :mod:`dlcourse.data.captions`: "a small red circle at the
top left", "a large blue square in the centre".

How an image is chosen. Image ``i`` of a ``Shapes(seed=s)`` depends only on ``(s, i)``: its attributes and
jitter come from an integer hash of (seed, index, stream), computed with int64 tensor ops on the device, so
``batch(0, 100)`` and ``batch(50, 50)`` agree on images 50..99, any index can be drawn without drawing the
ones before it, and the attributes are bit-identical on CPU and CUDA (pixels agree to float rounding).
The attribute combination is drawn uniformly from a table of the allowed combinations, which is how held-out
combinations (``holdout=[{"shape": "triangle", "colour": "red"}]``) never appear in the training split.

Taught in notebooks/01_forward_process.ipynb, "The data: Shapes"; the training data of
notebooks/03_ddpm_training.ipynb, "Data, schedule, model".
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from dlcourse.data.captions import captions_from_attributes
from dlcourse.data.checks import check_count, check_holdout, check_resolution, check_seed, check_split
from dlcourse.data.rendering import colour_table, draw
from dlcourse.data.world import ATTRIBUTES
from dlcourse.runtime import get_device

__all__ = ["Shapes", "ShapesBatch"]

_MASK32 = 0xFFFFFFFF
_STREAMS = ("combination", "offset_x", "offset_y", "scale", "rotation")  # one hash stream per random choice


def _hash32(x: torch.Tensor | int) -> torch.Tensor | int:
    """Mix the bits of 32-bit integers (held in int64; a "lowbias32"-style hash by Chris Wellons).

    The multipliers are below 2**31, so a 32-bit value times one fits in int64 without overflow, and the
    result is the same on every device (and for a plain Python int).
    """
    x = x & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _MASK32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _MASK32
    return x ^ (x >> 16)


def _hash_bits(seed: int, stream: int, index: torch.Tensor) -> torch.Tensor:
    """32 random bits for each index: a function of (seed, stream, index) only. index: (N,) int64 >= 0."""
    key = _hash32(_hash32(_hash32(seed & _MASK32) ^ (seed >> 32)) + 0x9E3779B9 * (stream + 1))
    return _hash32(_hash32(_hash32(index & _MASK32) ^ key) ^ (index >> 32))


def _uniform(bits: torch.Tensor) -> torch.Tensor:
    """32 random bits -> float32 in [-1, 1), exactly representable, so equal on CPU and CUDA."""
    return (bits >> 8).float() * 2.0**-23 - 1


@dataclass
class ShapesBatch:
    """A batch of Shapes images with their ground truth.

    images: (N, 3, H, W) float32 in [-1, 1]; attributes: {"shape", "colour", "size", "position"} -> (N,)
    LongTensor of indices into ATTRIBUTES; captions (computed on first use, one host synchronisation).
    """

    images: torch.Tensor
    attributes: dict[str, torch.Tensor]

    @cached_property
    def captions(self) -> list[str]:
        return captions_from_attributes(self.attributes)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: str | torch.device) -> ShapesBatch:
        return ShapesBatch(self.images.to(device), {k: t.to(device) for k, t in self.attributes.items()})


class Shapes:
    """The Shapes dataset: unlimited, deterministic, index-addressable, generated on ``device``.

    resolution: pixels per side, 8..256. seed: which world (any int >= 0; a different seed, different images).
    holdout: attribute combinations kept out of the ``"train"`` split, e.g. ``[{"shape": "triangle",
        "colour": "red"}]`` holds out every red triangle (any size, any position); ``{"size": "small"}`` all
        small shapes. split: ``"train"`` (every combination except the held-out ones) or ``"heldout"`` (only
        the held-out ones: a test of compositional generalisation).
    device: where images are generated (default :func:`dlcourse.runtime.get_device`).

    ``shapes.batch(start, n)`` gives images start..start+n-1; ``shapes[i]`` and ``shapes[a:b]`` the same as a
    :class:`ShapesBatch`.
    """

    SPLITS = ("train", "heldout")

    def __init__(
        self,
        resolution: int = 32,
        seed: int = 0,
        holdout: Mapping[str, str] | Sequence[Mapping[str, str]] = (),
        split: str = "train",
        device: str | torch.device | None = None,
    ) -> None:
        check_resolution(resolution)
        check_seed(seed)
        check_split(split, self.SPLITS)
        self.resolution, self.seed, self.split = resolution, seed, split
        self.holdout = check_holdout(holdout)
        self.device = get_device(device)

        # Every (shape, colour, size, position) combination, minus (or only) the held-out ones.
        combos = [dict(zip(ATTRIBUTES, c, strict=True)) for c in itertools.product(*ATTRIBUTES.values())]
        held_out = [any(all(c[k] == v for k, v in rule.items()) for rule in self.holdout) for c in combos]
        keep = [c for c, out in zip(combos, held_out, strict=True) if out == (split == "heldout")]
        if not keep:
            raise ValueError(
                "split='heldout' needs a holdout, e.g. holdout=[{'shape': 'triangle', 'colour': 'red'}]."
                if split == "heldout"
                else f"holdout={list(self.holdout)} holds out every combination; nothing is left to train on."
            )
        self.combinations = torch.tensor(  # (M, 4): the allowed combinations, as indices in ATTRIBUTES order
            [[values.index(combo[name]) for name, values in ATTRIBUTES.items()] for combo in keep]
        ).to(self.device)
        self._colour_rgb = colour_table(self.device)

    def __repr__(self) -> str:
        return (
            f"Shapes(resolution={self.resolution}, seed={self.seed}, holdout={list(self.holdout)}, "
            f"split={self.split!r}, device={str(self.device)!r})  # {len(self.combinations)} combinations"
        )

    def batch(self, start: int, n: int) -> ShapesBatch:
        """Images ``start, start + 1, ..., start + n - 1``: (n, 3, H, W) in [-1, 1] with their attributes.

        Image i depends only on (seed, i). A few integer-hash and rendering kernels: no Python loop over
        images, no host synchronisation.
        """
        check_count("Shapes.batch", "start", start)
        check_count("Shapes.batch", "n", n)
        return self._generate(torch.arange(start, start + n, device=self.device))

    def __getitem__(self, key: int | slice) -> ShapesBatch:
        """``shapes[i]``: a batch of one image; ``shapes[a:b]`` / ``shapes[a:b:step]``: those images."""
        if isinstance(key, int) and not isinstance(key, bool):
            return self.batch(key, 1)
        if isinstance(key, slice):
            if key.stop is None or (key.start or 0) < 0 or key.stop < 0:
                raise ValueError(
                    f"Shapes is unlimited: slice it with a non-negative start and stop, e.g. shapes[0:64]; "
                    f"got {key}."
                )
            return self._generate(torch.arange(key.start or 0, key.stop, key.step or 1, device=self.device))
        raise TypeError(f"Shapes indices are ints or slices, got {type(key).__name__}.")

    def __iter__(self):
        raise TypeError("Shapes is unlimited, so it cannot be iterated: use shapes.batch(start, n).")

    def _generate(self, index: torch.Tensor) -> ShapesBatch:
        """index: (N,) int64 >= 0 -> the images at those indices."""
        bits = {name: _hash_bits(self.seed, stream, index) for stream, name in enumerate(_STREAMS)}
        # Uniform over the allowed combinations, so a held-out one can never be drawn.
        combination = self.combinations[bits["combination"] % len(self.combinations)]
        attributes = {name: combination[:, k] for k, name in enumerate(ATTRIBUTES)}
        jitter = torch.stack([_uniform(bits[name]) for name in _STREAMS[1:]], dim=1)  # (N, 4) in [-1, 1)
        images = draw(attributes, jitter, self.resolution, self._colour_rgb)
        return ShapesBatch(images, attributes)
