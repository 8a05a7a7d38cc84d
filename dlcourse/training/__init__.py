"""Training a diffusion model: the DDPM loss (Ho et al. 2020, Algorithm 1) and one general, fast training loop.

- :mod:`~dlcourse.training.loss`: :func:`ddpm_loss`, the loss of one batch (eps, v or x0 target);
- :mod:`~dlcourse.training.flow_loss`: :class:`FlowMatchingLoss`, flow matching / rectified flow (the velocity
  target on the straight path; reflow on fixed pairs), a ``loss_fn`` for the same loop;
- :mod:`~dlcourse.training.loop`: :func:`train`, Algorithm 1 in a loop with mixed precision, fused AdamW,
  channels_last, linear learning-rate warm-up, gradient clipping, an EMA of the weights (:mod:`dlcourse.ema`),
  checkpoints that resume bit-for-bit, and DistributedDataParallel under ``torchrun``;
- :mod:`~dlcourse.training.batches`: drawing a batch (conditions, a frozen encoder, condition dropout);
- :mod:`~dlcourse.training.config`: :class:`TrainConfig`, :class:`LossTerm`, :class:`TrainResult`,
  :func:`learning_rate`;
- :mod:`~dlcourse.training.trainable`, :mod:`~dlcourse.training.checks`, :mod:`~dlcourse.training.run_checks`,
  :mod:`~dlcourse.training.resume`, :mod:`~dlcourse.training.distributed`: a parameter subset, the input checks, the
  checks of the run (fast path, pieces, trainable subset, NaN), checkpoints, DDP;
- :mod:`~dlcourse.training.graphed`: the fast path, the training step in a CUDA graph.

One loop trains, without copies of it: an unconditional image model (``data`` a tensor); a conditional one
(``data={"x0": images, "class_labels": labels}``, with condition dropout ``TrainConfig.p_uncond`` to
``null_condition``); a model on the latents of a frozen encoder (``encode=...``, or cached latents as data
with ``data_range=None``); a subset of the parameters (``trainable=[...]``); a loss with extra terms
(``extra_terms=[LossTerm(...)]``) or another loss (``loss_fn=...``).

Things to know when using :func:`train`:

- **No host sync inside a step.** Each step's loss stays on the device; the loop reads the losses back once
  every ``log_every`` steps (for the progress bar and the loss history), at each checkpoint and at the end.
  A NaN or inf loss is detected there and raises :class:`FloatingPointError` naming the step. (fp16's
  GradScaler adds no sync on CUDA either: the fused AdamW reads its inf flag on the device.)
- **The fast path** (``fast=True``, one process on a CUDA device): after three eager steps the whole step
  (forward, backward, clipping, AdamW, EMA) is captured in a CUDA graph and replayed, one launch per step instead of
  a thousand (:mod:`~dlcourse.training.graphed`). The same steps, not bit for bit (kernel choice, atomics). The
  first replayed step is checked against an eager step from the same state; a capture error, a replay error or a
  mismatch gives one :class:`~dlcourse.fast_path.FastPathWarning` and the run goes on eagerly. Not yet run on a GPU;
  the notebooks train eagerly until the GPU-marked tests have passed on one.
- **Loss history** (``TrainResult.loss_history``): one float per step, the batch-mean loss of that step with
  its extra terms (under DDP, the mean over processes), covering every step since step 1 (a resumed run
  includes the steps before the interruption). Smooth it for plotting.
- **Checkpoints** (``checkpoint_path``, every ``checkpoint_every`` steps and at the end; written atomically):
  if the file exists, :func:`train` resumes from it, so "train 10 steps, stop, train to 20" gives the same
  weights as "train 20 steps" (bit-for-bit on a CPU). Only ``steps`` may differ from the run that wrote it;
  anything else raises :class:`dlcourse.checkpoints.CheckpointError` (see :mod:`~dlcourse.training.resume`).
- **Randomness**: the batch indices, the condition-dropout coins (only when ``p_uncond > 0``), t and eps
  come, in that order, from a ``torch.Generator`` on the device seeded with ``seed + rank``; each extra term
  has a generator of its own. A fresh run also seeds torch's global RNG (dropout) with ``seed + rank``.
- **Batch size** is per process: under ``torchrun --nproc_per_node=K`` each step trains on K * batch_size examples.
- **Caching a trained model** for the notebooks, EMA weights included::

      def fit(model):
          result = train(model, data, schedule, TrainConfig(**cfg))
          result.ema.copy_to(model)          # cache the EMA weights: they sample better
          return result.summary()            # loss history and speed, saved beside the weights

      model, extra = load_or_train("ddpm_shapes", cfg, lambda: UNet(UNetConfig(...)), fit)

Taught in notebooks/03_ddpm_training.ipynb, sections "Algorithm 1: the loss", "Algorithm 1, the whole loop"
and "`train()`: the same loop plus engineering".
"""

from dlcourse.training.config import LossTerm, TrainConfig, TrainResult, learning_rate
from dlcourse.training.flow_loss import T_DISTRIBUTIONS, TIMESTEP_SCALE, FlowMatchingLoss
from dlcourse.training.loop import train
from dlcourse.training.loss import ddpm_loss
from dlcourse.training.run_checks import TrainingDiverged

__all__ = [
    "TIMESTEP_SCALE",
    "T_DISTRIBUTIONS",
    "FlowMatchingLoss",
    "LossTerm",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "ddpm_loss",
    "learning_rate",
    "train",
]
