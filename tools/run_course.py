"""Execute every course notebook at the current run mode's settings and write a report (``make course``).

For each ``notebooks/NN_*.ipynb`` it records the wall time, the peak GPU memory (and peak host RSS) of the
notebook's kernel, the figures the notebook measured with ``dlcourse.report.record``, and the settings it ran
with (``dlcourse.modes.settings`` records them, with any overrides from the notebook's parameters cell). It writes the
executed notebooks and ``report.json`` / ``report.md`` (rewritten after each notebook) to ``--out`` (default
``build/course``) and exits non-zero if any notebook failed. ``DLCOURSE_SMOKE=1`` / ``DLCOURSE_MODE`` pick the mode
as usual. ``--stop-after`` time-boxes a run: notebooks not started in time are reported as skipped.

``--executed DIR`` also keeps each notebook that ran without error as ``DIR/NN_topic.ipynb`` with a record of the run
in ``metadata["dlcourse"]``: mode, GPU, date, commit, wall time and hashes of the code it ran. The repository keeps a
GPU run's copies in ``executed/`` so that learners see the figures; ``tools/executed_status.py`` reports which are
stale. Without git (a copy of the working tree) the commit is read from ``$DLCOURSE_COMMIT``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
from executed_status import current_commit, notebook_sha256, package_sha256
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parent.parent

# Runs in the notebook's kernel after its last cell; never saved into the notebook.
PROBE = """\
import json, resource, sys, torch
print(json.dumps({
    "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None,
    "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def _distinct(rows) -> list[dict]:
    """The rows without repeats (a notebook may ask for the same settings twice), in first-seen order."""
    seen: dict[str, dict] = {}
    for row in rows:
        seen.setdefault(json.dumps(row, sort_keys=True), row)
    return list(seen.values())


def settings_line(mode: str, records: list[dict]) -> str:
    """The settings a notebook ran with, one clause per notebook/recipe: its overrides, or "as in the table"."""
    clauses = []
    for r in records:
        other_mode = f" ({r['mode']} mode)" if r["mode"] != mode else ""
        changed = ", ".join(f"{k}={v!r} (table: {r['table'][k]!r})" for k, v in r["overrides"].items())
        clauses.append(f"`{r['settings']}`{other_mode} " + (f"overridden: {changed}" if changed else "as in the table"))
    return "Settings (dlcourse/modes.py): " + "; ".join(clauses) + "."


def run_notebook(path: Path, out_dir: Path, timeout: int) -> dict:
    """Execute one notebook in a fresh kernel (cwd = notebooks/) and return its report entry."""
    nb = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}  # run with the notebook's folder as cwd
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources=resources)
    with tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False) as figures_file:
        figures_path = Path(figures_file.name)
    os.environ["DLCOURSE_REPORT_FILE"] = str(figures_path)
    entry: dict = {"notebook": path.name, "status": "ok", "error": None}
    start = time.perf_counter()
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            entry["wall_s"] = round(time.perf_counter() - start, 2)
            probe = nbformat.v4.new_code_cell(PROBE)
            nb.cells.append(probe)  # nbclient writes outputs into nb.cells; removed again below
            try:
                client.execute_cell(probe, len(nb.cells) - 1)
            finally:
                nb.cells.pop()
            stdout = "".join(o.get("text", "") for o in probe.outputs if o.get("name") == "stdout")
            entry.update(json.loads(stdout.strip().splitlines()[-1]))
    except CellExecutionError as error:
        entry.update(status="failed", error=str(error).strip().splitlines()[-1][:500])
        entry["wall_s"] = round(time.perf_counter() - start, 2)
    finally:
        os.environ.pop("DLCOURSE_REPORT_FILE", None)
        rows = [json.loads(line) for line in figures_path.read_text(encoding="utf-8").splitlines() if line.strip()]
        figures_path.unlink()
        entry["settings"] = _distinct(row for row in rows if "settings" in row)
        entry["figures"] = [row for row in rows if "settings" not in row]
        nbformat.write(nb, out_dir / path.name)
    return entry


