"""dlcourse vs diffusers on the same work, in one run on one device: training and 50-step DDIM sampling.

Both sides get a U-Net of matched size (parameters and FLOPs within 10%, checked and printed), the same data
(Shapes, on the device), the same precision (the runtime's autocast dtype) and the same optimiser settings:

- dlcourse: ``dlcourse.train`` (AdamW, EMA, grad clipping), eagerly and on a GPU also with ``fast=True`` (the whole
  step in a CUDA graph), and ``ddim_sample(fast=True)`` (CUDA graph on a GPU);
- diffusers: ``UNet2DModel`` trained by the loop of its ``train_unconditional`` example (AdamW, EMAModel, grad
  clipping) and sampled with ``DDIMScheduler`` in the usual ``for t in scheduler.timesteps`` loop.

It prints images/s for training, images/s for DDIM sampling at each batch size, the warm-up (first call minus a
steady call; for our training, the fixed cost of a train() call), the peak GPU memory, and the ratios
dlcourse / diffusers (> 1: dlcourse is faster or leaner).

    python bench/diffusers_vs_dlcourse.py                      # GPU: batches 64 and 512; CPU: reduced sizes
    python bench/diffusers_vs_dlcourse.py --sample-batches 64 512 --train-steps 200
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlcourse import (  # noqa: E402
    NoiseSchedule,
    Shapes,
    TrainConfig,
    UNet,
    UNetConfig,
    count_parameters,
    ddim_sample,
    get_device,
    select_precision,
    train,
)
from dlcourse.fast_path import FastPathWarning  # noqa: E402
from dlcourse.training.graphed import WARMUP_STEPS  # noqa: E402

RESOLUTION = 32
MULTS = (1, 2, 2)  # channels per level = base * mult; attention at 8x8 (the last level) and in the middle on both sides


def ours_model(base: int) -> UNet:
    return UNet(UNetConfig(resolution=RESOLUTION, base_channels=base, channel_mults=MULTS,
                           num_res_blocks=2, attention_resolutions=(8,), num_heads=4))


def diffusers_model(base: int):
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=RESOLUTION, in_channels=3, out_channels=3, block_out_channels=tuple(base * m for m in MULTS),
        layers_per_block=2, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=8,
        attention_head_dim=base * MULTS[-1] // 4,
    )


def forward_flops(model: torch.nn.Module, call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> int:
    x = torch.randn(1, 3, RESOLUTION, RESOLUTION)
    t = torch.tensor([500])
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        call(x, t)
    return counter.get_total_flops()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def train_ours(base, data, schedule, steps, batch, device, precision, fast=False) -> dict:
    """Three train() calls on one model: short, long, short. Steady time per step: (long - second short) per extra
    step; warm-up: what the first call cost beyond its steps (allocations, kernel selection, with fast=True the eager
    steps and the CUDA-graph capture), as diffusers' warm-up is its first step beyond a steady one."""
    model = ours_model(base)
    reset_memory(device)

    def seconds(n: int) -> float:
        config = TrainConfig(steps=n, batch_size=batch, warmup_steps=1, log_every=n, checkpoint_every=n)
        return train(model, data, schedule, config, device=device, precision=precision, progress=False,
                     fast=fast).seconds

    short_steps = WARMUP_STEPS + 2 if fast else 2  # with fast=True: the eager steps, the capture, two replays
    first, long, short = seconds(short_steps), seconds(steps), seconds(short_steps)
    steady = (long - short) / (steps - short_steps)
    if steady <= 0:
        raise SystemExit(f"{steps} training steps took no longer than {short_steps} ({long:.3f} s vs {short:.3f} s): "
                         "too few to tell the steady time from noise. Pass a larger --train-steps.")
    return {"img/s": batch / steady, "warmup_s": first - short_steps * steady, "peak_mib": peak_mib(device)}


def train_diffusers(base, data, schedule, steps, batch, device, precision) -> dict:
    """The loop of diffusers' examples/unconditional_image_generation/train_unconditional.py, without accelerate."""
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    model = diffusers_model(base).to(device).train()
    reset_memory(device)
    scheduler = DDPMScheduler(num_train_timesteps=schedule.num_timesteps, beta_schedule="squaredcos_cap_v2")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    scaler = precision.grad_scaler()
    ema = EMAModel(model.parameters(), decay=0.999)
    generator = torch.Generator(device).manual_seed(0)

    def step() -> None:
        clean = data[torch.randint(len(data), (batch,), device=device, generator=generator)]
        noise = torch.randn(clean.shape, device=device, generator=generator)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=device, generator=generator)
        with precision.autocast():
            loss = F.mse_loss(model(scheduler.add_noise(clean, noise, t), t).sample.float(), noise)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        ema.step(model.parameters())

    start = time.perf_counter()
    step()
    sync(device)
    first = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    seconds = time.perf_counter() - start
    return {"img/s": steps * batch / seconds, "warmup_s": first - seconds / steps, "peak_mib": peak_mib(device)}


