"""Executed copies (executed/): `run_course.py --executed` keeps them with a record of the run, and
tools/executed_status.py reports each as missing, up to date or stale, failing only on a malformed copy."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("executed_status", ROOT / "tools" / "executed_status.py")
status = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(status)


def _notebook(path, *sources):
    """A notebook with a markdown title and one code cell per source."""
    cells = [nbformat.v4.new_markdown_cell("# Title")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A checkout in miniature after `run_course.py --executed`: notebooks/ (one runs, one fails), dlcourse/ (a copy
    of this checkout's, which the run hashed) and executed/ as the run left it."""
    root = tmp_path_factory.mktemp("checkout")
    (root / "notebooks").mkdir()
    good = _notebook(root / "notebooks" / "01_good.ipynb", "x = 6 * 7", "print(x)")
    bad = _notebook(root / "notebooks" / "02_bad.ipynb", "raise RuntimeError('boom')")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "run_course.py"), "--out", str(root / "build"),
         "--executed", str(root / "executed"), str(good), str(bad)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "DLCOURSE_SMOKE": "1"},
    )
    assert result.returncode == 1, result.stdout + result.stderr  # 02_bad failed
    shutil.copytree(ROOT / "dlcourse", root / "dlcourse", ignore=shutil.ignore_patterns("__pycache__"))
    return root


@pytest.fixture
def checkout(ran, tmp_path):
    """A copy of `ran` that a test may edit."""
    return shutil.copytree(ran, tmp_path / "checkout")


def _report(root, capsys):
    """The status tool's exit code, stdout and stderr on the checkout at `root`."""
    code = status.main(["--root", str(root)])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_course_keeps_only_notebooks_that_ran_with_a_record_of_the_run(ran):
    assert sorted(p.name for p in (ran / "executed").iterdir()) == ["01_good.ipynb"]
    nb = nbformat.read(ran / "executed" / "01_good.ipynb", as_version=4)
    assert nb.cells[2].outputs[0]["text"] == "42\n" and nb.cells[2].execution_count == 2  # outputs kept inline
    record = nb.metadata["dlcourse"]
    assert sorted(record) == sorted(status.KEYS)
    assert record["mode"] == "smoke" and record["gpu"] is None and record["wall_s"] > 0
    assert datetime.fromisoformat(record["date"]).utcoffset().total_seconds() == 0
    assert re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", record["commit"]), record["commit"]  # this checkout is a git repo
    source = nbformat.read(ran / "notebooks" / "01_good.ipynb", as_version=4)
    assert record["notebook_sha256"] == status.notebook_sha256(source)
    assert record["package_sha256"] == status.package_sha256(ran / "dlcourse")


def test_hashes_ignore_outputs_metadata_and_execution_counts():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("a = 1")])
    before = status.notebook_sha256(nb)
    ran = json.loads(nbformat.writes(nb))  # as on disk: sources as lists of lines
    ran["cells"][1].update(execution_count=7, outputs=[{"output_type": "stream", "name": "stdout", "text": "x"}],
                           metadata={"execution": {"shell.execute_reply": "2025"}})
    ran["metadata"]["dlcourse"] = {"mode": "gpu"}
    assert status.notebook_sha256(ran) == before
    ran["cells"][1]["source"] = ["a = 1\n", "b = 2"]
    assert status.notebook_sha256(ran) != before
    nb.cells[1].cell_type = "markdown"
    assert status.notebook_sha256(nb) != before


