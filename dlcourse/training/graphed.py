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
   replay: the learning rate (its warm-up, :func:`~dlcourse.training.learning_rate`; in the param groups from
   the capture on, the eager steps put a number there) and the EMA weight 1 - decay_n (the EMA's warm-up,
   :func:`~dlcourse.ema.ema_decay_at`).
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
6. Checked, and falling back loudly (:mod:`dlcourse.fast_path`): the first graphed step (step
   ``WARMUP_STEPS + 1``) is taken eagerly with host syncs turned into errors (a step that reads a value back to
   the host could not be captured), then captured, then replayed from a copy of the state before it (weights,
   buffers, AdamW's state, the EMA, the GradScaler, the random states: :class:`StepState`); the replay's loss
   and weights (the trained ones and the EMA's) are compared with the eager step's, the eager step's state is
   put back, and the replays take the steps after it. On a capture error, a replay error or a mismatch, one
   :class:`~dlcourse.fast_path.FastPathWarning` names what failed and the card, and the run goes on with
   the eager loop's steps, the learning rate a number in the param groups again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dlcourse import fast_path
from dlcourse.runtime import Precision
from dlcourse.training.config import TrainConfig, learning_rate
from dlcourse.training.resume import Run, _rng_state, _set_rng_state

__all__ = ["WARMUP_STEPS", "GraphedTrainStep", "StepState"]

WARMUP_STEPS = 3  # eager steps on a side stream before the capture, as in the PyTorch docs
WHAT = "the training step's CUDA graph"  # what the fallback warning names

OneStep = Callable[[Tensor | None], Tensor]  # one_step(ema_weight) -> the step's loss (0-d, detached)


class StepState:
    """A copy of everything a training step changes, to take one step twice from the same state.

    The trained parameters, the EMA's averaged weights and buffers, the model's buffers, AdamW's state, the
    GradScaler's scale, the random states (:meth:`restore` copies them back in place, so a captured graph's
    addresses stay valid) and the EMA's update count. ``weights``: the copies of the trained parameters and the
    EMA's weights, what the check compares. Frozen parameters are not copied: a step does not change them.
    """

    def __init__(self, run: Run):
        self.run = run
        self.live = self.weights_of(run) + list(run.model.buffers())
        self.live += [v for state in run.optimizer.state.values() for v in state.values() if isinstance(v, Tensor)]
        self.copies = [tensor.detach().clone() for tensor in self.live]
        self.weights = self.copies[: len(self.weights_of(run))]
        self.rng = _rng_state(run.generators, run.device)
        self.scaler = run.scaler.state_dict()  # fp16: the loss scale (one host sync); empty when disabled
        self.ema_updates = run.ema.num_updates if run.ema is not None else 0

    @staticmethod
    def weights_of(run: Run) -> list[Tensor]:
        """The trained parameters and the EMA's averaged weights and buffers (live tensors)."""
        trained = [p.detach() for group in run.optimizer.param_groups for p in group["params"]]
        return trained + ([*run.ema.state_dict()["model"].values()] if run.ema is not None else [])

    def restore(self) -> None:
        with torch.no_grad():
            torch._foreach_copy_(self.live, self.copies)
        _set_rng_state(self.rng, self.run.generators, self.run.device)
        if self.scaler:
            self.run.scaler.load_state_dict(self.scaler)  # fills the scale tensors in place
        if self.run.ema is not None:
            self.run.ema.num_updates = self.ema_updates


class GraphedTrainStep:
    """Training steps of one run: ``WARMUP_STEPS`` eager, one checked, the rest replays of one captured step.

    ``graphed(step)`` takes training step ``step`` (1-based, as the loop counts) and returns its loss, a 0-d
    tensor on the device that the next call may overwrite: copy it before then (the loop does).

    one_step: the loop's step body, ``one_step(ema_weight=None)``: draws a batch, computes the loss, backward,
        clips, steps the optimiser (reading its learning rate from the param groups), updates the EMA
        (``ema.update()``, or with a weight ``ema.average(ema_weight)``, uncounted); returns the loss, detached.
        It must not read anything from the host.
    run: the run's state (:class:`~dlcourse.training.resume.Run`): its AdamW's param groups get
        ``capturable=True`` on CUDA and, from the capture on, a tensor learning rate. Create this object after
        resuming from a checkpoint (loading a state dict replaces the param groups).
    precision: the run's; its autocast dtype sets the check's tolerance (:data:`dlcourse.fast_path.TOLERANCE`).
    """

    def __init__(self, one_step: OneStep, run: Run, config: TrainConfig, precision: Precision):
        self.one_step = one_step
        self.run = run
        self.config = config
        self.precision = precision
        self.lr = torch.zeros((), device=run.device)  # the graph's learning rate, filled before each replay
        for group in run.optimizer.param_groups:  # AdamW keeps its step counter on the device, never read back
            group["capturable"] = run.device.type == "cuda"  # (a mode of CUDA's AdamW only)
        self.ema_weight = torch.zeros((), device=run.device) if run.ema is not None else None
        self.eager_steps = 0
        self.eager = False  # fallen back: eager steps from now on
        self.replay: Callable[[], Tensor] | None = None

    def __call__(self, step: int) -> Tensor:
        if self.eager or self.eager_steps < WARMUP_STEPS:
            return self._eager_step(step)
        if self.replay is None:
            return self._first_graphed_step(step)
        loss = self._replay(step)
        if self.run.ema is not None:
            self.run.ema.num_updates += 1  # the update itself ran on the device, with the weight filled in _replay
        return loss

    def _replay(self, step: int, replay: Callable[[], Tensor] | None = None) -> Tensor:
        """Fill the learning rate and the EMA weight, replay (``replay``, default the adopted graph's)."""
        self.lr.fill_(learning_rate(step, self.config))  # a fill kernel with the value as its argument: no copy
        if self.run.ema is not None:
            self.ema_weight.fill_(1.0 - self.run.ema.current_decay)
        return (replay or self.replay)()

    def _eager_step(self, step: int) -> Tensor:
        """The eager loop's step, on a side stream ordered after and before the work of the current stream."""
        for group in self.run.optimizer.param_groups:
            group["lr"] = learning_rate(step, self.config)  # linear warm-up
        with fast_path.graphs.side_stream(self.run.device):
            loss = self.one_step()
        self.eager_steps += 1
        return loss

    def _first_graphed_step(self, step: int) -> Tensor:
        """An eager step, then the captured step replayed from the same state and compared; the eager one is kept."""
        before = StepState(self.run)
        try:
            with fast_path.graphs.no_host_sync():  # a host sync fails here, as it would in the capture
                loss = self._eager_step(step)
        except Exception as error:
            before.restore()
            self._fall_back(fast_path.capture_failed(error))
            return self._eager_step(step)  # the step again, as the eager loop takes it
        after = StepState(self.run)
        for group in self.run.optimizer.param_groups:
            group["lr"] = self.lr  # the graph reads the learning rate from this tensor
        self.run.optimizer.zero_grad(set_to_none=True)  # the graph's backward allocates the gradients, rewrites them
        try:
            replay = fast_path.graphs.capture(
                lambda: self.one_step(self.ema_weight), self.run.device, self.run.generators
            )
        except Exception as error:
            after.restore()
            self._fall_back(fast_path.capture_failed(error))
            return loss
        try:
            before.restore()
            replayed = self._replay(step, replay)  # the same step, from the same state, replayed
            difference = max(
                fast_path.relative_difference([replayed], [loss]),
                fast_path.relative_difference(StepState.weights_of(self.run), after.weights, before.weights),
            )
            failure = fast_path.mismatch(difference, self.precision.dtype)
        except Exception as error:
            failure = f"its first replay failed ({fast_path.describe(error)})"
        after.restore()  # the eager step's result is the run's in every case
        if failure is not None:
            self._fall_back(failure)
        else:
            self.replay = replay
        return loss

    def _fall_back(self, failure: str) -> None:
        """Warn (once: this is the last graph this object tries) and train eagerly from now on."""
        fast_path.fall_back(WHAT, failure, self.run.device)
        self.eager = True
        state = self.run.scaler.state_dict()
        self.run.scaler = self.precision.grad_scaler()  # the same scale, none of a half-captured step's bookkeeping
        if state:
            self.run.scaler.load_state_dict(state)
