#!/usr/bin/env bash
# Fetches into .whl/ the wheels tools/gpu_checks.sh installs on the GPU machine, which has no network: the packages
# the checks need that the machine's image lacks (diffusers for the parity tests and benches; nbclient, ipykernel
# and ipywidgets to execute the notebooks), at the versions of this checkout's .venv, built for the machine's
# CPython 3.12. Its image already has torch, torchvision, matplotlib, tqdm, pytest, transformers, safetensors,
# huggingface_hub, tokenizers, regex, numpy, pillow, psutil, attrs, pygments and python-dateutil (the device tool's
# KINDS.md); diffusers' pins admit its huggingface_hub. Run here (pip reaches the registries), then carry .whl.
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES="diffusers importlib_metadata nbclient nbformat fastjsonschema jsonschema jsonschema-specifications referencing
  rpds-py jupyter_client jupyter_core platformdirs traitlets pyzmq tornado ipykernel comm debugpy matplotlib-inline
  nest-asyncio2 ipython ipython-pygments-lexers jedi parso pexpect ptyprocess prompt_toolkit wcwidth stack_data
  asttokens executing pure_eval ipywidgets widgetsnbextension jupyterlab_widgets"
mkdir -p .git/info
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude  # never committed
rm -rf .whl
# shellcheck disable=SC2086  # one argument per package
pins=$(.venv/bin/python -c 'import sys; from importlib.metadata import version
print(" ".join(f"{name}=={version(name)}" for name in sys.argv[1:]))' $PACKAGES)
# shellcheck disable=SC2086
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $pins
echo "$(ls .whl | wc -l) wheels, $(du -sh .whl | cut -f1) in .whl/ (carry it: the working tree and carried paths travel up to 64 MiB)"
