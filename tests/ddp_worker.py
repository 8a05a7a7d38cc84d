"""One process of a 2-process CPU DistributedDataParallel training, started by tests/test_training.py:

    python -m torch.distributed.run --nproc_per_node=2 --master_port PORT tests/ddp_worker.py OUT_DIR PORT2

Each rank builds its tiny U-Net from a different seed (DDP must broadcast rank 0's weights) and trains it on the
gloo backend three times. First 4 steps straight (checkpoint OUT_DIR/full.pt), train() creating and leaving the
process group. Then 2 steps and a resume to 4 (checkpoint OUT_DIR/resumed.pt) in a process group this script
creates on a fresh store at PORT2 (re-creating the default group on torchrun's store can read stale addresses
left by the first one and hang), so train() uses it and leaves it alone. It writes OUT_DIR/rank{RANK}.pt with
the weights and what train() returned.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

from dlcourse.data import Shapes
from dlcourse.models import UNet, UNetConfig
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig, train


def build(rank: int) -> UNet:
    torch.manual_seed(100 + rank)  # different initial weights on each rank
    return UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=()))


def main(out: Path, port2: int) -> None:
    rank = int(os.environ["RANK"])
    data = Shapes(resolution=16, seed=0, device="cpu").batch(0, 64).images
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
        },
        out / f"rank{rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
