"""Drawing Shapes images: signed-distance functions and an anti-aliased renderer, the whole batch at once.

Each shape is a signed-distance function (SDF): d(p) < 0 inside, > 0 outside, |d| the distance to the
outline. Evaluating it at every pixel centre of the whole batch at once gives a (N, H, W) tensor, and
``coverage = clamp(0.5 - d / pixel_size, 0, 1)`` is the fraction of each pixel the shape covers: 1 inside,
0 outside, in between on the outline. That is anti-aliasing for free, at any resolution.

Besides its attributes (:mod:`dlcourse.data.world`) each image has a little "jitter": the shape moves a few
pixels inside its cell, grows or shrinks by up to 10%, turns by up to 15 degrees, so no two images are
exactly alike. :func:`render` draws given attributes (and jitter); :class:`dlcourse.data.Shapes` draws
random ones through :func:`draw`.

Draws every image of notebooks/01_forward_process.ipynb, "The data: Shapes" (through Shapes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import torch

from dlcourse.argument_checks import check_bool
from dlcourse.data.checks import check_hollow, check_jitter, check_resolution, checked_attributes
from dlcourse.data.transforms import to_model_range
from dlcourse.data.world import COLOURS, SIZES

__all__ = ["BACKGROUND", "COLOUR_RGB", "render"]

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
_OUTLINE = 0.3  # a hollow shape is its outline: a band this fraction of its size wide, centred on the edge
# Render this many pixels at a time, so memory stays bounded: cache-sized chunks are fastest on a CPU, big
# ones keep the number of kernel launches small on a GPU.
_PIXELS_PER_CHUNK = {"cpu": 2**18, "gpu": 2**24}


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


def _draw_chunk(
    attributes: Mapping[str, torch.Tensor],
    jitter: torch.Tensor,
    resolution: int,
    colour_rgb: torch.Tensor,
    hollow: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N,) attributes, (N, 4) jitter, (len(COLOURS), 3) colour table, (N,) bool hollow or None -> (N, 3, H, W)
    images in [-1, 1]."""
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
    if hollow is not None:  # the outline alone: |d| - half its width is the SDF of a band around the edge
        band = torch.maximum(_OUTLINE * radius / 2, torch.full_like(radius, 0.75 * pixel))  # >= 1.5 pixels wide
        distance = torch.where(hollow.view(-1, 1, 1), distance.abs() - band, distance)
    coverage = (0.5 - distance / pixel).clamp(0, 1)  # anti-aliasing: the fraction of the pixel inside

    rgb = colour_rgb[attributes["colour"]].view(-1, 3, 1, 1)
    image = BACKGROUND + (rgb - BACKGROUND) * coverage.unsqueeze(1)  # blend shape over background
    return to_model_range(image)


def draw(
    attributes: Mapping[str, torch.Tensor],
    jitter: torch.Tensor,
    resolution: int,
    colour_rgb: torch.Tensor,
    hollow: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`_draw_chunk` over chunks of images, so memory stays bounded for any N. No input checks."""
    pixels = _PIXELS_PER_CHUNK["cpu" if jitter.device.type == "cpu" else "gpu"]
    per_chunk = max(1, pixels // (resolution * resolution))
    chunks = [
        _draw_chunk(
            {k: t[i : i + per_chunk] for k, t in attributes.items()},
            jitter[i : i + per_chunk],
            resolution,
            colour_rgb,
            None if hollow is None else hollow[i : i + per_chunk],
        )
        for i in range(0, max(len(jitter), 1), per_chunk)  # at least one chunk, so N = 0 gives an empty batch
    ]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks)


def colour_table(device: torch.device) -> torch.Tensor:
    """COLOUR_RGB as a (len(COLOURS), 3) float32 tensor on ``device``, indexed by the colour attribute."""
    return torch.tensor([COLOUR_RGB[c] for c in COLOURS], dtype=torch.float32).to(device)


def render(
    attributes: Mapping[str, torch.Tensor],
    resolution: int = 32,
    *,
    jitter: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    check: bool = True,
    hollow: torch.Tensor | bool = False,
) -> torch.Tensor:
    """Draw the images the given attributes describe, e.g. exactly "a small red triangle at the top left".

    attributes: {"shape", "colour", "size", "position"} -> (N,) LongTensor of indices into ATTRIBUTES
        (get them from captions with :func:`dlcourse.data.attributes_from_captions`).
    jitter: (N, 4) in [-1, 1]: centre offset x, y, size change, rotation, as fractions of their maxima.
        None draws every shape centred in its cell, at its nominal size, unrotated.
    device: where to draw (default: the attributes' device).
    check: validate the index ranges (one host synchronisation); pass False in hot loops.
    hollow: draw the outline only, for every image (True) or per image ((N,) bool). No Shapes image is hollow: it is
        the new concept that notebook 07 teaches a trained model.
    Returns (N, 3, resolution, resolution) float32 in [-1, 1].
    """
    check_resolution(resolution)
    check_bool("render", "check", check)
    attributes = checked_attributes(attributes, device, check_values=check)
    n, device = attributes["shape"].shape[0], attributes["shape"].device
    if jitter is None:
        jitter = torch.zeros(n, 4, device=device)
    check_jitter(jitter, n, check_values=check)
    check_hollow(hollow, n)
    if isinstance(hollow, bool):
        hollow = torch.full((n,), hollow, dtype=torch.bool, device=device) if hollow else None
    hollow = None if hollow is None else hollow.to(device)
    return draw(attributes, jitter.to(device, torch.float32), resolution, colour_table(device), hollow)
