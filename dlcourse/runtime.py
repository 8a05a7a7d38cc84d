"""Where the course runs: device, numeric precision, seeding and the data folder.

Every notebook starts by asking this module three questions: *which device?* (:func:`get_device`), *which
precision?* (:func:`select_precision`) and *where do datasets and checkpoints live?* (:func:`data_dir`).
The run mode and its sizes live next door in :mod:`dlcourse.modes`.

Precision is the one that bites: a T4 (compute capability 7.5) has fast fp16 tensor cores but no bf16
hardware, so on it we train in fp16 with a :class:`torch.amp.GradScaler`; Ampere and newer (8.0+: A100,
L4, H100) get bf16, which needs no scaler; the CPU runs fp32. Taught in notebooks/01_forward_process.ipynb
(setup) and used by every notebook after it.
"""

from __future__ import annotations

import os
import random
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dlcourse.dryrun import DRY_RUN_MODE, dry_run_requested

__all__ = ["Precision", "data_dir", "checkpoint_dir", "get_device", "select_precision", "seed_everything"]


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to compute on: ``device`` if given, else the first CUDA GPU, else the CPU.

    Raises a ValueError when a CUDA device is asked for on a machine without one, instead of failing later
    deep inside a kernel launch.
    """
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {str(device)!r} was requested but PyTorch sees no CUDA GPU on this machine. "
            "Pass device=None to pick the best available device (on Colab: Runtime > Change runtime type > GPU)."
        )
    return device


@dataclass(frozen=True)
class Precision:
    """The mixed-precision recipe for one device.

    ``dtype`` is the autocast dtype (``torch.float32`` means autocast is off); ``use_grad_scaler`` is True only
    for fp16, whose narrow exponent range underflows small gradients unless the loss is scaled.
    """

    device_type: str
    dtype: torch.dtype
    use_grad_scaler: bool
    reason: str

    def autocast(self) -> AbstractContextManager:
        """``with precision.autocast(): loss = model(x)`` runs the forward pass in :attr:`dtype`."""
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is a no-op unless this precision needs one (fp16)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.use_grad_scaler)


def select_precision(device: str | torch.device) -> Precision:
    """Pick the autocast dtype for ``device`` from its compute capability.

    - CUDA capability >= 8.0 (A100, L4, H100, ...): bf16, no GradScaler.
    - CUDA capability 7.x (V100, T4): fp16 with a GradScaler. We deliberately ignore
      ``torch.cuda.is_bf16_supported()``, which can report True on a T4 because bf16 is *emulated* there
      (correct but several times slower than fp16).
    - Older GPUs, the CPU and anything else: fp32.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return Precision(device.type, torch.float32, False, f"{device.type}: fp32 (autocast off)")
    major, minor = torch.cuda.get_device_capability(device)
    capability = f"compute capability {major}.{minor}"
    if major >= 8:
        return Precision("cuda", torch.bfloat16, False, f"{capability}: bf16 tensor cores, no loss scaling")
    if major == 7:
        return Precision("cuda", torch.float16, True, f"{capability}: fp16 tensor cores + GradScaler (no bf16)")
    return Precision("cuda", torch.float32, False, f"{capability}: no fast half precision, fp32")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (every device) and return a CPU ``torch.Generator`` seeded the same.

    Prefer passing the returned generator (or one of your own) to functions that draw noise: it makes a
    cell's randomness independent of what ran before it.
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def data_dir() -> Path:
    """The folder for datasets and cached checkpoints (created if missing).

    ``$DLCOURSE_DATA`` if set; else the ``data/`` folder of the source checkout this package was imported from
    (``make lab`` / ``pip install -e .``); else ``~/.cache/dlcourse`` (a pip install, e.g. on Colab).
    """
    if os.environ.get("DLCOURSE_DATA"):
        path = Path(os.environ["DLCOURSE_DATA"]).expanduser()
    else:
        checkout = Path(__file__).resolve().parent.parent
        if (checkout / "pyproject.toml").is_file() and (checkout / "data").is_dir():
            path = checkout / "data"
        else:
            path = Path.home() / ".cache" / "dlcourse"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_dir() -> Path:
    """``data_dir() / "checkpoints"``: where notebooks cache trained models (created if missing).

    In a gpu dry run (dlcourse/dryrun.py) ``data_dir() / "checkpoints" / "gpu-dryrun"``: its cut-short models live
    apart, so no real run ever loads one as a trained gpu model (their recipes, which hold the mode, differ too).
    """
    path = data_dir() / "checkpoints"
    if dry_run_requested():
        path = path / DRY_RUN_MODE
    path.mkdir(parents=True, exist_ok=True)
    return path
