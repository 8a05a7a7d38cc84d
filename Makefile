# The course's commands. Each creates the virtual environment (.venv) on first use.
#   make lab     open JupyterLab on notebooks/
#   make test    lint + which executed/ copies are stale (a report) + unit tests + every notebook executed in smoke
#                mode + every notebook executed again in the gpu dry run (gpu mode's shapes, steps and counts cut:
#                dlcourse/dryrun.py) (what CI runs)
#   make course  execute every notebook at this machine's settings; report in build/course/report.md

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Jupyter refuses to run as root unless told to (containers, some cloud VMs).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test course clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	touch $(STAMP)

lab: $(STAMP)
	$(PY) -m jupyter lab --notebook-dir=notebooks $(ROOT_FLAG) $(LAB_ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) tools/executed_status.py
	DLCOURSE_SMOKE=1 $(PY) -m pytest
	DLCOURSE_MODE=gpu DLCOURSE_DRYRUN=1 $(PY) -m pytest notebooks

course: $(STAMP)
	$(PY) tools/run_course.py --out build/course

clean:
	rm -rf build .pytest_cache .ruff_cache
