"""dlcourse: the package behind the diffusion-models course. Every component is implemented here, for real.

The notebooks in ``notebooks/`` teach each piece and import it from here. Public names, by topic:

- runtime and modes (every notebook): ``get_device``, ``select_precision``, ``seed_everything``, ``data_dir``,
  ``run_mode``, ``settings``; ``record`` prints a measured figure and adds it to the ``make course`` report;
- data (01): ``Shapes``, ``load_dataset``, ``to_model_range``, ``to_display_range``;
- the forward process (01): ``NoiseSchedule``, ``make_betas`` and the pure functions in ``dlcourse.schedules``;
- the U-Net (02): ``UNet``, ``UNetConfig`` and its blocks;
- training (03): ``ddpm_loss``, ``train``, ``TrainConfig``, ``LossTerm``, ``EMA``; checkpoints in
  ``dlcourse.checkpoints``;
- sampling (03, 04): ``ddpm_sample``, ``ddim_sample`` and their single steps;
- quality (03, 04): ``dlcourse.metrics``; models reused across notebooks: ``dlcourse.pretrained``;
- pictures and widgets: ``dlcourse.viz``.
"""

from dlcourse import metrics, pretrained, viz
from dlcourse.checkpoints import CheckpointError, load_or_train
from dlcourse.data import (
    DatasetUnavailableError,
    ImageData,
    Shapes,
    ShapesBatch,
    load_dataset,
    parse_caption,
    to_display_range,
    to_model_range,
)
from dlcourse.ema import EMA
from dlcourse.models import (
    CrossAttention,
    Downsample,
    ResBlock,
    SelfAttention,
    TimestepMLP,
    UNet,
    UNetBlock,
    UNetConfig,
    Upsample,
    count_parameters,
    timestep_embedding,
)
from dlcourse.modes import run_mode, settings
from dlcourse.report import record
from dlcourse.runtime import Precision, checkpoint_dir, data_dir, get_device, seed_everything, select_precision
from dlcourse.sampling import ddim_sample, ddim_step, ddpm_sample, ddpm_step, timesteps
from dlcourse.schedules import NoiseSchedule, make_betas, q_sample, q_step
from dlcourse.training import LossTerm, TrainConfig, TrainResult, ddpm_loss, learning_rate, train

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CrossAttention",
    "DatasetUnavailableError",
    "Downsample",
    "EMA",
    "ImageData",
    "LossTerm",
    "NoiseSchedule",
    "Precision",
    "ResBlock",
    "SelfAttention",
    "Shapes",
    "ShapesBatch",
    "TimestepMLP",
    "TrainConfig",
    "TrainResult",
    "UNet",
    "UNetBlock",
    "UNetConfig",
    "Upsample",
    "__version__",
    "checkpoint_dir",
    "count_parameters",
    "data_dir",
    "ddim_sample",
    "ddim_step",
    "ddpm_loss",
    "ddpm_sample",
    "ddpm_step",
    "get_device",
    "load_dataset",
    "load_or_train",
    "learning_rate",
    "make_betas",
    "metrics",
    "parse_caption",
    "pretrained",
    "q_sample",
    "q_step",
    "record",
    "run_mode",
    "seed_everything",
    "select_precision",
    "settings",
    "timestep_embedding",
    "timesteps",
    "to_display_range",
    "to_model_range",
    "train",
    "viz",
]
