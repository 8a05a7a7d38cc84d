"""bench/diffusers_vs_dlcourse.py measures dlcourse against diffusers on a GPU; at toy sizes it runs on a CPU, so a
change to train() or the samplers that breaks it shows here, not in a GPU session's few minutes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("diffusers")

SCRIPT = Path(__file__).resolve().parent.parent / "bench" / "diffusers_vs_dlcourse.py"


def test_the_benchmark_runs_at_toy_sizes_and_prints_its_table():
    args = ["--device", "cpu", "--base-channels", "8", "--train-steps", "40", "--train-batch", "4",
            "--sample-batches", "2", "--sample-steps", "2"]
    run = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    rows = [line for line in run.stdout.splitlines() if line.startswith("| ") and "img/s" not in line]
    assert [row.split(" | ")[0] for row in rows] == ["| train, batch 4", "| DDIM-2, batch 2"]
    for row in rows:
        ours, theirs, ratio = (float(cell.rstrip("x").replace(",", "")) for cell in row.split(" | ")[1:4])
        assert ours > 0 and theirs > 0 and ratio == pytest.approx(ours / theirs, rel=0.02)
