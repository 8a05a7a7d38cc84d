"""Measured figures: every number a notebook claims is printed where it is measured and collected by
``make course`` into ``build/course/report.md``, next to the settings it was measured with.

A notebook calls ``record("unet_parameters", n)``; the figure is printed in the notebook, and when the
course runner has set ``$DLCOURSE_REPORT_FILE`` it is also appended there as one JSON line. In a gpu dry run
(``DLCOURSE_DRYRUN=1``, dlcourse/dryrun.py: gpu shapes, steps cut) every figure is printed and stored marked as a
dry run's, so none is ever read as a gpu measurement. Every
:func:`dlcourse.modes.settings` call adds a line too (:func:`record_settings`), so the report says which
sizes a notebook ran with, and which of them its parameters cell overrode.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from numbers import Real
from typing import Any

from dlcourse.dryrun import DRY_RUN_MODE, dry_run_requested

__all__ = ["DRY_RUN_NOTE", "REPORT_ENV", "record", "record_settings"]

REPORT_ENV = "DLCOURSE_REPORT_FILE"
DRY_RUN_NOTE = f"{DRY_RUN_MODE}: gpu shapes with steps and counts cut; not a measurement"


def _append(row: dict[str, Any]) -> None:
    """Append one JSON line to the report file, when the course runner has set one."""
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, default=repr) + "\n")  # repr: a setting JSON cannot hold


def record(name: str, value: float | int, unit: str = "", *, note: str = "") -> float | int:
    """Print a measured figure and, under ``make course``, append it to the report. Returns ``value``.

    ``value`` must be a finite real number (convert tensors with ``.item()`` first); a NaN or inf figure is an
    error, since reporting one would hide a broken measurement. In a gpu dry run the printed line ends with
    :data:`DRY_RUN_NOTE` and the report's row has ``"dry_run": true``.
    """
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"record({name!r}, ...) needs a plain number; got {type(value).__name__} (use .item())")
    if not math.isfinite(value):
        raise ValueError(f"record({name!r}, {value}) : the measured value is not finite, so the measurement is broken")
    text = f"{value:.4g}" if isinstance(value, float) else f"{value:,}"
    dry_run = dry_run_requested()
    print(f"[measured] {name} = {text}{' ' + unit if unit else ''}{'  (' + note + ')' if note else ''}"
          f"{'  [' + DRY_RUN_NOTE + ']' if dry_run else ''}")
    _append({"name": name, "value": value, "unit": unit, "note": note} | ({"dry_run": True} if dry_run else {}))
    return value


def record_settings(name: str, mode: str, table: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """Note the settings a notebook (or recipe) ``name`` runs with; :func:`dlcourse.modes.settings` calls it.

    table: the values of ``name`` in ``mode`` as dlcourse/modes.py has them; overrides: the ones the caller
    replaced, with their new values (the settings used are ``table | overrides``). Prints the overrides (the
    table needs no comment) and, under ``make course``, appends ``{"settings": name, "mode": mode,
    "table": {...}, "overrides": {...}}`` to the report.
    """
    if overrides:
        changed = ", ".join(f"{key}={value!r} (table: {table[key]!r})" for key, value in overrides.items())
        print(f"[settings] {name}, {mode} mode: {changed}")
    _append({"settings": name, "mode": mode, "table": dict(table), "overrides": dict(overrides)})
