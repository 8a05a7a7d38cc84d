"""tools/run_course.py (`make course`): executes notebooks, collects their figures, reports failures."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent


def _notebook(path, *sources):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_report_has_wall_time_memory_and_figures(tmp_path):
    good = _notebook(
        tmp_path / "01_good.ipynb",
        "from dlcourse import record, settings",
        "record('answer', 42, 'units')",
        "cfg = settings('03_ddpm_training', n_eval=500)\nsettings('03_ddpm_training', n_eval=500)  # twice: once",
        "recipe = settings('ddpm_shapes')",
    )
    bad = _notebook(tmp_path / "02_bad.ipynb", "record = 1", "raise RuntimeError('boom')")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_course.py"), "--out", str(out), str(good), str(bad)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr  # one notebook failed
    report = json.loads((out / "report.json").read_text())
    first, second = report["notebooks"]
    assert first["status"] == "ok" and first["wall_s"] > 0 and first["peak_rss_mib"] > 0
    assert first["figures"] == [{"name": "answer", "value": 42, "unit": "units", "note": ""}]
    assert [(r["settings"], r["overrides"]) for r in first["settings"]] == [
        ("03_ddpm_training", {"n_eval": 500}), ("ddpm_shapes", {})
    ]
    assert second["status"] == "failed" and "boom" in second["error"]
    executed = nbformat.read(out / "01_good.ipynb", as_version=4)
    assert len(executed.cells) == 4 and "[measured] answer = 42" in executed.cells[1].outputs[0]["text"]
    markdown = (out / "report.md").read_text()
    assert "| 01_good.ipynb | ok |" in markdown and "- answer: 42 units" in markdown and "FAILED" in markdown
    table = first["settings"][0]["table"]["n_eval"]
    assert (f"Settings (dlcourse/modes.py): `03_ddpm_training` overridden: n_eval=500 (table: {table}); "
            "`ddpm_shapes` as in the table.") in markdown


def test_later_notebook_runs_alone_in_a_fresh_runtime(tmp_path):
    """Notebook 04 with an empty data folder (as on a new Colab runtime): it must train what it needs itself."""
    env = {**os.environ, "DLCOURSE_SMOKE": "1", "DLCOURSE_DATA": str(tmp_path / "data")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_course.py"), "--out", str(tmp_path / "out"),
         str(ROOT / "notebooks" / "04_ddim_sampling.ipynb")],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "data" / "checkpoints").glob("*.pt"))
    assert cached == ["ddpm_shapes", "feature_net"]


def test_a_time_box_skips_the_notebooks_it_has_no_time_for(tmp_path):
    """--stop-after 1: the first notebook starts at once and takes longer; the next is reported as skipped."""
    first = _notebook(tmp_path / "01_first.ipynb", "import time\ntime.sleep(1.5)")
    second = _notebook(tmp_path / "02_second.ipynb", "raise RuntimeError('must not run')")
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_course.py"), "--out", str(out), "--stop-after", "1",
         str(first), str(second)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr  # skipping is not failing
    entries = json.loads((out / "report.json").read_text())["notebooks"]
    assert [e["status"] for e in entries] == ["ok", "skipped"] and "--stop-after" in entries[1]["error"]
    assert "| 02_second.ipynb | skipped |" in (out / "report.md").read_text()
    assert not (out / "02_second.ipynb").exists()
