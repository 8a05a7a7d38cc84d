"""Notebook 09: every mistake section records a measured figure for the wrong and for the fixed version.

The notebook runs through ``make course``'s runner in smoke mode with an empty data folder (a fresh runtime: it trains
the smoke-size models of notebooks 03-07 it needs), and the report it writes must pair, for each of the twelve
sections, ``mNN_<figure>_wrong`` with ``mNN_<figure>_fixed``.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "09_common_mistakes.ipynb"
SECTIONS = 12


def test_the_notebook_has_one_section_per_mistake():
    markdown = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "markdown")
    numbers = [int(n) for n in re.findall(r"^## (\d+)\. ", markdown, flags=re.M)]
    assert numbers == list(range(1, SECTIONS + 1)), numbers


def test_every_section_records_its_wrong_and_fixed_figure(tmp_path):
    env = {**os.environ, "DLCOURSE_SMOKE": "1", "DLCOURSE_DATA": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_course.py"), "--out", str(tmp_path / "out"), str(NOTEBOOK)],
        capture_output=True, text=True, timeout=900, env=env,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((tmp_path / "out" / "report.json").read_text())["notebooks"][0]["figures"]
    names = {f["name"] for f in figures}
    for k in range(1, SECTIONS + 1):
        wrong = {n.removesuffix("_wrong") for n in names if n.startswith(f"m{k:02d}_") and n.endswith("_wrong")}
        fixed = {n.removesuffix("_fixed") for n in names if n.startswith(f"m{k:02d}_") and n.endswith("_fixed")}
        assert wrong and wrong == fixed, f"section {k}: wrong {sorted(wrong)}, fixed {sorted(fixed)}"
