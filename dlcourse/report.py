"""Measured figures: every number a notebook claims is printed where it is measured and collected by
``make course`` into ``build/course/report.md``.

A notebook calls ``record("unet_parameters", n)``; the figure is printed in the notebook, and when the
course runner has set ``$DLCOURSE_REPORT_FILE`` it is also appended there as one JSON line.
"""

from __future__ import annotations

import json
import math
import os
from numbers import Real

__all__ = ["REPORT_ENV", "record"]

REPORT_ENV = "DLCOURSE_REPORT_FILE"


def record(name: str, value: float | int, unit: str = "", *, note: str = "") -> float | int:
    """Print a measured figure and, under ``make course``, append it to the report. Returns ``value``.

    ``value`` must be a finite real number (convert tensors with ``.item()`` first); a NaN or inf figure is an
    error, since reporting one would hide a broken measurement.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"record({name!r}, ...) needs a plain number; got {type(value).__name__} (use .item())")
    if not math.isfinite(value):
        raise ValueError(f"record({name!r}, {value}) : the measured value is not finite, so the measurement is broken")
    text = f"{value:.4g}" if isinstance(value, float) else f"{value:,}"
    print(f"[measured] {name} = {text}{' ' + unit if unit else ''}{'  (' + note + ')' if note else ''}")
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"name": name, "value": value, "unit": unit, "note": note}) + "\n")
    return value
