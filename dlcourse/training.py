"""Training a diffusion model: the DDPM loss (Algorithm 1) and a plain, fast training loop.

Taught in notebooks/03_ddpm_training.ipynb.

Ho et al. 2020, Algorithm 1, one step:

    x0 ~ q(x0)                                   a batch of training images in [-1, 1]
    t ~ Uniform({1, ..., T})                     here 0-indexed: t in {0, ..., T-1}
    eps ~ N(0, I)
    gradient step on || eps - eps_theta(sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t) ||^2

:func:`ddpm_loss` writes that out (and supports the v and x0 targets of :mod:`dlcourse.parameterization`).
:func:`train` runs it in a loop with what makes training fast and safe: the dataset as one tensor on the device
(batches are random indices, no DataLoader), mixed precision, fused AdamW, channels_last, linear learning-rate
warm-up, gradient clipping, an EMA of the weights (:mod:`dlcourse.ema`), checkpoints that resume bit-for-bit,
and DistributedDataParallel under ``torchrun``.

Things to know when using :func:`train`:

- **No host sync inside a step.** Each step's loss stays on the device; the loop reads the losses back once
  every ``log_every`` steps (for the progress bar and the loss history), at each checkpoint and at the end.
  A NaN or inf loss is detected there and raises :class:`FloatingPointError` naming the step. (fp16's
  GradScaler adds no sync on CUDA either: the fused AdamW reads its inf flag on the device.)
- **Loss history** (``TrainResult.loss_history``): one float per step, the batch-mean loss of that step
  (under DDP, the mean over processes), covering every step since step 1 (a resumed run includes the steps
  before the interruption). Smooth it for plotting.
- **Checkpoints** (``checkpoint_path``, every ``checkpoint_every`` steps and at the end; written atomically):
  the model and EMA weights, the optimizer and GradScaler states, the step, the loss history, the config, a
  fingerprint of the run (data shape and sum, noise schedule, model class and config, processes, device type)
  and every random state that influences the run (each process's data/timestep generator, torch's CPU RNG that
  dropout uses, the CUDA RNG). If the file exists, :func:`train` resumes from it, so "train 10 steps, stop,
  train to 20" gives the same weights as "train 20 steps" (bit-for-bit on a CPU). Only ``steps`` may differ
  from the run that wrote it; anything else raises :class:`dlcourse.checkpoints.CheckpointError`.
- **Randomness**: batches, timesteps and noise come from a ``torch.Generator`` on the device seeded with
  ``seed + rank``; a fresh run also seeds torch's global RNG (dropout) with ``seed + rank``.
- **Batch size** is per process: under ``torchrun --nproc_per_node=K`` each step trains on K * batch_size images.
- **Caching a trained model** for the notebooks, EMA weights included::

      def fit(model):
          result = train(model, data, schedule, TrainConfig(**cfg))
          result.ema.copy_to(model)          # cache the EMA weights: they sample better
          return result.summary()            # loss history and speed, saved beside the weights

      model, extra = load_or_train("ddpm_shapes", cfg, lambda: UNet(UNetConfig(...)), fit)
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from dlcourse.checkpoints import CheckpointError, load_checkpoint, load_weights, save_checkpoint
from dlcourse.ema import EMA
from dlcourse.parameterization import check_prediction_type, training_target
from dlcourse.runtime import Precision, get_device, select_precision
from dlcourse.schedules import NoiseSchedule, extract

__all__ = ["TrainConfig", "TrainResult", "ddpm_loss", "learning_rate", "train"]

_RANGE_TOLERANCE = 1e-3  # as in dlcourse.schedules: a little slack for rounding (e.g. after a resize)


def ddpm_loss(
    model: nn.Module,
    x0: Tensor,
    schedule: NoiseSchedule,
    prediction_type: str = "eps",
    *,
    t: Tensor | None = None,
    eps: Tensor | None = None,
    generator: torch.Generator | None = None,
    model_kwargs: dict[str, Any] | None = None,
) -> Tensor:
    """The DDPM training loss of one batch (Ho et al. 2020, Algorithm 1), a scalar tensor.

    x0: (B, C, H, W) clean images in [-1, 1] (not checked: no host sync); schedule on x0's device.
    t: (B,) long timesteps in [0, T-1], drawn uniformly if None; eps: (B, C, H, W), drawn from N(0, I) if None.
    generator: a torch.Generator on x0's device for t and eps (None: torch's global RNG).
    model_kwargs: extra arguments for the model, e.g. ``{"context": c}``.
    prediction_type: what the model predicts, "eps", "v" or "x0"; the loss is the MSE to that target.

    Taught in notebooks/03_ddpm_training.ipynb.
    """
    check_prediction_type(prediction_type)
    batch = x0.shape[0]
    if t is None:
        # Algorithm 1, line 3: t ~ Uniform({0, ..., T-1}) (the paper's {1, ..., T}, 0-indexed)
        t = torch.randint(0, schedule.num_timesteps, (batch,), device=x0.device, generator=generator)
    if eps is None:
        eps = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)  # Algorithm 1, line 4
    x_t = schedule.q_sample(x0, t, eps, check=False)  # Ho et al. 2020, Eq. (4)
    target = training_target(x0, eps, extract(schedule.alpha_bar, t, x0), prediction_type)
    prediction = model(x_t, t, **(model_kwargs or {}))
    return F.mse_loss(prediction.float(), target.float())  # Algorithm 1, line 5 (the mean over pixels)


@dataclass
class TrainConfig:
    """Settings of :func:`train`. The defaults train the default UNet on a CPU in a few minutes.

    steps: optimiser steps in total (a resumed run continues up to this number).
    batch_size: images per step and process.
    lr, weight_decay: AdamW's (DDPM: 2e-4, no weight decay).
    warmup_steps: the learning rate grows linearly over these steps (DDPM: 5,000), see :func:`learning_rate`.
    grad_clip: clip the gradient norm to this (DDPM: 1.0); None for no clipping.
    ema_decay, ema_warmup: the EMA of the weights (see :mod:`dlcourse.ema`); warm-up matters for short runs.
    prediction_type: "eps" (DDPM), "v" or "x0".
    checkpoint_every: steps between checkpoints (when :func:`train` gets a checkpoint_path).
    log_every: steps between reads of the loss (progress bar, loss history, NaN check): the only host syncs.
    seed: seeds the batches, timesteps and noise (and dropout), offset by the process rank under DDP.

    Taught in notebooks/03_ddpm_training.ipynb.
    """

    steps: int = 500
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 100
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    ema_warmup: bool = True
    prediction_type: str = "eps"
    checkpoint_every: int = 500
    log_every: int = 25
    seed: int = 0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first bad setting; called at construction and by :func:`train`."""
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}.")
        for name in ("warmup_steps", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an integer >= 0, got {value!r}.")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be > 0 (DDPM uses 2e-4), got {self.lr!r}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}.")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None (no clipping), got {self.grad_clip!r}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1) (e.g. 0.999), got {self.ema_decay!r}.")
        check_prediction_type(self.prediction_type)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    model: the trained model (raw weights, unwrapped from DDP), in eval mode.
    ema: the :class:`~dlcourse.ema.EMA` of the weights (``ema.model`` samples best); None on DDP ranks > 0.
    loss_history: one float per step since step 1, the batch-mean loss (the mean over processes under DDP).
    steps: steps done in total (config.steps); start_step: where this call started (0, or a checkpoint's step).
    seconds: wall time of this call's steps; images_per_second: images trained on by all processes per second.
    """

    model: nn.Module
    ema: EMA | None
    loss_history: list[float]
    steps: int
    start_step: int
    seconds: float
    images_per_second: float

    @property
    def ema_model(self) -> nn.Module | None:
        """The averaged model, in eval mode (None on DDP ranks > 0)."""
        return None if self.ema is None else self.ema.model

    def summary(self) -> dict[str, Any]:
        """Plain values (loss history, steps, speed) to keep beside cached weights (``load_or_train``'s extra)."""
        return {
            "loss_history": list(self.loss_history),
            "steps": self.steps,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
        }


def learning_rate(step: int, config: TrainConfig) -> float:
    """The learning rate of step ``step`` (1-based): linear warm-up to ``config.lr``, then constant.

    lr_step = lr * min(1, step / warmup_steps) (Ho et al. 2020, App. B: 5,000 warm-up steps).
    Taught in notebooks/03_ddpm_training.ipynb.
    """
    if config.warmup_steps == 0:
        return config.lr
    return config.lr * min(1.0, step / config.warmup_steps)


# ----------------------------------------------------------------------------------------------------------
# Checks before training (one host sync), and the run's fingerprint for resuming.
# ----------------------------------------------------------------------------------------------------------


def _check_data(data: Tensor, model: nn.Module, config: TrainConfig) -> float:
    """Refuse data the model cannot train on, with the fix; returns the sum of the data (for the fingerprint)."""
    if not isinstance(data, Tensor):
        hint = " (pass data.images)" if hasattr(data, "images") else ""
        raise TypeError(f"data must be one tensor (N, C, H, W) in [-1, 1], got {type(data).__name__}{hint}.")
    if data.ndim != 4:
        raise ValueError(
            f"data must be a batch of images (N, C, H, W); got shape {tuple(data.shape)}. A single image "
            "(C, H, W): data.unsqueeze(0); grayscale images (N, H, W): data.unsqueeze(1)."
        )
    if not data.is_floating_point():
        raise ValueError(
            f"data has dtype {data.dtype}, but the model trains on floats in [-1, 1]. For uint8 pixels in "
            "[0, 255] use dlcourse.data.to_model_range(data.float() / 255)."
        )
    model_config = getattr(model, "config", None)
    channels, resolution = getattr(model_config, "in_channels", None), getattr(model_config, "resolution", None)
    n, c, h, w = data.shape
    if channels is not None and c != channels:
        raise ValueError(
            f"data has {c} channel(s) but the model expects {channels} (its config's in_channels). Build the model "
            f"with in_channels={c}, or convert the data (grayscale to RGB: data.expand(-1, 3, -1, -1))."
        )
    if resolution is not None and (h, w) != (resolution, resolution):
        raise ValueError(
            f"data is {h}x{w} pixels but the model was built for {resolution}x{resolution} (its config's "
            f"resolution). Build the model with resolution={h} or load the data with "
            f"load_dataset(..., resolution={resolution})."
        )
    if config.batch_size > n:
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the dataset ({n} images). Use a smaller batch_size "
            "or more images."
        )
    lo, hi, total = torch.stack([*torch.aminmax(data.detach()), data.sum()]).double().tolist()  # the one sync
    if not math.isfinite(total):
        raise ValueError("data contains NaN or inf values; clean it before training (torch.isfinite(data).all()).")
    if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE:
        raise ValueError(
            f"data has values in [{lo:.4g}, {hi:.4g}], but diffusion models train on images in [-1, 1]. Images in "
            "[0, 1]: dlcourse.data.to_model_range(data); in [0, 255]: dlcourse.data.to_model_range(data / 255)."
        )
    if lo >= 0:
        warnings.warn(
            f"data has no negative values (range [{lo:.4g}, {hi:.4g}]): are these images in [0, 1] instead of "
            "[-1, 1]? If so, train on dlcourse.data.to_model_range(data).",
            stacklevel=3,
        )
    return total


def _fingerprint(
    data: Tensor, data_sum: float, schedule: NoiseSchedule, model: nn.Module, world_size: int, device: torch.device
) -> dict[str, Any]:
    """What, besides the config, must match for a checkpoint to continue this run."""
    model_config = getattr(model, "config", None)
    return {
        "model": type(model).__name__,
        "model_config": asdict(model_config) if is_dataclass(model_config) else None,
        "data_shape": list(data.shape),
        "data_sum": data_sum,
        "alpha_bar": schedule.alpha_bar.detach().cpu(),
        "world_size": world_size,
        "device_type": device.type,
    }


def _fingerprint_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The entries of two fingerprints that differ, described for an error message."""
    differences = []
    for key, value in now.items():
        old = saved.get(key)
        if isinstance(value, Tensor):
            same = isinstance(old, Tensor) and old.shape == value.shape and torch.equal(old, value)
        elif key == "data_sum":  # float rounding may differ between devices; another dataset differs far more
            tolerance = 1e-6 * math.prod(now["data_shape"])
            same = isinstance(old, float) and math.isclose(old, value, rel_tol=1e-5, abs_tol=tolerance)
        else:
            same = old == value
        if not same:
            differences.append("the noise schedule" if key == "alpha_bar" else f"{key}: {old!r} then, {value!r} now")
    return differences


def _check_finite(losses: list[float], first_step: int, checkpoint_path: str | Path | None) -> None:
    """Raise FloatingPointError at the first NaN/inf loss; ``losses[i]`` is the loss of step first_step + i + 1."""
    bad = next((i for i, value in enumerate(losses) if not math.isfinite(value)), None)
    if bad is None:
        return
    kept = ""
    if checkpoint_path is not None and Path(checkpoint_path).exists():
        kept = f" The last checkpoint written before it is kept at {checkpoint_path}."
    raise FloatingPointError(
        f"The training loss became {losses[bad]} at step {first_step + bad + 1}, so training stopped. Likely causes: "
        "the learning rate is too high (try TrainConfig(lr=1e-4) or more warmup_steps); fp16 without loss scaling "
        "(use select_precision(device), which pairs fp16 with a GradScaler, or bf16); data not in [-1, 1] (see "
        "data.aminmax(); dlcourse.data.to_model_range converts [0, 1] images); or a custom model that outputs "
        f"NaN/inf (check torch.isfinite(model(x_t, t)).all() on one batch).{kept}"
    )


# ----------------------------------------------------------------------------------------------------------
# Distributed training (only under torchrun), random states, checkpoints.
# ----------------------------------------------------------------------------------------------------------


@contextmanager
def _distributed(device: str | torch.device | None) -> Iterator[tuple[int, int, torch.device]]:
    """Yield (rank, world_size, device).

    A single process (no WORLD_SIZE > 1 in the environment) gets (0, 1, device) and no torch.distributed at all.
    Under torchrun, join the process group (gloo on CPU, nccl on CUDA with one GPU per process, cuda:LOCAL_RANK)
    and leave it at the end if we created it.
    """
    device = get_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        yield 0, 1, device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size(), device
    finally:
        if created:
            dist.destroy_process_group()


def _mean_over_processes(losses: Tensor, world_size: int) -> list[float]:
    """The losses (steps,) averaged over processes, as floats: the host sync of a log point."""
    if world_size > 1:
        losses = losses.clone()
        dist.all_reduce(losses)
        losses /= world_size
    return losses.tolist()


def _rng_state(generator: torch.Generator, device: torch.device) -> dict[str, Tensor]:
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Tensor], generator: torch.Generator, device: torch.device) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


_KIND = "dlcourse-training"  # marks a checkpoint written by train(), as opposed to a load_or_train cache file


@dataclass
class _Run:
    """The state of one training run that a checkpoint saves and restores."""

    config: TrainConfig
    fingerprint: dict[str, Any]
    model: nn.Module
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    generator: torch.Generator
    device: torch.device
    rank: int
    world_size: int
    history: list[float]

    def save(self, path: str | Path, step: int) -> None:
        """Rank 0 writes the checkpoint (atomically) with every process's random state; the others wait."""
        rng_states = [_rng_state(self.generator, self.device)]
        if self.world_size > 1:
            rng_states = [None] * self.world_size
            dist.all_gather_object(rng_states, _rng_state(self.generator, self.device))
        if self.rank == 0:
            state = {
                "kind": _KIND,
                "step": step,
                "config": asdict(self.config),
                "fingerprint": self.fingerprint,
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "loss_history": torch.tensor(self.history, dtype=torch.float64),
                "rng": rng_states,
            }
            save_checkpoint(state, path)
        if self.world_size > 1:
            dist.barrier()

    def resume(self, path: str | Path) -> int:
        """Load the checkpoint at ``path`` into this run after checking it belongs to it; returns its step."""
        state = load_checkpoint(path)
        if state.get("kind") != _KIND:
            raise CheckpointError(
                f"{path} is a dlcourse checkpoint but was not written by train() (a load_or_train cache?), so a "
                "run cannot resume from it. Pass another checkpoint_path."
            )
        saved_config = state.get("config") or {}
        changed = [
            f"{name}: {saved_config.get(name)!r} then, {value!r} now"
            for name, value in asdict(self.config).items()
            if name != "steps" and saved_config.get(name) != value
        ]
        changed += _fingerprint_differences(state.get("fingerprint") or {}, self.fingerprint)
        if changed:
            raise CheckpointError(
                f"{path} was written by a different training run ({'; '.join(changed)}). Only `steps` may change "
                "when resuming. Pass a new checkpoint_path to start another run, or delete the file to start over."
            )
        try:
            step = int(state["step"])
            if step > self.config.steps:
                raise CheckpointError(
                    f"{path} is at step {step}, past TrainConfig.steps={self.config.steps}: training cannot go "
                    f"back. Ask for steps >= {step}, or pass another checkpoint_path."
                )
            load_weights(self.model, state["model"], source=str(path))
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scaler.is_enabled() and state["scaler"]:
                self.scaler.load_state_dict(state["scaler"])
            if self.ema is not None:
                self.ema.load_state_dict(state["ema"])
            _set_rng_state(state["rng"][self.rank], self.generator, self.device)
            self.history = state["loss_history"].tolist()
        except CheckpointError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{path} is incomplete or inconsistent ({type(error).__name__}: {error}). Delete it to start over."
            ) from error
        return step