def time_sampling(sample: Callable[[torch.Tensor], torch.Tensor], batch: int, device: torch.device) -> dict:
    """First call (warm-up, graph capture) and the mean of the steady calls (two on a GPU, one on a CPU)."""
    generator = torch.Generator(device).manual_seed(0)
    noise = torch.randn(batch, 3, RESOLUTION, RESOLUTION, device=device, generator=generator)
    reset_memory(device)
    times = []
    for _ in range(3 if device.type == "cuda" else 2):
        sync(device)
        start = time.perf_counter()
        sample(noise)
        sync(device)
        times.append(time.perf_counter() - start)
    steady = sum(times[1:]) / len(times[1:])
    return {"img/s": batch / steady, "warmup_s": times[0] - steady, "peak_mib": peak_mib(device)}


def sample_ours(model, schedule, steps, precision):
    return lambda noise: ddim_sample(
        model, schedule, noise, num_steps=steps, clip_x0=(-1, 1), timestep_spacing="leading", precision=precision,
        fast=True, progress=False,
    )  # clip_x0, leading: what DDIMScheduler does by default (clip_sample=True, timestep_spacing="leading")


def sample_diffusers(model, schedule, steps, precision):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(num_train_timesteps=schedule.num_timesteps, beta_schedule="squaredcos_cap_v2")

    @torch.inference_mode()
    def sample(noise):
        scheduler.set_timesteps(steps)
        x = noise
        for t in scheduler.timesteps:
            with precision.autocast():
                eps = model(x, t).sample
            x = scheduler.step(eps.float(), t, x).prev_sample
        return x

    return sample


def fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--base-channels", type=int, default=None, help="default: 64 (GPU), 32 (CPU)")
    parser.add_argument("--train-steps", type=int, default=None, help="default: 100 on a GPU, 10 on a CPU")
    parser.add_argument("--train-batch", type=int, default=None, help="default: 128 on a GPU, 16 on a CPU")
    parser.add_argument("--sample-batches", type=int, nargs="+", default=None, help="default: 64 512 (GPU), 8 32 (CPU)")
    parser.add_argument("--sample-steps", type=int, default=50)
    args = parser.parse_args()

    device = get_device(args.device)
    gpu = device.type == "cuda"
    base = args.base_channels or (64 if gpu else 32)
    train_steps = args.train_steps or (100 if gpu else 10)
    train_batch = args.train_batch or (128 if gpu else 16)
    sample_batches = args.sample_batches or ([64, 512] if gpu else [8, 32])
    precision = select_precision(device)
    torch.manual_seed(0)
    name = torch.cuda.get_device_name(device) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name} | {precision.reason} | torch {torch.__version__}")

    ours, theirs = ours_model(base), diffusers_model(base)
    params = count_parameters(ours), count_parameters(theirs)
    flops = forward_flops(ours, ours), forward_flops(theirs, lambda x, t: theirs(x, t).sample)
    print(f"U-Net parameters: dlcourse {params[0]:,} | diffusers {params[1]:,} ({params[0] / params[1]:.3f}x)")
    print(f"forward FLOPs/image: dlcourse {flops[0] / 1e9:.3f} G | diffusers {flops[1] / 1e9:.3f} G "
          f"({flops[0] / flops[1]:.3f}x)")
    for what, (a, b) in (("parameters", params), ("FLOPs", flops)):
        if abs(a / b - 1) > 0.10:
            raise SystemExit(f"the configs are not matched: {what} differ by more than 10% ({a:,} vs {b:,})")

    data = Shapes(resolution=RESOLUTION, seed=0, device=device).batch(0, 4096 if gpu else 512).images
    schedule = NoiseSchedule.from_name("cosine", 1000).to(device)
    theirs_training = train_diffusers(base, data, schedule, train_steps, train_batch, device, precision)
    rows = [(f"train, batch {train_batch}",
             train_ours(base, data, schedule, train_steps, train_batch, device, precision), theirs_training)]
    if gpu:
        rows.append((f"train, batch {train_batch}, fast=True (CUDA graph)",
                     train_ours(base, data, schedule, train_steps, train_batch, device, precision, fast=True),
                     theirs_training))
    ours, theirs = ours.to(device).eval(), theirs.to(device).eval()
    for batch in sample_batches:
        rows.append((
            f"DDIM-{args.sample_steps}, batch {batch}",
            time_sampling(sample_ours(ours, schedule, args.sample_steps, precision), batch, device),
            time_sampling(sample_diffusers(theirs, schedule, args.sample_steps, precision), batch, device),
        ))

    print()
    print("| work | dlcourse img/s | diffusers img/s | speed ratio | warm-up s (ours / theirs) "
          "| peak MiB (ours / theirs) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, a, b in rows:
        warmup = f"{fmt(a['warmup_s'], 2)} / {fmt(b['warmup_s'], 2)}"
        memory = f"{fmt(a['peak_mib'], 0)} / {fmt(b['peak_mib'], 0)}"
        ratio = a["img/s"] / b["img/s"]
        print(f"| {label} | {fmt(a['img/s'])} | {fmt(b['img/s'])} | {ratio:.2f}x | {warmup} | {memory} |")


if __name__ == "__main__":
    # A fast path that fell back to the eager path would be timed as the fast path: stop instead.
    warnings.simplefilter("error", FastPathWarning)
    main()
