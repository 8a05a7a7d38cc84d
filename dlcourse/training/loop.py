"""The training loop: Ho et al. 2020, Algorithm 1, repeated, plus the engineering that makes it fast and safe.

Per step: set the learning rate (warm-up); draw a batch; compute the loss (t, eps, x_t, the model's
prediction, the MSE) in mixed precision; backward; clip the gradient norm; take the optimiser step; update the
EMA. ``fast=True`` on a GPU captures that step in a CUDA graph and replays it (:mod:`dlcourse.training.graphed`).
The same loop trains an unconditional image model, a model on a frozen encoder's latents, a conditional
model with condition dropout, a subset of a model's parameters, and a loss with extra terms.

Taught in notebooks/03_ddpm_training.ipynb, sections "Algorithm 1, the whole loop" and
"`train()`: the same loop plus engineering".
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from dlcourse.ema import EMA
from dlcourse.runtime import Precision, select_precision
from dlcourse.schedules import NoiseSchedule
from dlcourse.training.batches import Source, draw_batch
from dlcourse.training.checks import check_inputs
from dlcourse.training.config import LossTerm, TrainConfig, TrainResult, learning_rate
from dlcourse.training.distributed import distributed, mean_over_processes
from dlcourse.training.graphed import GraphedTrainStep
from dlcourse.training.loss import ddpm_loss
from dlcourse.training.resume import Run, fingerprint
from dlcourse.training.run_checks import check_fast, check_finite, check_until
from dlcourse.training.trainable import train_only

__all__ = ["train"]

TERM_SEED_STRIDE = 10_000  # extra term k draws from a generator seeded seed + rank + k * TERM_SEED_STRIDE


def train(
    model: nn.Module,
    data: Tensor | Mapping[str, Tensor],
    schedule: NoiseSchedule | None,
    config: TrainConfig | None = None,
    *,
    trainable: Iterable[nn.Parameter] | None = None,
    null_condition: Mapping[str, Any] | None = None,
    encode: Callable[[Tensor], Tensor] | None = None,
    loss_fn: Callable[..., Tensor] = ddpm_loss,
    extra_terms: Sequence[LossTerm] = (),
    data_range: tuple[float, float] | None = (-1.0, 1.0),
    checkpoint_path: str | Path | None = None,
    until: int | None = None,
    device: str | torch.device | None = None,
    precision: Precision | None = None,
    progress: bool = True,
    fast: bool = False,
) -> TrainResult:
    """Train ``model`` with the DDPM loss on ``data`` for ``config.steps`` steps; see :mod:`dlcourse.training`.

    model: a denoiser called as model(x_t, t, **conditions) -> (B, C, H, W), e.g. a :class:`~dlcourse.models.UNet`;
        trained in place (moved to the device, channels_last on CUDA) and returned in eval mode.
    data: the examples x0 (N, C, H, W), or a mapping {"x0": (N, C, H, W), name: (N, ...), ...} whose other
        entries are per-example conditions passed to the model by name (class labels (N,), an embedding
        (N, L, D) and its mask (N, L)). Moved to the device once and checked before training (one host sync
        per tensor): x0 4-D, float, in ``data_range``; channels and resolution matching ``model.config``.
    schedule: the noise schedule (moved to the device); None for a loss_fn that needs none (e.g. the VAE's
        :class:`~dlcourse.models.VAELoss`: the same loop then trains an autoencoder).
    trainable: the parameters to train (e.g. LoRA's); every other parameter is frozen for the run (its
        requires_grad flag restored afterwards) and left out of the optimiser, the clipping and the EMA.
        None: every parameter that requires a gradient.
    null_condition: {name: one example's value} that condition dropout (``config.p_uncond``) puts in place of
        each condition, e.g. {"class_labels": num_classes}, the "no class" label.
    encode: a frozen encoder applied to each batch of x0 under no_grad; the model trains on its outputs. A
        module is moved to the device and put in eval mode. Cached latents: pass them as data and set
        ``data_range=None``.
    loss_fn: the loss of one batch, with :func:`~dlcourse.training.ddpm_loss`'s signature (the default).
    extra_terms: :class:`~dlcourse.training.LossTerm` objects; each adds weight * its loss on its own batch.
    data_range: the range x0 must lie in: (-1, 1) for images; None skips the check (latents).
    checkpoint_path: where to save checkpoints; if the file exists, training resumes from it.
    until: stop after this step, with a checkpoint, and return (a piece of a long run: a later call with the same
        config continues it bit for bit, and the learning-rate schedule still spans config.steps); None: run to
        config.steps.
    device: default :func:`~dlcourse.runtime.get_device` (under torchrun with CUDA: cuda:LOCAL_RANK).
    precision: default :func:`~dlcourse.runtime.select_precision` for the device (bf16, fp16 + GradScaler, fp32).
    progress: show a tqdm progress bar (rank 0 only) with the mean loss since the last log point.
    fast: capture the training step in a CUDA graph after a few eager steps and replay it (one process on a
        CUDA device; see :mod:`dlcourse.training.graphed`): the same steps without the per-step launch cost.
        The first replayed step is checked against an eager step from the same state; if the capture, the
        replay or the check fails, one :class:`~dlcourse.fast_path.FastPathWarning` says so and training goes
        on eagerly, with the eager result.
    Raises ValueError/TypeError for bad inputs (before any step), FloatingPointError when the loss becomes
    NaN/inf, and CheckpointError when checkpoint_path holds a corrupt file or another run's checkpoint.
    """
    config = TrainConfig() if config is None else config
    last = check_until(until, config, checkpoint_path)
    with distributed(device) as (rank, world_size, device):
        if isinstance(encode, nn.Module):
            encode.to(device).eval()
        inputs = check_inputs(
            model, data, schedule, config, trainable=trainable, null_condition=null_condition, encode=encode,
            loss_fn=loss_fn, extra_terms=extra_terms, data_range=data_range, device=device,
        )
        if fast:
            check_fast(device, world_size)
        precision = select_precision(device) if precision is None else precision
        on_cuda = device.type == "cuda"
        memory_format = torch.channels_last if on_cuda else torch.contiguous_format  # faster convs on tensor cores
        model.to(device, memory_format=memory_format).train()
        if schedule is not None:
            schedule.to(device)
        # The data and each extra term: examples on the device (moved once), a batch size, a weight, a generator.
        main, *terms = [
            Source(
                examples.to(device, memory_format), size, weight,
                generator=torch.Generator(device).manual_seed(config.seed + rank + k * TERM_SEED_STRIDE),
            )
            for k, (examples, size, weight, _) in enumerate(inputs.sources)
        ]
        null = {name: value.to(device) for name, value in inputs.null_condition.items()}
        batching = {"encode": encode, "p_uncond": config.p_uncond, "null_condition": null}
        params = [p for _, p in inputs.trainable]
        run = Run(
            config=config,
            fingerprint=fingerprint(
                model, schedule, inputs, p_uncond=config.p_uncond, encode=encode, loss_fn=loss_fn,
                world_size=world_size, device=device,
            ),
            model=model,
            ema=EMA(model, config.ema_decay, warmup=config.ema_warmup, parameters=params) if rank == 0 else None,
            optimizer=torch.optim.AdamW(
                params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
                fused=True if on_cuda else None,
            ),
            scaler=precision.grad_scaler(),
            generators=[main.generator, *(term.generator for term in terms)],
            device=device,
            rank=rank,
            world_size=world_size,
            history=[],
        )
        torch.manual_seed(config.seed + rank)  # dropout; restored from the checkpoint when resuming
        start = 0
        if checkpoint_path is not None and Path(checkpoint_path).exists():
            start = run.resume(checkpoint_path)

        def one_step(ema_weight: Tensor | None = None) -> Tensor:
            """One training step; returns its loss (0-d, detached, on the device). The learning rate is set."""
            with precision.autocast():  # mixed precision: bf16, or fp16 with the GradScaler below
                # Algorithm 1, line 2: x0 ~ q(x0) (and its conditions)
                x0, conditions = draw_batch(main, **batching)
                # Algorithm 1, lines 3-5: t, eps, x_t, the prediction, and the MSE to its target
                loss = loss_fn(
                    net, x0, schedule, config.prediction_type, generator=main.generator, model_kwargs=conditions,
                )
                for term in terms:  # e.g. DreamBooth's prior preservation, on its own batch
                    x0, conditions = draw_batch(term, **batching)
                    loss = loss + term.weight * loss_fn(
                        net, x0, schedule, config.prediction_type, generator=term.generator,
                        model_kwargs=conditions,
                    )
            run.optimizer.zero_grad(set_to_none=True)
            run.scaler.scale(loss).backward()  # Algorithm 1, line 5: the gradient
            if config.grad_clip is not None:
                run.scaler.unscale_(run.optimizer)  # clip the true gradients, not the loss-scaled ones
                nn.utils.clip_grad_norm_(params, config.grad_clip)
            run.scaler.step(run.optimizer)  # the gradient step (skipped by fp16's scaler on inf/NaN)
            run.scaler.update()
            if run.ema is not None and ema_weight is None:
                run.ema.update()
            elif run.ema is not None:
                run.ema.average(ema_weight)  # the graphed step fills the weight and counts the update
            return loss.detach()

        bar = tqdm(total=config.steps, initial=start, desc="training", unit="step", disable=not progress or rank != 0)
        with train_only(model, params), bar:  # everything else frozen for the run; the bar closed even on errors
            net = model
            if world_size > 1:
                net = DistributedDataParallel(model, device_ids=[device.index] if on_cuda else None)
            graphed = None
            if fast:  # after resuming: GraphedTrainStep sets options of the restored param groups
                graphed = GraphedTrainStep(one_step, run, config, precision)
            losses = torch.zeros(config.steps, device=device)  # loss of each step, read back at log points only
            logged = start
            begin = time.perf_counter()
            for step in range(start + 1, last + 1):  # steps are counted from 1
                if graphed is None:
                    for group in run.optimizer.param_groups:
                        group["lr"] = learning_rate(step, config)  # linear warm-up
                    loss = one_step()
                else:
                    loss = graphed(step)  # the same step, replayed from a CUDA graph (checked, falls back)
                losses[step - 1] = loss  # stays on the device: no host sync per step

                save = checkpoint_path is not None and (step % config.checkpoint_every == 0 or step == last)
                if save or step % config.log_every == 0 or step == last:
                    new = mean_over_processes(losses[logged:step], world_size)  # the host sync
                    check_finite(new, logged, checkpoint_path)
                    run.history += new
                    bar.set_postfix(loss=f"{sum(new) / len(new):.4f}", refresh=False)
                    bar.update(step - logged)
                    logged = step
                if save:
                    run.save(checkpoint_path, step)
            seconds = time.perf_counter() - begin
            run.optimizer.zero_grad(set_to_none=True)  # the last step's gradients (a graph's static ones) freed


    examples = max(0, last - start) * (main.batch_size + sum(term.batch_size for term in terms)) * world_size
    return TrainResult(
        model=model.eval(),
        ema=run.ema,
        loss_history=run.history,
        steps=max(start, last),
        start_step=start,
        seconds=seconds,
        images_per_second=examples / seconds if examples else 0.0,
    )
