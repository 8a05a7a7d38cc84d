"""The notebooks' shape: stored without outputs, standard opening and closing, sizes from settings().

Their execution is tested separately: pytest runs every notebook with nbval in smoke mode (`make test`).
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_notebooks_exist_and_are_numbered_in_order():
    numbers = [int(p.name[:2]) for p in NOTEBOOKS]
    assert numbers and numbers == list(range(1, len(numbers) + 1)), [p.name for p in NOTEBOOKS]


@pytest.fixture(params=NOTEBOOKS, ids=lambda p: p.stem)
def notebook(request):
    return request.param, nbformat.read(request.param, as_version=4)


def test_stored_without_outputs(notebook):
    path, nb = notebook
    nbformat.validate(nb)
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} cell {index} has outputs"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


def test_opens_with_goals_and_closes_with_summary_and_exercises(notebook):
    path, nb = notebook
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith("# ")
    for heading in ("What you will learn", "What you need", "How long"):
        assert heading in first.source, f"{path.name}: opening cell lacks '{heading}'"
    closing = "\n".join(c.source for c in nb.cells[-3:] if c.cell_type == "markdown")
    assert "## Summary" in closing and "## Exercises" in closing, f"{path.name}: no summary/exercises at the end"


def test_setup_and_parameters_cells(notebook):
    path, nb = notebook
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    setup = code[0]
    assert 'find_spec("dlcourse")' in setup and "%pip install" in setup, f"{path.name}: first code cell is not setup"
    assert any(f'settings("{path.stem}"' in source for source in code[:3]), f"{path.name}: no parameters cell"
    for source in code:
        assert not re.search(r"\bif\b.*\b(run_mode\(\)|cfg\.mode|\.mode\s*==)", source), (
            f"{path.name}: branch on the run mode; put mode-dependent sizes in dlcourse/modes.py instead"
        )


def test_cells_are_small(notebook):
    path, nb = notebook
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            lines = len(cell.source.splitlines())
            assert lines <= 30, f"{path.name} cell {index} has {lines} lines; split it (one idea per cell)"


def test_readme_lists_every_notebook_with_a_colab_link():
    readme = (ROOT / "README.md").read_text()
    for path in NOTEBOOKS:
        assert f"notebooks/{path.name}" in readme, f"README does not list {path.name}"
        assert re.search(rf"colab\.research\.google\.com/github/.+/notebooks/{path.name}", readme), path.name
