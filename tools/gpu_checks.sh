#!/usr/bin/env bash
# The checks only a GPU can run, for a session that is lent a GPU machine through the device tool. That tool's limits
# shape this script: 15 minutes of device time per session in all (the machine's start, a minute or two, included),
# at most 10 minutes a command, at most 8 files back from $OUT. So the work comes in stages, the most value per
# minute first, each time-boxed against one deadline, and after every stage everything is packed into one archive,
# $OUT_DIR/gpu_checks.tar.gz (16 MiB at most comes back), beside a one-page $OUT_DIR/summary.txt: a command killed
# at its limit still brings back what finished.
#
# Stages, given as arguments (default: tests bench sd course):
#   tests   the GPU-marked tests: the samplers' CUDA graph == eager, train(fast=True) == the eager loop (bf16 and fp16
#           + GradScaler, resumed, the general loop), no host sync per training step, CPU == CUDA Shapes, Stable
#           Diffusion in fp16 against diffusers
#   bench   bench/diffusers_vs_dlcourse.py: training (eager and fast=True) and DDIM-50 at batch 64 and 512
#   sd      bench/sd_real_size.py: SD 1.5's U-Net, VAE and text encoder at real size with random weights
#   course  the notebooks at gpu settings ($NOTEBOOKS, e.g. "01 02 04"; default all, in order); a notebook starts only
#           while 60 s are left; executed copies (card, date, commit) in executed/ of the archive, for the repo's
#           executed/; report in course/report.md
# The full course at gpu settings takes longer than one session (notebook 03 alone trains three models at 32 px and
# samples 2000 images with 1,000 steps): give each session the stages and notebooks it has time for.
#
# Environment: OUT_DIR (default build/gpu); DEADLINE_S (default 520), seconds from the start by which every stage
# has ended, to stay inside the command's timeout_s; DLCOURSE_COMMIT, the commit being checked (the GPU machine gets
# the working tree without .git); PYTHON (default python3, the machine's, which holds torch).
# The machine's image lacks diffusers and the Jupyter packages: run tools/gpu_wheels.sh here first, then e.g.
#   device run, carry [".whl"], timeout_s 600:
#   DLCOURSE_COMMIT=<sha> DEADLINE_S=520 OUT_DIR=$OUT bash tools/gpu_checks.sh tests bench sd course
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
deadline=$((start + ${DEADLINE_S:-520}))
final=${OUT_DIR:-build/gpu}
work=$(mktemp -d)/gpu_checks  # packed into $final/gpu_checks.tar.gz: $final holds only the archive and the summary
py=${PYTHON:-python3}
mkdir -p "$work" "$final"
export PYTHONUNBUFFERED=1 DLCOURSE_DATA=${DLCOURSE_DATA:-$PWD/data} DLCOURSE_COMMIT=${DLCOURSE_COMMIT:-unknown}
export PYTHONPATH=$PWD
if [ -d .whl ]; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    2>&1 | tail -3
  export PYTHONPATH=$PWD:/tmp/site
fi
status=0
summary=$final/summary.txt
{
  echo "gpu_checks at commit $DLCOURSE_COMMIT, $(date -u +%Y-%m-%dT%H:%M:%SZ), stages: ${*:-tests bench sd course}"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  $py -c "import sys, torch; print('python', sys.version.split()[0], '| torch', torch.__version__, '|',
torch.cuda.get_device_name())"
  # what the stages import, before minutes are spent on them: a missing wheel shows here
  $py -c "import importlib.metadata as m, dlcourse; print(', '.join(f'{p} {m.version(p)}' for p in ('diffusers',
'transformers', 'nbclient', 'ipykernel', 'ipywidgets', 'matplotlib')))"
} 2>&1 | tee "$summary"

left() { echo $((deadline - $(date +%s))); }

pack() {  # the course's executed notebooks go once, as executed/ (course/ has the same ones without the record)
  tar -czf "$final/gpu_checks.tar.gz.part" --exclude='gpu_checks/course/*.ipynb' -C "$(dirname "$work")" gpu_checks \
    && mv "$final/gpu_checks.tar.gz.part" "$final/gpu_checks.tar.gz"
}

# stage NAME COMMAND...: runs COMMAND with what is left of the time box, logs to $work/NAME.txt, notes the outcome.
stage() {
  local name=$1 rc
  shift
  if [ "$(left)" -le 30 ]; then
    echo "$name: skipped, the time box is spent" | tee -a "$summary"
    return
  fi
  local begin
  begin=$(date +%s)
  timeout --signal=INT --kill-after=10 "$(left)" "$@" > "$work/$name.txt" 2>&1
  rc=$?
  [ $rc -ne 0 ] && status=1
  echo "$name: exit $rc after $(($(date +%s) - begin)) s" | tee -a "$summary"
  pack
}

for name in "${@:-tests bench sd course}"; do
  for what in $name; do
    case $what in
      tests) stage tests $py -m pytest -o addopts="-p no:cacheprovider" -m gpu -v tests/test_models.py \
               tests/test_sampling.py tests/test_solvers.py tests/test_flow.py tests/test_shapes.py tests/test_training.py \
               tests/test_sd.py
             grep -E "passed|failed|error" "$work/tests.txt" | tail -1 >> "$summary" ;;
      bench) stage bench $py bench/diffusers_vs_dlcourse.py
             grep -E "^\|" "$work/bench.txt" >> "$summary" ;;
      sd) stage sd $py bench/sd_real_size.py --json "$work/sd_bench.json"
          tail -12 "$work/sd.txt" >> "$summary" ;;
      course)
        notebooks=()
        for n in ${NOTEBOOKS:-}; do notebooks+=(notebooks/"$n"_*.ipynb); done
        stage course $py tools/run_course.py --out "$work/course" --executed "$work/executed" \
          --stop-after $(($(left) - 60)) "${notebooks[@]}"
        sed -n '/^## /q;p' "$work/course/report.md" >> "$summary" 2>/dev/null ;;
      *) echo "unknown stage $what (tests, bench, sd, course)" | tee -a "$summary"; status=1 ;;
    esac
  done
done
pack
echo "done in $(($(date +%s) - start)) s, exit $status; archive: $final/gpu_checks.tar.gz" | tee -a "$summary"
exit $status
