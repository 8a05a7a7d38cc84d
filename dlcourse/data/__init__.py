"""Data for the course: the built-in Shapes world, real datasets, and the [0, 1] <-> [-1, 1] conversions."""

from dlcourse.data.datasets import DATASETS, DatasetUnavailableError, ImageData, load_dataset
from dlcourse.data.shapes import (
    ATTRIBUTES,
    COLOUR_RGB,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    Shapes,
    ShapesBatch,
    attributes_from_captions,
    captions_from_attributes,
    parse_caption,
    render,
)
from dlcourse.data.transforms import to_display_range, to_model_range

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
    "render",
    "to_display_range",
    "to_model_range",
]
