"""The training loop's fast path: one whole training step captured in a CUDA graph, then replayed every step.

``train(..., fast=True)`` uses it. Not yet run on a GPU: no session of this project has had one; the GPU-marked
tests in tests/test_training.py (same weights as the eager loop, resume, loss readback) and the benchmark
(bench/diffusers_vs_dlcourse.py) are what check it there.

Why: at course sizes a training step (forward, backward, clipping, AdamW, EMA) is a thousand or more small
kernels, and the GPU idles while Python launches them: diffusers' eager loop at such a size reaches a few per
cent of an H100's peak. ``torch.compile(mode="reduce-overhead")`` removes the launches but costs minutes of
compilation; a CUDA graph of the step costs a few eager steps and one capture. The recipe is the one in the
PyTorch docs ("CUDA Graphs", whole-network capture with the optimizer step inside):

1. Everything a step reads lives at fixed addresses: the training set (on the device, moved once), the weights,
   AdamW's state (with ``capturable=True`` its step counter lives on the device), the EMA copy, fp16's loss
   scale. The two numbers that change from step to step are 0-d tensors on the device, filled before each
   step: the learning rate (its warm-up, :func:`~dlcourse.training.learning_rate`) and the EMA weight
   1 - decay_n (the EMA's warm-up, :func:`~dlcourse.ema.ema_decay_at`).
2. Randomness inside the graph: the batch generators are registered with the graph (torch's global CUDA
   generator, which dropout uses, is registered by torch), so each replay draws the next numbers of the same
   Philox streams the eager loop draws (indices, dropout coins, t, eps), and their states, saved in
   checkpoints, advance with each replay.
3. Warm-up: the first ``WARMUP_STEPS`` steps run eagerly on a side stream. They are real training steps; they
   create AdamW's state and let cuDNN and cuBLAS pick kernels and allocate workspaces outside the capture.
4. Capture: the gradients are set to None first, so the backward pass in the graph allocates them from the
   graph's memory pool and each replay overwrites them (no zeroing needed).
5. Replay: fill the learning rate and the EMA weight, replay, and hand the loop the loss, a static tensor the
   loop copies into its per-step loss buffer on the device. No host sync per step.

A capture that fails (a model whose forward calls .item(), a Python branch on a tensor value) raises a
RuntimeError that says so; ``fast=False`` runs the same step eagerly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dlcourse.ema import EMA
from dlcourse.training.config import TrainConfig, learning_rate

__all__ = ["WARMUP_STEPS", "GraphedTrainStep"]

WARMUP_STEPS = 3  # eager steps on a side stream before the capture, as in the PyTorch docs

OneStep = Callable[[Tensor | None], Tensor]  # one_step(ema_weight) -> the step's loss (0-d, detached)


class GraphedTrainStep:
    """Training steps of one run, the first ``WARMUP_STEPS`` eager, the rest replays of one captured step.

    ``graphed(step)`` takes training step ``step`` (1-based, as the loop counts) and returns its loss, a 0-d
    tensor on the device that the next call overwrites: copy it before then (the loop does).

    one_step: the loop's step body, ``one_step(ema_weight)``: draws a batch, computes the loss, backward, clips,
        steps the optimiser (reading its learning rate from the param groups), calls
        ``ema.average(ema_weight)``; returns the loss, detached. It must not read anything from the host.
    optimizer: the run's AdamW (fused); its param groups get a tensor learning rate and ``capturable=True``.
        Create this object after resuming from a checkpoint (loading a state dict replaces the param groups).
    ema: the run's EMA (None: no EMA); this object counts its updates.
    generators: the run's batch generators, registered with the graph.
    device: the run's CUDA device (:func:`~dlcourse.training.checks.check_fast` has checked it).
    """

    def __init__(
        self,
        one_step: OneStep,
        optimizer: torch.optim.Optimizer,
        ema: EMA | None,
        config: TrainConfig,
        generators: list[torch.Generator],
        device: torch.device,
    ):
        self.one_step = one_step
        self.optimizer = optimizer
        self.ema = ema
        self.config = config
        self.generators = generators
        self.device = device
        self.lr = torch.zeros((), device=device)  # step 1: filled before each step
        for group in optimizer.param_groups:
            group["lr"] = self.lr
            group["capturable"] = True  # AdamW keeps its step counter on the device and never reads it back
        self.ema_weight = torch.zeros((), device=device) if ema is not None else None
        self.side_stream = torch.cuda.Stream(device)  # the eager warm-up steps run here
        self.eager_steps = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_loss: Tensor | None = None

    def __call__(self, step: int) -> Tensor:
        self.lr.fill_(learning_rate(step, self.config))  # a fill kernel with the value as its argument: no copy
        if self.ema is not None:
            self.ema_weight.fill_(1.0 - self.ema.current_decay)
        if self.eager_steps < WARMUP_STEPS:
            loss = self._eager_step()
        else:
            if self.graph is None:
                self._capture()
            self.graph.replay()
            loss = self.static_loss
        if self.ema is not None:
            self.ema.num_updates += 1  # the update itself ran on the device, with the weight filled above
        return loss

    def _eager_step(self) -> Tensor:
        """One step run eagerly on a side stream, ordered after and before the work of the current stream."""
        self.side_stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.side_stream):
            loss = self.one_step(self.ema_weight)
        torch.cuda.current_stream(self.device).wait_stream(self.side_stream)
        self.eager_steps += 1
        return loss

    def _capture(self) -> None:
        """Record one step (nothing runs); the replay that follows takes it."""
        self.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the gradients, then rewrites them
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        stream = torch.cuda.current_stream(self.device)
        try:
            with torch.cuda.graph(graph):
                self.static_loss = self.one_step(self.ema_weight)
        except RuntimeError as error:
            torch.cuda.set_stream(stream)  # a failed capture can leave torch's capture stream current
            raise RuntimeError(
                f"Could not capture the training step in a CUDA graph: {error}\nA capturable step has no .item(), "
                ".cpu(), .tolist(), print of tensor values or Python branch on tensor values in the model's "
                "forward or the loss function. Remove those, or pass fast=False to train eagerly."
            ) from error
        self.graph = graph