# ----------------------------------------------------------------------------------------------------------
# The training loop.
# ----------------------------------------------------------------------------------------------------------


def train(
    model: nn.Module,
    data: Tensor,
    schedule: NoiseSchedule,
    config: TrainConfig | None = None,
    *,
    checkpoint_path: str | Path | None = None,
    device: str | torch.device | None = None,
    precision: Precision | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` with the DDPM loss on ``data`` for ``config.steps`` steps; see the module docstring.

    model: a denoiser called as model(x_t, t) -> (B, C, H, W), e.g. a :class:`~dlcourse.models.UNet`; trained
        in place (moved to the device, channels_last on CUDA) and returned in eval mode.
    data: (N, C, H, W) float images in [-1, 1], moved to the device once. Checked before training (one host
        sync): 4-D, float, in [-1, 1], channels and resolution matching ``model.config``, N >= batch_size.
    schedule: the noise schedule (moved to the device).
    checkpoint_path: where to save checkpoints; if the file exists, training resumes from it.
    device: default :func:`~dlcourse.runtime.get_device` (under torchrun with CUDA: cuda:LOCAL_RANK).
    precision: default :func:`~dlcourse.runtime.select_precision` for the device (bf16, fp16 + GradScaler, fp32).
    progress: show a tqdm progress bar (rank 0 only) with the mean loss since the last log point.
    Raises ValueError/TypeError for bad data or settings (before any step), FloatingPointError when the loss
    becomes NaN/inf, and CheckpointError when checkpoint_path holds a corrupt file or another run's checkpoint.

    Taught in notebooks/03_ddpm_training.ipynb.
    """
    config = TrainConfig() if config is None else config
    config.validate()
    if not isinstance(schedule, NoiseSchedule):
        raise TypeError(f"schedule must be a NoiseSchedule (e.g. NoiseSchedule.from_name('linear')), got {schedule!r}.")
    with _distributed(device) as (rank, world_size, device):
        data_sum = _check_data(data, model, config)
        precision = select_precision(device) if precision is None else precision
        on_cuda = device.type == "cuda"
        memory_format = torch.channels_last if on_cuda else torch.contiguous_format  # faster convs on tensor cores
        data = data.to(device, memory_format=memory_format)  # once; batches are gathered from it on the device
        model.to(device, memory_format=memory_format).train()
        schedule.to(device)
        run = _Run(
            config=config,
            fingerprint=_fingerprint(data, data_sum, schedule, model, world_size, device),
            model=model,
            ema=EMA(model, config.ema_decay, warmup=config.ema_warmup) if rank == 0 else None,
            optimizer=torch.optim.AdamW(
                model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True if on_cuda else None
            ),
            scaler=precision.grad_scaler(),
            generator=torch.Generator(device).manual_seed(config.seed + rank),  # batches, t and eps
            device=device,
            rank=rank,
            world_size=world_size,
            history=[],
        )
        torch.manual_seed(config.seed + rank)  # dropout; restored from the checkpoint when resuming
        start = 0
        if checkpoint_path is not None and Path(checkpoint_path).exists():
            start = run.resume(checkpoint_path)
        net = model
        if world_size > 1:
            net = DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)

        losses = torch.zeros(config.steps, device=device)  # loss of each step, read back at log points only
        logged = start
        bar = tqdm(total=config.steps, initial=start, desc="training", unit="step", disable=not progress or rank != 0)
        with bar:  # closed even when training stops with an error
            begin = time.perf_counter()
            for step in range(start + 1, config.steps + 1):  # steps are counted from 1
                for group in run.optimizer.param_groups:
                    group["lr"] = learning_rate(step, config)
                # Algorithm 1, line 2: x0 ~ q(x0), a batch of random images (with replacement), drawn on the device
                index = torch.randint(len(data), (config.batch_size,), device=device, generator=run.generator)
                with precision.autocast():
                    loss = ddpm_loss(net, data[index], schedule, config.prediction_type, generator=run.generator)
                run.optimizer.zero_grad(set_to_none=True)
                run.scaler.scale(loss).backward()
                if config.grad_clip is not None:
                    run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the loss-scaled ones
                    nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                run.scaler.step(run.optimizer)
                run.scaler.update()
                if run.ema is not None:
                    run.ema.update()
                losses[step - 1] = loss.detach()

                save = checkpoint_path is not None and (step % config.checkpoint_every == 0 or step == config.steps)
                if save or step % config.log_every == 0 or step == config.steps:
                    new = _mean_over_processes(losses[logged:step], world_size)  # the host sync
                    _check_finite(new, logged, checkpoint_path)
                    run.history += new
                    bar.set_postfix(loss=f"{sum(new) / len(new):.4f}", refresh=False)
                    bar.update(step - logged)
                    logged = step
                if save:
                    run.save(checkpoint_path, step)
            seconds = time.perf_counter() - begin

    images = (config.steps - start) * config.batch_size * world_size
    return TrainResult(
        model=model.eval(),
        ema=run.ema,
        loss_history=run.history,
        steps=config.steps,
        start_step=start,
        seconds=seconds,
        images_per_second=images / seconds if images else 0.0,
    )
