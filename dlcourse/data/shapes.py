"""Shapes: the course's built-in world of captioned images, rendered as tensors on the device.

Every image shows one shape on a dark background, described by four attributes:

    shape     circle, square, triangle, diamond, cross
    colour    red, green, blue, yellow, magenta, cyan (fixed RGB values, see COLOUR_RGB)
    size      small, large
    position  a cell of a 3x3 grid: top left, top, top right, left, centre, right,
              bottom left, bottom, bottom right

and a caption that says them: "a small red circle at the top left", "a large blue square in the centre".
On top of the attributes each image has a little random "jitter" (the shape moves a few pixels inside its
cell, grows or shrinks by up to 10%, turns by up to 15 degrees), so no two images are exactly alike.

How an image is drawn. Each shape is a signed-distance function (SDF): d(p) < 0 inside, > 0 outside, |d| the
distance to the outline. Evaluating it at every pixel centre of the whole batch at once gives a (N, H, W)
tensor, and ``coverage = clamp(0.5 - d / pixel_size, 0, 1)`` is the fraction of each pixel the shape covers:
1 inside, 0 outside, in between on the outline. That is anti-aliasing for free, at any resolution.

How an image is chosen. Image ``i`` of a ``Shapes(seed=s)`` depends only on ``(s, i)``: its attributes and
jitter come from an integer hash of (seed, index, stream), computed with int64 tensor ops on the device, so
``batch(0, 100)`` and ``batch(50, 50)`` agree on images 50..99, any index can be drawn without drawing the
ones before it, and the attributes are bit-identical on CPU and CUDA (pixels agree to float rounding).
The attribute combination is drawn uniformly from a table of the allowed combinations, which is how held-out
combinations (``holdout=[{"shape": "triangle", "colour": "red"}]``) never appear in the training split.

Taught in notebooks/01_forward_process.ipynb; captions and held-out combinations in
notebooks/06_classifier_free_guidance.ipynb.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from types import MappingProxyType

import torch

from dlcourse.data.transforms import to_model_range
from dlcourse.runtime import get_device

__all__ = [
    "ATTRIBUTES",
    "COLOURS",
    "COLOUR_RGB",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Shapes",
    "ShapesBatch",
    "attributes_from_captions",
    "captions_from_attributes",
    "parse_caption",
    "render",
]

SHAPES = ("circle", "square", "triangle", "diamond", "cross")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
SIZES = ("small", "large")
POSITIONS = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
# Attribute name -> its values; an attribute tensor holds indices into these tuples.
ATTRIBUTES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "position": POSITIONS}
)
# Display-range RGB (in [0, 1]) of each colour, far apart so a small classifier tells them apart easily.
COLOUR_RGB: Mapping[str, tuple[float, float, float]] = MappingProxyType(
    {
        "red": (0.90, 0.15, 0.15),
        "green": (0.15, 0.80, 0.20),
        "blue": (0.20, 0.35, 0.95),
        "yellow": (0.95, 0.85, 0.15),
        "magenta": (0.90, 0.20, 0.85),
        "cyan": (0.15, 0.85, 0.90),
    }
)
BACKGROUND = 0.05  # dark grey, the same in R, G and B (display range)

# Geometry, in image coordinates: x and y run from -1 (left, top) to +1 (right, bottom).
_CELL = 2 / 3  # width of a grid cell; cell centres sit at -2/3, 0, +2/3
_RADIUS = {"small": 0.14, "large": 0.27}  # a shape's size: the circle's radius, the others comparable
_MAX_OFFSET = 0.04  # jitter: the centre moves up to this far from the cell centre, in x and in y
_MAX_SCALE = 0.10  # jitter: the size changes by up to +-10%
_MAX_ROTATION = math.radians(15)  # jitter: turned by up to +-15 degrees (a square never looks like a diamond)
# Render this many pixels at a time, so memory stays bounded: cache-sized chunks are fastest on a CPU, big
# ones keep the number of kernel launches small on a GPU.
_PIXELS_PER_CHUNK = {"cpu": 2**18, "gpu": 2**24}

_MASK32 = 0xFFFFFFFF
_STREAMS = ("combination", "offset_x", "offset_y", "scale", "rotation")  # one hash stream per random choice

_POSITION_PHRASES = {
    "top left": "at the top left",
    "top": "at the top",
    "top right": "at the top right",
    "left": "on the left",
    "centre": "in the centre",
    "right": "on the right",
    "bottom left": "at the bottom left",
    "bottom": "at the bottom",
    "bottom right": "at the bottom right",
}


# ----------------------------------------------------------------------------------------------- captions


def captions_from_attributes(attributes: Mapping[str, torch.Tensor]) -> list[str]:
    """One caption per image: "a {size} {colour} {shape} {position phrase}".

    attributes: {"shape", "colour", "size", "position"} -> (N,) LongTensor of indices into ATTRIBUTES.
    Moves the indices to the CPU (one synchronisation). Taught in notebooks/06_classifier_free_guidance.ipynb.
    """
    values = {name: attributes[name].tolist() for name in ATTRIBUTES}
    return [
        f"a {SIZES[size]} {COLOURS[colour]} {SHAPES[shape]} {_POSITION_PHRASES[POSITIONS[position]]}"
        for shape, colour, size, position in zip(
            values["shape"], values["colour"], values["size"], values["position"], strict=True
        )
    ]


def parse_caption(caption: str) -> dict[str, str]:
    """Read the attributes back out of a caption: the inverse of :func:`captions_from_attributes`.

    "a small red circle at the top left" -> {"size": "small", "colour": "red", "shape": "circle",
    "position": "top left"}. Partial captions give the attributes they name ("a red triangle" ->
    {"colour": "red", "shape": "triangle"}); case, commas and extra spaces are ignored. An unknown word raises
    a ValueError listing the words Shapes knows. Taught in notebooks/06_classifier_free_guidance.ipynb.
    """
    text = " ".join(caption.lower().replace(",", " ").split())
    found: dict[str, str] = {}
    for position, phrase in _POSITION_PHRASES.items():
        if text == phrase or text.endswith(" " + phrase):
            found["position"] = position
            text = text[: -len(phrase)]
            break
    words = text.split()
    if words[:1] in (["a"], ["an"]):
        words = words[1:]
    for word in words:
        name = next((name for name, values in ATTRIBUTES.items() if word in values), None)
        if name is None:
            words_known = "; ".join(f"{k}: {', '.join(v)}" for k, v in ATTRIBUTES.items() if k != "position")
            raise ValueError(
                f"parse_caption: unknown word {word!r} in {caption!r}. Shapes captions read "
                f"'a <size> <colour> <shape> <where>', with {words_known}; <where> is one of "
                f"{', '.join(repr(p) for p in _POSITION_PHRASES.values())}."
            )
        if name in found:
            raise ValueError(
                f"parse_caption: {caption!r} names the {name} twice ({found[name]!r} and {word!r})."
            )
        found[name] = word
    if not found:
        raise ValueError(
            f"parse_caption: {caption!r} names no attribute; try 'a small red circle at the top left'."
        )
    return found


def attributes_from_captions(
    captions: Sequence[str], device: str | torch.device | None = None
) -> dict[str, torch.Tensor]:
    """Parse complete captions into attribute index tensors, ready for :func:`render` or a classifier.

    captions: N strings, each naming all four attributes -> {"shape", "colour", "size", "position"} -> (N,)
    LongTensor on ``device`` (default: :func:`dlcourse.runtime.get_device`).
    Taught in notebooks/06_classifier_free_guidance.ipynb.
    """
    if isinstance(captions, str):
        raise TypeError("attributes_from_captions takes a list of captions; wrap a single caption in a list.")
    rows = []
    for caption in captions:
        parsed = parse_caption(caption)
        missing = [name for name in ATTRIBUTES if name not in parsed]
        if missing:
            raise ValueError(
                f"caption {caption!r} does not say its {', '.join(missing)}; attributes_from_captions needs "
                f"all four attributes, e.g. 'a small red circle at the top left'."
            )
        rows.append([ATTRIBUTES[name].index(parsed[name]) for name in ATTRIBUTES])
    table = torch.tensor(rows, dtype=torch.long).reshape(len(rows), len(ATTRIBUTES)).to(get_device(device))
    return {name: table[:, k] for k, name in enumerate(ATTRIBUTES)}


# ---------------------------------------------------------------------------------------------- rendering
# Signed distances of unit-sized shapes centred at the origin (after Inigo Quilez's 2D distance functions).
# (u, v): (N, H, W) local coordinates, v pointing down. Negative inside, positive outside.


def _sd_box(u: torch.Tensor, v: torch.Tensor, half_w: float, half_h: float) -> torch.Tensor:
    qx, qy = u.abs() - half_w, v.abs() - half_h
    return torch.hypot(qx.clamp(min=0), qy.clamp(min=0)) + torch.maximum(qx, qy).clamp(max=0)


def _sd_circle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.hypot(u, v) - 1.0


def _sd_square(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return _sd_box(u, v, 0.85, 0.85)


def _sd_triangle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Equilateral triangle, apex up, half-side r, centred on its bounding box."""
    r, k = 1.15, math.sqrt(3.0)
    px = u.abs() - r
    py = -v + r / (2 * k) + r / k  # flip to y-up, move the bounding-box centre (not the centroid) to 0
    fold = px + k * py > 0  # reflect points beyond the slanted edge onto it
    px, py = torch.where(fold, (px - k * py) / 2, px), torch.where(fold, (-k * px - py) / 2, py)
    px = px - px.clamp(-2 * r, 0)
    return -torch.hypot(px, py) * torch.sign(py)


