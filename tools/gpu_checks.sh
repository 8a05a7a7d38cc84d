#!/usr/bin/env bash
# The checks only a GPU can run, as one script for a session that is lent a GPU machine:
#   1. the GPU-marked tests (CUDA graph == eager, no host sync per training step, autocast, CPU == CUDA Shapes);
#   2. the benchmark against diffusers at batch 64 and 512, and Stable Diffusion 1.5 at real size (random weights):
#      seconds per image ours vs diffusers' pipeline, peak memory of sampling and of a LoRA training step;
#   3. every notebook at full (gpu-mode) settings; report in $OUT_DIR/course/report.md.
# Each part runs even if an earlier one failed; the exit status says whether all passed.
#
# The GPU machine has no network and runs its own python3 (with torch, matplotlib, tqdm, pytest); the packages it
# lacks travel as wheels in .whl/ (git-ignored via .git/info/exclude). Prepare them on the dev machine with:
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d .whl \
#     diffusers transformers tokenizers safetensors huggingface_hub regex nbclient nbformat jupyter_client jupyter_core ipykernel ipywidgets comm debugpy ipython \
#     matplotlib-inline nest_asyncio pyzmq tornado traitlets fastjsonschema jsonschema \
#     jsonschema-specifications referencing rpds-py platformdirs decorator jedi parso pexpect ptyprocess \
#     prompt_toolkit wcwidth stack_data asttokens executing pure_eval widgetsnbextension jupyterlab_widgets
# and run this script through the device tool with .whl carried, e.g. `OUT_DIR=$OUT bash tools/gpu_checks.sh`.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT_DIR:-build/gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH=$PWD DLCOURSE_DATA=${DLCOURSE_DATA:-$PWD/data}
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
if [ -d .whl ]; then
  $py -m pip install --quiet --no-index --find-links .whl diffusers transformers safetensors nbclient nbformat \
    ipykernel ipywidgets \
    2>&1 | tail -3
fi
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"
$py -m pytest -o addopts="-p no:cacheprovider" -m gpu -v tests/test_models.py tests/test_sampling.py \
  tests/test_shapes.py tests/test_training.py tests/test_sd.py 2>&1 | tee "$out/gpu_tests.txt" || status=1
$py bench/diffusers_vs_dlcourse.py 2>&1 | tee "$out/bench.txt" || status=1
$py bench/sd_real_size.py --json "$out/sd_bench.json" 2>&1 | tee "$out/sd_bench.txt" || status=1
$py tools/run_course.py --out "$out/course" 2>&1 | tee "$out/course.txt" || status=1
exit $status
