#!/usr/bin/env bash
# The checks only a GPU can run, as one script for a session that has a GPU machine (see README):
#   1. the GPU-marked tests (CUDA graph == eager, no host sync per training step, CUDA determinism);
#   2. the benchmark against diffusers at batch 64 and 512;
#   3. every notebook at full (gpu-mode) settings, with its report in build/course/report.md.
# Writes everything under ${OUT:-build/gpu}; each part runs even if an earlier one failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-build/gpu}
mkdir -p "$out"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
make .venv/.installed >/dev/null
.venv/bin/python -m pytest -o addopts="-p no:cacheprovider" -m gpu -v tests 2>&1 | tee "$out/gpu_tests.txt" || status=1
.venv/bin/python bench/diffusers_vs_dlcourse.py 2>&1 | tee "$out/bench.txt" || status=1
.venv/bin/python tools/run_course.py --out "$out/course" 2>&1 | tee "$out/course.txt" || status=1
exit $status
