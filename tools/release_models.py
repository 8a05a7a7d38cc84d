"""Make the released models of dlcourse/weights/ from scratch: `make release-models` (hours on a 2-core CPU).

    python tools/release_models.py train NAME [--pieces K] [--until STEP]
        train release NAME (dlcourse.recipes.RELEASES) in K pieces, each ending in a checkpoint (resumable: run it
        again and it continues; --until stops after that step, to train in several sittings) and an EMA snapshot
        under data/releases/NAME/ that `measure` draws its curve from; after the last step, write the weights and
        the manifest entry to dlcourse/weights/.
    python tools/release_models.py measure NAME [--points N]
        measure the shipped weights as the notebook that uses them does (cpu mode, its n), and each snapshot
        along the run for the curve of figure against training time; written to the manifest.
    python tools/release_models.py all
        train and measure every release, in the order they depend on each other.

Training runs on the CPU (the releases are cpu recipes) with the threads torch is given (OMP_NUM_THREADS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure_release import measure, release_folder  # noqa: E402  (tools/ is this script's folder)

from dlcourse import pretrained, pretrained_flow  # noqa: E402
from dlcourse.recipes import RELEASES  # noqa: E402
from dlcourse.releases import read_manifest, release_recipe, save_release  # noqa: E402

ORDER = ("ddpm_shapes", "ddpm_shapes_eps_cosine", "ddpm_shapes_eps_linear", "vae_shapes", "text_shapes", "flow_shapes",
         "flow_shapes_uniform", "reflow_shapes")
BASE = {"text_shapes": "ddpm_shapes", "reflow_shapes": "flow_shapes"}  # a release trained from another release


def _log(name: str) -> dict[str, Any]:
    path = release_folder(name) / "log.json"
    return json.loads(path.read_text()) if path.is_file() else {"pieces": []}


def machine() -> str:
    """The CPU model and the threads torch uses, e.g. 'AMD EPYC 7B13, 1 of 2 cores'."""
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        model = names[0] if names else model
    return f"{model}, {torch.get_num_threads()} thread(s) of {os.cpu_count()} cores"


def commit() -> str:
    """The commit whose code this process runs (read at start; "+changes" if the package differed from it then)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "dlcourse", ":!dlcourse/weights"], cwd=ROOT,
                               capture_output=True, text=True)
        return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


COMMIT = commit()  # the code was imported now, so this is the commit every piece of this process trains with


def _train_piece(name: str, until: int) -> Any:
    recipe = release_recipe(name)
    kind = RELEASES[name]["recipe"]
    if kind == "ddpm_shapes":
        return pretrained.train_ddpm(recipe, "cpu", progress=False, until=until)
    if kind == "vae_shapes":
        return pretrained.train_vae(recipe, "cpu", progress=False, until=until)
    if kind == "flow_shapes":
        return pretrained_flow.train_flow(recipe, "cpu", progress=False, until=until)
    if kind == "reflow_shapes":
        base = pretrained_flow.released_flow(BASE[name], "cpu")
        return pretrained_flow.train_reflow(recipe, base, "cpu", progress=False, until=until)
    base = pretrained.released_ddpm(BASE[name], "cpu")
    return pretrained.train_text2img(recipe, base, "cpu", progress=False, until=until)


def _weights(trained: Any) -> tuple[dict, dict, Any]:
    """(EMA state dict, raw state dict, TrainResult) of what a train_* function returned."""
    if isinstance(trained, pretrained.TrainedVAE):
        return trained.vae.state_dict(), trained.result.model.state_dict(), trained.result
    return trained.model.state_dict(), trained.raw_model.state_dict(), trained.result


def train(name: str, pieces: int, stop: int | None) -> None:
    """Train release ``name`` up to ``stop`` (default: its last step) in pieces; export it once finished."""
    from safetensors.torch import save_file

    recipe = release_recipe(name)
    folder = release_folder(name)
    folder.mkdir(parents=True, exist_ok=True)
    log = _log(name)
    marks = {max(1, recipe.steps * k // pieces) for k in range(1, pieces + 1)}
    if stop is not None:
        marks = {mark for mark in marks if mark < stop} | {min(stop, recipe.steps)}
    for until in sorted(marks):
        trained = _train_piece(name, until)
        ema, raw, result = _weights(trained)
        if result.start_step < until:  # this call trained the piece
            snapshot = folder / f"step-{until:06d}.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in ema.items()}, str(snapshot))
            log["pieces"].append({"from": result.start_step, "to": until, "seconds": result.seconds,
                                  "machine": machine(), "commit": COMMIT})
            (folder / "log.json").write_text(json.dumps(log, indent=1) + "\n")
            print(f"{name}: steps {result.start_step}-{until} in {result.seconds:.0f} s "
                  f"(loss {sum(result.loss_history[-100:]) / len(result.loss_history[-100:]):.4f})", flush=True)
    if result.steps < recipe.steps:
        return
    entry = read_manifest().get(name, {})
    record = {
        "steps": recipe.steps,
        "seed": recipe.seed,
        "wall_s": round(sum(piece["seconds"] for piece in log["pieces"]), 1),
        "machine": "; ".join(sorted({piece["machine"] for piece in log["pieces"]})),
        "commit": "; ".join(dict.fromkeys(piece["commit"] for piece in log["pieces"])),
        "torch": torch.__version__,
        "figures": entry.get("figures", {}),
        "curve": entry.get("curve", []),
    }
    if name in BASE:
        record["base_release"] = BASE[name]
        record["base_sha256"] = read_manifest()[BASE[name]]["sha256"]
    written = save_release(name, ema, raw if RELEASES[name].get("ship_raw") else {}, result.loss_history, record)
    print(f"{name}: released, {written['bytes'] / 1e6:.2f} MB, {record['wall_s']:.0f} s of training", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("train", "measure", "all"))
    parser.add_argument("name", nargs="?", choices=ORDER)
    parser.add_argument("--pieces", type=int, default=10)
    parser.add_argument("--until", type=int, default=None)
    parser.add_argument("--points", type=int, default=None, help="snapshots on the measured curve (default: all)")
    args = parser.parse_args(argv)
    names = ORDER if args.command == "all" else (args.name,)
    if names == (None,):
        parser.error(f"{args.command} needs a release name: one of {ORDER}")
    start = time.perf_counter()
    for name in names:
        if args.command in ("train", "all"):
            train(name, args.pieces, args.until)
        if args.command in ("measure", "all"):
            measure(name, args.points)
    print(f"done in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