def _sd_diamond(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rhombus with half-diagonals (bx, by), taller than wide."""
    bx, by = 0.9, 1.2
    pu, pv = u.abs(), v.abs()
    h = (((bx - 2 * pu) * bx - (by - 2 * pv) * by) / (bx * bx + by * by)).clamp(-1, 1)
    d = torch.hypot(pu - 0.5 * bx * (1 - h), pv - 0.5 * by * (1 + h))
    return d * torch.sign(pu * by + pv * bx - bx * by)


def _sd_cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.minimum(_sd_box(u, v, 0.95, 0.32), _sd_box(u, v, 0.32, 0.95))  # union = min


_SIGNED_DISTANCES = (_sd_circle, _sd_square, _sd_triangle, _sd_diamond, _sd_cross)  # in SHAPES order


def _render_chunk(
    attributes: Mapping[str, torch.Tensor], jitter: torch.Tensor, resolution: int, colour_rgb: torch.Tensor
) -> torch.Tensor:
    """(N,) attributes, (N, 4) jitter, (len(COLOURS), 3) colour table -> (N, 3, H, W) images in [-1, 1]."""
    device = jitter.device
    pixel = 2 / resolution
    centres = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) * pixel - 1
    x, y = centres.view(1, 1, resolution), centres.view(1, resolution, 1)

    position = attributes["position"]
    cx = ((position % 3) - 1).float() * _CELL + _MAX_OFFSET * jitter[:, 0]
    cy = ((position // 3) - 1).float() * _CELL + _MAX_OFFSET * jitter[:, 1]
    radius = torch.where(attributes["size"] == SIZES.index("large"), _RADIUS["large"], _RADIUS["small"])
    radius = radius * (1 + _MAX_SCALE * jitter[:, 2])
    angle = _MAX_ROTATION * jitter[:, 3]
    cx, cy, radius, cos, sin = (t.view(-1, 1, 1) for t in (cx, cy, radius, angle.cos(), angle.sin()))

    # Pixel centres in the shape's own frame: translate, rotate, scale to unit size.
    dx, dy = x - cx, y - cy
    u, v = (cos * dx + sin * dy) / radius, (cos * dy - sin * dx) / radius

    shape = attributes["shape"].view(-1, 1, 1)
    distance = torch.zeros_like(u)
    for index, signed_distance in enumerate(_SIGNED_DISTANCES):  # 5 shape kinds, each over the whole chunk
        distance = torch.where(shape == index, signed_distance(u, v), distance)
    distance = distance * radius  # back to image units
    coverage = (0.5 - distance / pixel).clamp(0, 1)  # anti-aliasing: the fraction of the pixel inside

    rgb = colour_rgb[attributes["colour"]].view(-1, 3, 1, 1)
    image = BACKGROUND + (rgb - BACKGROUND) * coverage.unsqueeze(1)  # blend shape over background
    return to_model_range(image)


def _render(
    attributes: Mapping[str, torch.Tensor], jitter: torch.Tensor, resolution: int, colour_rgb: torch.Tensor
) -> torch.Tensor:
    """:func:`_render_chunk` over chunks of images, so memory stays bounded for any N."""
    pixels = _PIXELS_PER_CHUNK["cpu" if jitter.device.type == "cpu" else "gpu"]
    per_chunk = max(1, pixels // (resolution * resolution))
    chunks = [
        _render_chunk(
            {k: t[i : i + per_chunk] for k, t in attributes.items()},
            jitter[i : i + per_chunk],
            resolution,
            colour_rgb,
        )
        for i in range(0, max(len(jitter), 1), per_chunk)  # at least one chunk, so N = 0 gives an empty batch
    ]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def _colour_table(device: torch.device) -> torch.Tensor:
    return torch.tensor([COLOUR_RGB[c] for c in COLOURS], dtype=torch.float32).to(device)


def _check_resolution(resolution: int) -> None:
    if not isinstance(resolution, int) or isinstance(resolution, bool) or not 8 <= resolution <= 256:
        raise ValueError(
            f"resolution must be an int from 8 to 256 (pixels per side), got {resolution!r}. "
            "The course uses 32 (16 for quick CPU runs, 64 for the latent-diffusion chapter)."
        )


def render(
    attributes: Mapping[str, torch.Tensor],
    resolution: int = 32,
    *,
    jitter: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    check: bool = True,
) -> torch.Tensor:
    """Draw the images the given attributes describe, e.g. exactly "a small red triangle at the top left".

    attributes: {"shape", "colour", "size", "position"} -> (N,) LongTensor of indices into ATTRIBUTES
        (get them from captions with :func:`attributes_from_captions`).
    jitter: (N, 4) in [-1, 1]: centre offset x, y, size change, rotation, as fractions of their maxima.
        None draws every shape centred in its cell, at its nominal size, unrotated.
    device: where to draw (default: the attributes' device).
    check: validate the index ranges (one host synchronisation); pass False in hot loops.
    Returns (N, 3, resolution, resolution) float32 in [-1, 1].
    Taught in notebooks/01_forward_process.ipynb; used to test prompt adherence in
    notebooks/06_classifier_free_guidance.ipynb.
    """
    _check_resolution(resolution)
    missing = [name for name in ATTRIBUTES if name not in attributes]
    if missing:
        raise ValueError(f"render: attributes lack {missing}; give all of {list(ATTRIBUTES)} as (N,) tensors")
    device = torch.device(device) if device is not None else torch.as_tensor(attributes["shape"]).device
    attributes = {name: torch.as_tensor(attributes[name], device=device) for name in ATTRIBUTES}
    n = attributes["shape"].shape[0]
    for name, t in attributes.items():
        if t.dtype != torch.long or t.shape != (n,):
            raise ValueError(
                f"render: attributes[{name!r}] must be a ({n},) LongTensor like attributes['shape'], "
                f"got {t.dtype} of shape {tuple(t.shape)}."
            )
        if check and bool(((t < 0) | (t >= len(ATTRIBUTES[name]))).any()):
            raise ValueError(
                f"render: attributes[{name!r}] must hold indices 0..{len(ATTRIBUTES[name]) - 1} into "
                f"{ATTRIBUTES[name]}; pass check=False to skip this test (it synchronises with the device)."
            )
    if jitter is None:
        jitter = torch.zeros(n, 4, device=device)
    elif jitter.shape != (n, 4):
        raise ValueError(f"render: jitter must be ({n}, 4), values in [-1, 1]; got {tuple(jitter.shape)}.")
    return _render(attributes, jitter.to(device, torch.float32), resolution, _colour_table(device))


# ------------------------------------------------------------------------------------------------ dataset


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


def _validate_holdout(holdout: Mapping[str, str] | Sequence[Mapping[str, str]]) -> tuple[dict[str, str], ...]:
    rules = (holdout,) if isinstance(holdout, Mapping) else tuple(holdout)
    for rule in rules:
        if not isinstance(rule, Mapping) or not rule:
            raise ValueError(
                f"holdout must be a list of non-empty dicts of attributes, e.g. "
                f"[{{'shape': 'triangle', 'colour': 'red'}}], got {holdout!r}."
            )
        for name, value in rule.items():
            if name not in ATTRIBUTES:
                raise ValueError(f"holdout: unknown attribute {name!r}; valid are {list(ATTRIBUTES)}.")
            if value not in ATTRIBUTES[name]:
                raise ValueError(f"holdout: unknown {name} {value!r}; valid are {list(ATTRIBUTES[name])}.")
    return tuple(dict(rule) for rule in rules)


class Shapes:
    """The Shapes dataset: unlimited, deterministic, index-addressable, generated on ``device``.

    resolution: pixels per side, 8..256. seed: which world (any int >= 0; a different seed, different images).
    holdout: attribute combinations kept out of the ``"train"`` split, e.g. ``[{"shape": "triangle",
        "colour": "red"}]`` holds out every red triangle (any size, any position); ``{"size": "small"}`` all
        small shapes. split: ``"train"`` (every combination except the held-out ones) or ``"heldout"`` (only
        the held-out ones: a test of compositional generalisation, or a rare new concept for DreamBooth).
    device: where images are generated (default :func:`dlcourse.runtime.get_device`).

    ``shapes.batch(start, n)`` gives images start..start+n-1; ``shapes[i]`` and ``shapes[a:b]`` the same as a
    :class:`ShapesBatch`. Taught in notebooks/01_forward_process.ipynb; holdout in
    notebooks/06_classifier_free_guidance.ipynb.
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
        _check_resolution(resolution)
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}.")
        if split not in self.SPLITS:
            raise ValueError(f"split must be one of {self.SPLITS}, got {split!r}.")
        self.resolution, self.seed, self.split = resolution, seed, split
        self.holdout = _validate_holdout(holdout)
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
        self._colour_rgb = _colour_table(self.device)

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
        for name, value in (("start", start), ("n", n)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"Shapes.batch: {name} must be an int >= 0, got {value!r}.")
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
        bits = {name: _hash_bits(self.seed, stream, index) for stream, name in enumerate(_STREAMS)}
        # Uniform over the allowed combinations, so a held-out one can never be drawn.
        combination = self.combinations[bits["combination"] % len(self.combinations)]
        attributes = {name: combination[:, k] for k, name in enumerate(ATTRIBUTES)}
        jitter = torch.stack([_uniform(bits[name]) for name in _STREAMS[1:]], dim=1)  # (N, 4) in [-1, 1)
        images = _render(attributes, jitter, self.resolution, self._colour_rgb)
        return ShapesBatch(images, attributes)
