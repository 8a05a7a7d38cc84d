"""The Shapes world: four attributes, the words for their values, and how a caption says them.

Every Shapes image shows one shape on a dark background, described by four attributes:

    shape     circle, square, triangle, diamond, cross
    colour    red, green, blue, yellow, magenta, cyan
    size      small, large
    position  a cell of a 3x3 grid: top left, top, top right, left, centre, right,
              bottom left, bottom, bottom right

In a tensor an attribute is an index into its tuple here (``SHAPES.index("triangle") == 2``), so a batch's
attributes are four (N,) LongTensors. A caption says all four: "a small red circle at the top left".
How the values look is in :mod:`dlcourse.data.rendering`, how captions are read and written in
:mod:`dlcourse.data.captions`, and the dataset that draws them in :mod:`dlcourse.data.shapes`.

Taught in notebooks/01_forward_process.ipynb, "The data: Shapes".
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ATTRIBUTES", "COLOURS", "POSITIONS", "SHAPES", "SIZES"]

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
