"""One process of a 2-process CPU DistributedDataParallel training, started by tests/test_training.py:

    python -m torch.distributed.run --nproc_per_node=2 --master_port PORT tests/ddp_worker.py OUT_DIR PORT2

Each rank builds its tiny U-Net from a different seed (DDP must broadcast rank 0's weights) and trains it on the
gloo backend three times. First 4 steps straight (checkpoint OUT_DIR/full.pt), train() creating and leaving the
process group. Then 2 steps and a resume to 4 (checkpoint OUT_DIR/resumed.pt) in a process group this script
creates on a fresh store at PORT2 (re-creating the default group on torchrun's store can read stale addresses
left by the first one and hang), so train() uses it and leaves it alone; in that group, also 4 steps of the
general loop (class labels with condition dropout, a parameter subset, an extra loss term). It writes
OUT_DIR/rank{RANK}.pt with the weights and what train() returned.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from dlcourse.data import Shapes, ShapesBatch
from dlcourse.models import UNet, UNetConfig
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import LossTerm, TrainConfig, train


def build(rank: int) -> UNet:
    torch.manual_seed(100 + rank)  # different initial weights on each rank
    return UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=()))


class Conditional(nn.Module):
    """A small class-conditional denoiser (label 5: "no class")."""

    def __init__(self, rank: int):
        super().__init__()
        torch.manual_seed(200 + rank)
        self.conv_in, self.time = nn.Conv2d(3, 8, 3, padding=1), nn.Embedding(1000, 8)
        self.label, self.conv_out = nn.Embedding(6, 8), nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x, t, class_labels):
        h = self.conv_in(x) + (self.time(t) + self.label(class_labels))[:, :, None, None]
        return self.conv_out(torch.nn.functional.silu(h))


def train_general(rank: int, shapes: ShapesBatch, options: dict) -> dict:
    """4 steps with condition dropout, a parameter subset and an extra loss term, under DDP."""
    model = Conditional(rank)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    config = TrainConfig(steps=4, batch_size=4, lr=1e-2, warmup_steps=0, p_uncond=0.5)
    result = train(
        model,
        {"x0": shapes.images, "class_labels": shapes.attributes["shape"]},
        NoiseSchedule.from_name("linear"),
        config,
        trainable=[*model.label.parameters(), *model.conv_out.parameters()],
        null_condition={"class_labels": 5},
        extra_terms=[LossTerm({"x0": shapes.images[:8], "class_labels": shapes.attributes["shape"][:8]}, 0.5)],
        **options,
    )
    return {"general_initial": initial, "general_model": result.model.state_dict()}


def main(out: Path, port2: int) -> None:
    rank = int(os.environ["RANK"])
    shapes = Shapes(resolution=16, seed=0, device="cpu").batch(0, 64)
    data = shapes.images
    config = TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=0, log_every=2, checkpoint_every=2)
    options = {"device": "cpu", "progress": False}

    model = build(rank)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    full = train(model, data, NoiseSchedule.from_name("linear"), config, checkpoint_path=out / "full.pt", **options)
    group_left = not dist.is_initialized()

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port2}", rank=rank, world_size=2)
    schedule = NoiseSchedule.from_name("linear")
    train(build(rank), data, schedule, replace(config, steps=2), checkpoint_path=out / "resumed.pt", **options)
    resumed = train(build(rank), data, schedule, config, checkpoint_path=out / "resumed.pt", **options)
    general = train_general(rank, shapes, options)
    group_kept = dist.is_initialized()
    dist.destroy_process_group()
    torch.save(
        {
            "model": full.model.state_dict(),
            "initial": initial,
            "loss_history": full.loss_history,
            "has_ema": full.ema is not None,
            "group_left": group_left,
            "group_kept": group_kept,
            "resumed_model": resumed.model.state_dict(),
            "resumed_start": resumed.start_step,
            **general,
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