def keep_executed(executed: Path, dest: Path, run: dict) -> None:
    """Copy an executed notebook to ``dest`` with ``run`` and the hash of its cells in ``metadata["dlcourse"]``.

    The cells' hash is taken from the executed notebook itself, so it is the code that ran even if the source
    notebook was edited during the run; ``tools/executed_status.py`` compares it with the notebook as it is now.
    """
    nb = nbformat.read(executed, as_version=4)
    nb.metadata["dlcourse"] = {**run, "notebook_sha256": notebook_sha256(nb)}
    nbformat.write(nb, dest)


def markdown_report(mode: str, entries: list[dict]) -> str:
    """The report as a Markdown table plus one figure list per notebook."""
    gpu = next((e.get("gpu") for e in entries if e.get("gpu")), None)
    lines = [f"# Course run ({mode} mode, {gpu or 'no GPU'})", "",
             "| notebook | status | wall time (s) | peak GPU memory (MiB) | peak host RSS (MiB) |",
             "|---|---|---:|---:|---:|"]
    for e in entries:
        gpu_mib = f"{e['peak_gpu_mib']:.0f}" if e.get("peak_gpu_mib") is not None else "n/a"
        rss = f"{e['peak_rss_mib']:.0f}" if e.get("peak_rss_mib") is not None else "n/a"
        lines.append(f"| {e['notebook']} | {e['status']} | {e['wall_s']:.1f} | {gpu_mib} | {rss} |")
    for e in entries:
        lines += ["", f"## {e['notebook']}", ""]
        if e.get("settings"):
            lines += [settings_line(mode, e["settings"]), ""]
        if e["error"]:
            lines.append(f"FAILED: {e['error']}")
        for f in e["figures"]:
            value = f"{f['value']:,}" if isinstance(f["value"], int) else f"{f['value']:.4g}"
            note = f" ({f['note']})" if f["note"] else ""
            lines.append(f"- {f['name']}: {value} {f['unit']}{note}".rstrip())
    return "\n".join(lines) + "\n"


def write_report(out: Path, mode: str, entries: list[dict]) -> None:
    (out / "report.json").write_text(json.dumps({"mode": mode, "notebooks": entries}, indent=2) + "\n")
    (out / "report.md").write_text(markdown_report(mode, entries))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "course")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one cell may run")
    parser.add_argument("--executed", type=Path, metavar="DIR",
                        help="also keep each notebook that ran without error as DIR/NN_topic.ipynb with a record of "
                             "the run (the repository keeps a GPU run's in executed/)")
    parser.add_argument("--stop-after", type=float, metavar="SECONDS",
                        help="start no notebook once this many seconds have passed (a GPU session's time box); the "
                             "ones not started are reported as skipped")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebooks/NN_*.ipynb")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from dlcourse.modes import run_mode

    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    args.out.mkdir(parents=True, exist_ok=True)
    mode = run_mode()
    if args.executed:
        args.executed.mkdir(parents=True, exist_ok=True)
        commit = current_commit(ROOT)
    entries = []
    begin = time.perf_counter()
    for path in paths:
        if args.stop_after is not None and time.perf_counter() - begin > args.stop_after:
            print(f"skipping {path.name}: the {args.stop_after:.0f} s time box has passed", flush=True)
            entries.append({"notebook": path.name, "status": "skipped", "wall_s": 0.0, "figures": [], "settings": [],
                            "error": f"not started: {args.stop_after:.0f} s had passed (--stop-after)"})
            continue
        print(f"running {path.name} ({mode} mode) ...", flush=True)
        package_hash = package_sha256(ROOT / "dlcourse")  # the package as this notebook's kernel imports it
        entry = run_notebook(path.resolve(), args.out, args.timeout)
        print(f"  {entry['status']} in {entry['wall_s']:.1f} s, {len(entry['figures'])} figures", flush=True)
        entries.append(entry)
        if args.executed and entry["status"] == "ok":
            date = datetime.now(UTC).isoformat(timespec="seconds")
            run = {"mode": mode, "gpu": entry["gpu"], "date": date, "commit": commit, "package_sha256": package_hash,
                   "wall_s": entry["wall_s"]}
            keep_executed(args.out / path.name, args.executed / path.name, run)
            print(f"  kept as {args.executed / path.name}", flush=True)
        write_report(args.out, mode, entries)  # after each notebook: a run killed later keeps what finished
    write_report(args.out, mode, entries)
    print(f"report: {args.out / 'report.md'}")
    return 1 if any(e["status"] == "failed" for e in entries) else 0


if __name__ == "__main__":
    raise SystemExit(main())