def test_package_hash_follows_py_paths_and_contents(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.py").write_text("x = 1\n")
    before = status.package_sha256(tmp_path)
    (tmp_path / "notes.txt").write_text("not code")
    assert status.package_sha256(tmp_path) == before
    (tmp_path / "sub" / "a.py").write_text("x = 2\n")
    assert status.package_sha256(tmp_path) != before
    (tmp_path / "sub" / "a.py").write_text("x = 1\n")
    (tmp_path / "sub" / "a.py").rename(tmp_path / "b.py")
    assert status.package_sha256(tmp_path) != before


def test_status_up_to_date_then_stale_after_a_cell_edit(checkout, capsys):
    code, out, err = _report(checkout, capsys)
    assert code == 0 and err == ""
    assert re.search(r"01_good\.ipynb: up to date \(smoke mode, no GPU, \S+, commit [0-9a-f]{40}", out), out
    assert "02_bad.ipynb: no executed copy" in out
    path = checkout / "notebooks" / "01_good.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[1].source = "x = 6 * 8"
    nbformat.write(nb, path)
    code, out, _ = _report(checkout, capsys)
    assert code == 0 and "01_good.ipynb: STALE, the notebook changed since it ran (smoke mode" in out, out


def test_status_stale_after_a_package_change(checkout, capsys):
    with open(checkout / "dlcourse" / "__init__.py", "a") as f:
        f.write("# edited\n")
    code, out, _ = _report(checkout, capsys)
    assert code == 0 and "01_good.ipynb: STALE, the dlcourse package changed since it ran" in out, out
    path = checkout / "notebooks" / "01_good.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("y = 1"))
    nbformat.write(nb, path)
    code, out, _ = _report(checkout, capsys)
    assert code == 0 and "01_good.ipynb: STALE, the notebook and the dlcourse package changed" in out, out


def _unreadable(copy):
    copy.write_text("{")


def _without_record(copy):
    nb = json.loads(copy.read_text())
    del nb["metadata"]["dlcourse"]
    copy.write_text(json.dumps(nb))


def _without_commit(copy):
    nb = json.loads(copy.read_text())
    del nb["metadata"]["dlcourse"]["commit"]
    copy.write_text(json.dumps(nb))


def _without_notebook(copy):
    shutil.copy(copy, copy.with_name("03_gone.ipynb"))


@pytest.mark.parametrize("spoil, message", [
    (_unreadable, "01_good.ipynb: not a readable notebook"),
    (_without_record, '01_good.ipynb: no metadata["dlcourse"] (not written by run_course.py --executed); re-run'),
    (_without_commit, '01_good.ipynb: metadata["dlcourse"] lacks commit; re-run the notebook on a GPU'),
    (_without_notebook, "03_gone.ipynb: no notebooks/03_gone.ipynb to match (renamed or removed?); delete the copy"),
], ids=["unreadable", "no-record", "no-commit", "no-notebook"])
def test_malformed_copy_fails_saying_what_is_wrong_and_the_fix(checkout, capsys, spoil, message):
    spoil(checkout / "executed" / "01_good.ipynb")
    code, out, err = _report(checkout, capsys)
    assert code == 1 and message in err, err
    assert "02_bad.ipynb: no executed copy" in out  # the other notebooks are still reported


def test_commit_from_git_else_dlcourse_commit_else_unknown(tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # tmp_path is not inside some other repo
    monkeypatch.setenv("DLCOURSE_COMMIT", "abc123")
    assert status.current_commit(tmp_path) == "abc123"
    monkeypatch.delenv("DLCOURSE_COMMIT")
    assert status.current_commit(tmp_path) == "unknown"

    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path,
                              capture_output=True, text=True, check=True).stdout.strip()

    for name in ("notebooks/01_a.ipynb", "dlcourse/a.py", "README.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "start")
    monkeypatch.setenv("DLCOURSE_COMMIT", "abc123")  # git wins when it works
    head = git("rev-parse", "HEAD")
    (tmp_path / "README.md").write_text("2\n")  # outside dlcourse/ and notebooks/: still clean
    assert status.current_commit(tmp_path) == head
    (tmp_path / "notebooks" / "01_a.ipynb").write_text("2\n")
    assert status.current_commit(tmp_path) == head + "+dirty"


def test_status_of_this_checkout_names_every_notebook():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "executed_status.py")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"  {path.name}: " in result.stdout, result.stdout
