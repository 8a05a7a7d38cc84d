"""Which executed copies of the notebooks (``executed/NN_topic.ipynb``) still match the code (run by ``make test``).

The notebooks are stored without outputs, so on GitHub a learner sees no figure. A session with a GPU runs
``tools/run_course.py --executed executed`` and the repository keeps the executed copies it writes. Each copy records
in ``metadata["dlcourse"]`` how it ran (mode, GPU, date, commit, wall time) and the code it ran, as two hashes: the
notebook's cells (types and sources only, so outputs and execution counts do not count) and the ``dlcourse``
package's ``.py`` sources. ``run_course.py`` writes that record with the hashes and commit computed here, and this
script compares them with the code as it is now, one line per notebook: no executed copy, up to date, or stale
because the notebook and/or the package changed. A stale copy is reported, not an error: re-running it needs a GPU.
The exit status is non-zero only when a copy is malformed (unreadable, without its record, or without a notebook of
its name), since then the report itself cannot be trusted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The keys of metadata["dlcourse"] in an executed copy; run_course.py writes them all.
KEYS = ("mode", "gpu", "date", "commit", "notebook_sha256", "package_sha256", "wall_s")
REFRESH = "python tools/run_course.py --executed executed"


def notebook_sha256(nb: dict) -> str:
    """Hash of a notebook's cells, their types and sources only: outputs, metadata and execution counts do not count.

    ``nb`` is the notebook's JSON (or an nbformat notebook); a source stored as a list of lines counts as their join.
    """
    cells = []
    for cell in nb["cells"]:
        source = cell["source"]
        cells.append([cell["cell_type"], "".join(source) if isinstance(source, list) else source])
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def package_sha256(package_dir: Path) -> str:
    """Hash of the package's ``.py`` sources: each one's path (relative, in sorted order) and contents."""
    digest = hashlib.sha256()
    for relative in sorted(p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*.py")):
        data = (package_dir / relative).read_bytes()
        digest.update(f"{relative}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def current_commit(root: Path) -> str:
    """The commit the checkout at ``root`` is at, "+dirty" if dlcourse/ or notebooks/ have uncommitted changes.

    Without git (a copy of the working tree, as a GPU machine gets) it is ``$DLCOURSE_COMMIT``, else "unknown".
    """
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--", "dlcourse", "notebooks")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("DLCOURSE_COMMIT") or "unknown"
    return commit + ("+dirty" if dirty else "")


class MalformedCopy(Exception):
    """An executed copy this script cannot read; the message says what is wrong and how to fix it."""


def _record(copy: Path) -> dict:
    """The run record (metadata["dlcourse"]) of an executed copy, all of KEYS present; MalformedCopy if not."""
    fix = f"re-run the notebook on a GPU ({REFRESH} notebooks/{copy.name}) or delete the copy"
    try:
        nb = json.loads(copy.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise MalformedCopy(f"{copy}: not a readable notebook ({error}); {fix}") from None
    record = nb.get("metadata", {}).get("dlcourse") if isinstance(nb, dict) else None
    if not isinstance(record, dict):
        raise MalformedCopy(f'{copy}: no metadata["dlcourse"] (not written by run_course.py --executed); {fix}')
    missing = [key for key in KEYS if key not in record]
    if missing:
        raise MalformedCopy(f'{copy}: metadata["dlcourse"] lacks {", ".join(missing)}; {fix}')
    return record


def status_line(notebook: Path, copy: Path, package_hash: str) -> str:
    """One line on a notebook's executed copy: none, up to date, or stale and why (MalformedCopy if unreadable)."""
    if not copy.exists():
        return f"{notebook.name}: no executed copy"
    record = _record(copy)
    changed = []
    if record["notebook_sha256"] != notebook_sha256(json.loads(notebook.read_text(encoding="utf-8"))):
        changed.append("the notebook")
    if record["package_sha256"] != package_hash:
        changed.append("the dlcourse package")
    run = f"{record['mode']} mode, {record['gpu'] or 'no GPU'}, {record['date']}, commit {record['commit']}"
    if not changed:
        return f"{notebook.name}: up to date ({run})"
    return f"{notebook.name}: STALE, {' and '.join(changed)} changed since it ran ({run})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose notebooks/, executed/ and dlcourse/ to compare (default: this one)")
    root = parser.parse_args(argv).root
    notebooks = sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    copies = sorted((root / "executed").glob("*.ipynb"))
    package_hash = package_sha256(root / "dlcourse")
    errors = [f"{copy}: no notebooks/{copy.name} to match (renamed or removed?); delete the copy or rename it"
              for copy in copies if copy.name not in {nb.name for nb in notebooks}]
    print(f"Executed copies in executed/ (a GPU session refreshes them with: {REFRESH}):")
    for notebook in notebooks:
        try:
            print("  " + status_line(notebook, root / "executed" / notebook.name, package_hash))
        except MalformedCopy as error:
            errors.append(str(error))
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
