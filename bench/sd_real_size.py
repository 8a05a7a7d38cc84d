"""Stable Diffusion 1.5 at its real size, random weights, on a GPU: our loop vs diffusers' pipeline, and memory.

No weights are needed: the U-Net (860M parameters), the VAE and the CLIP ViT-L/14 text encoder are built from SD
1.5's configuration with random weights, which cost exactly what the trained ones cost. Measured, in fp16:

- seconds per 512 x 512 image, 50 DDIM steps with classifier-free guidance (batch 1): ``dlcourse.sd.text_to_image``
  eager and with its CUDA-graph fast path, against ``StableDiffusionPipeline`` with the same components and scheduler;
- peak GPU memory of sampling;
- peak GPU memory of DreamBooth-LoRA training (``dlcourse.sd.dreambooth_lora``, rank 4, batch 1 plus one prior-
  preservation image, 512 px, VAE encoding included), with and without gradient checkpointing: must fit a T4's 15 GB.

    python bench/sd_real_size.py                 # SD 1.5's configuration; needs a CUDA GPU
    python bench/sd_real_size.py --config tiny   # toy components: checks the script anywhere in seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dlcourse import sd  # noqa: E402
from dlcourse.fast_path import FastPathWarning  # noqa: E402
from dlcourse.runtime import Precision  # noqa: E402
from dlcourse.training import TrainConfig  # noqa: E402


def sd15_components(device: torch.device, dtype: torch.dtype) -> sd.SDComponents:
    """SD 1.5's U-Net, VAE and text encoder configurations with random weights (the tokenizer: our toy one)."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = sd.tiny_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768,
    ))
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # its defaults are SD 1.x's U-Net
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, sample_size=512,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    for module in (text_encoder, unet, vae):
        module.eval().requires_grad_(False)
    return sd.SDComponents(tokenizer, text_encoder, unet, vae, scheduler, "SD 1.5 config, random weights").to(
        device, dtype)


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """(first call seconds, median of ``repeats`` further calls) with the device synchronised around each."""
    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    first = once()
    steady = sorted(once() for _ in range(repeats))
    return first, steady[len(steady) // 2]


def peak_gib(fn, device: torch.device) -> float | None:
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    fn()
    return torch.cuda.max_memory_allocated() / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=("sd15", "tiny"), default="sd15")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lora-steps", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.config == "sd15" and device.type != "cuda":
        sys.exit("SD 1.5 at real size needs a CUDA GPU (minutes per image on a CPU); use --config tiny to check.")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    components = sd15_components(device, dtype) if args.config == "sd15" else sd.tiny_components().to(device)
    size = 512 if args.config == "sd15" else 64
    prompt, settings = "a photo of a cat", {"guidance_scale": 7.5, "num_steps": args.steps, "progress": False}
    noise = torch.randn(1, 4, size // 8, size // 8, device=device, generator=torch.Generator(device).manual_seed(0))
    figures = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu", "config": args.config,
               "torch": torch.__version__, "dtype": str(dtype), "size": size, "steps": args.steps}
    for fast in (False, True):
        first, steady = timed(lambda f=fast: sd.text_to_image(components, prompt, latents=noise, fast=f, **settings),
                              device, args.repeats)
        figures[f"ours{'_fast' if fast else ''}_s_per_image"], figures[f"ours{'_fast' if fast else ''}_warmup_s"] = (
            steady, first - steady)

    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=components.vae, text_encoder=components.text_encoder,
                                   tokenizer=components.tokenizer, unet=components.unet, scheduler=components.scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    run_pipe = lambda: pipe(prompt, latents=noise.to(dtype), guidance_scale=7.5, num_inference_steps=args.steps)  # noqa: E731
    first, steady = timed(run_pipe, device, args.repeats)
    figures["diffusers_s_per_image"], figures["diffusers_warmup_s"] = steady, first - steady
    figures["sampling_peak_gib"] = peak_gib(
        lambda: sd.text_to_image(components, prompt, latents=noise, **settings), device)

    images = torch.rand(2, 3, size, size, device=device) * 2 - 1  # one instance image, one class image
    config = TrainConfig(steps=args.lora_steps, batch_size=1, lr=1e-4, warmup_steps=0, log_every=1)
    precision = Precision(device.type, dtype, dtype == torch.float16, "a T4's: fp16 autocast + GradScaler")
    for checkpointing in (False, True):
        fresh = sd15_components(device, dtype) if args.config == "sd15" else sd.tiny_components().to(device)

        def lora_training(c=fresh, g=checkpointing):
            sd.dreambooth_lora(c, images[:1], "a photo of sks dog", config, class_images=images[1:],
                               class_prompt="a photo of a dog", rank=4, gradient_checkpointing=g,
                               precision=precision, progress=False)

        suffix = "_checkpointing" if checkpointing else ""
        start = time.perf_counter()
        figures[f"lora_peak_gib{suffix}"] = peak_gib(lora_training, device)
        figures[f"lora_s_per_step{suffix}"] = (time.perf_counter() - start) / args.lora_steps
        del fresh, lora_training
    figures["ratio_ours_vs_diffusers"] = figures["diffusers_s_per_image"] / figures["ours_s_per_image"]
    figures["ratio_ours_fast_vs_diffusers"] = figures["diffusers_s_per_image"] / figures["ours_fast_s_per_image"]
    for key, value in figures.items():
        print(f"{key:>32}: {value:.3f}" if isinstance(value, float) else f"{key:>32}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    # A fast path that fell back to the eager path would be timed as the fast path: stop instead.
    warnings.simplefilter("error", FastPathWarning)
    main()
