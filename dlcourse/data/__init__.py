"""Data for the course: the built-in Shapes world, real datasets, and the [0, 1] <-> [-1, 1] conversions.

Shapes, one concept per module: :mod:`~dlcourse.data.world` (the attributes and their values),
:mod:`~dlcourse.data.rendering` (drawing them), :mod:`~dlcourse.data.captions` (saying them),
:mod:`~dlcourse.data.shapes` (the dataset that draws them at random); input checks in
:mod:`~dlcourse.data.checks`. Real datasets: :mod:`~dlcourse.data.datasets`.
"""

from dlcourse.data.captions import attributes_from_captions, captions_from_attributes, parse_caption, partial_captions
from dlcourse.data.datasets import DATASETS, DatasetUnavailableError, ImageData, load_dataset
from dlcourse.data.rendering import COLOUR_RGB, render
from dlcourse.data.shapes import Shapes, ShapesBatch
from dlcourse.data.transforms import to_display_range, to_model_range
from dlcourse.data.world import ATTRIBUTES, COLOURS, POSITIONS, SHAPES, SIZES

__all__ = [
    "ATTRIBUTES",
    "COLOURS",
    "COLOUR_RGB",
    "DATASETS",
    "DatasetUnavailableError",
    "ImageData",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "Shapes",
    "ShapesBatch",
    "attributes_from_captions",
    "captions_from_attributes",
    "load_dataset",
    "parse_caption",
    "partial_captions",
    "render",
    "to_display_range",
    "to_model_range",
]
