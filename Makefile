# The course's commands. Each creates the virtual environment (.venv) on first use.
#   make lab     open JupyterLab on notebooks/
#   make test    lint + which executed/ copies are stale (a report) + unit tests + every notebook executed in smoke
#                mode + every notebook executed again in the gpu dry run (gpu mode's shapes, steps and counts cut:
#                dlcourse/dryrun.py) (what CI runs)
#   make test-latest  the unit tests and every notebook in smoke mode in a second environment (.venv-latest):
#                Python 3.12 with the newest release of every dependency pip resolves (what Colab's setup cell
#                installs over); upgraded on every run, not part of `make test` or CI
#   make course  execute every notebook at this machine's settings; report in build/course/report.md
#   make release-models  train the released models of dlcourse/weights/ from scratch and measure them (hours on a
#                2-core CPU; resumable: run it again after an interruption; tools/release_models.py)
#   make gpu-figures  on a CUDA GPU: the GPU-only tests, the benchmarks and every notebook at gpu settings
#                (tools/gpu_checks.sh; NOTEBOOKS="03 04" for some); summary in build/gpu/summary.txt, the notebooks
#                that ran copied into executed/

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTHON_LATEST ?= python3.12
VENV_LATEST := .venv-latest
PY_LATEST := $(VENV_LATEST)/bin/python
# Jupyter refuses to run as root unless told to (containers, some cloud VMs).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test test-latest course release-models gpu-figures clean

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

test-latest:
	test -x $(PY_LATEST) || $(PYTHON_LATEST) -m venv $(VENV_LATEST)
	$(PY_LATEST) -m pip install --quiet --disable-pip-version-check --upgrade --upgrade-strategy eager -e ".[dev]"
	$(PY_LATEST) -c "import sys, torch, numpy, diffusers, transformers; \
	print('Python', sys.version.split()[0], '| torch', torch.__version__, '| numpy', numpy.__version__, \
	'| diffusers', diffusers.__version__, '| transformers', transformers.__version__)"
	DLCOURSE_SMOKE=1 $(PY_LATEST) -m pytest

course: $(STAMP)
	$(PY) tools/run_course.py --out build/course

release-models: $(STAMP)
	$(PY) tools/release_models.py all

# The checks' exit status (a failed test, say) is kept, after the notebooks that did run are copied into executed/.
gpu-figures: $(STAMP)
	rm -rf build/gpu
	PYTHON=$(abspath $(PY)) OUT_DIR=build/gpu DEADLINE_S=$${DEADLINE_S:-86400} bash tools/gpu_checks.sh \
		tests bench sd course; status=$$?; \
	tar -xzf build/gpu/gpu_checks.tar.gz -C build/gpu && \
	for nb in build/gpu/gpu_checks/executed/*.ipynb; do [ -e "$$nb" ] && cp "$$nb" executed/; done; \
	exit $$status

clean:
	rm -rf build .pytest_cache .ruff_cache
