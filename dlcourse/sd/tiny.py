"""Stable Diffusion's four components at toy size with random weights, built locally: no download, no weights.

Tests and notebook 08's smoke mode use them: the same classes and the same wiring as SD 1.5 (a CLIP BPE tokenizer and
text encoder, a UNet2DConditionModel with cross-attention, a KL autoencoder that downsamples 8x into 4 channels, the
DDIM scheduler with SD's settings), a few layers each, so a full 50-step pipeline runs in about a second on a CPU.
Their pictures are noise, since nothing is trained; their *numbers* are what the parity tests compare.

The tokenizer's vocabulary is written here: the 256 byte-level characters (alone and word-final, so any text
tokenizes), the two special tokens, and one token per word of :data:`WORDS`, made by BPE merges of its prefixes.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from dlcourse.argument_checks import check_int, check_path
from dlcourse.sd.checks import check_tiny
from dlcourse.sd.components import SDComponents, require_sd_packages

__all__ = ["WORDS", "tiny_components", "tiny_tokenizer"]

WORDS = (
    "a photo of an the in on with and painting drawing style oil watercolor red blue green yellow black white "
    "cat dog sks person face portrait landscape mountain lake city street house tree flower sky night sunset "
    "small large bright dark blurry ugly beautiful detailed"
).split()


def _byte_characters() -> list[str]:
    """GPT-2 / CLIP's byte-level alphabet: one printable character per byte value (256)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def tiny_tokenizer(directory: str | Path | None = None, max_length: int = 77):
    """A CLIPTokenizer over a small vocabulary written to ``directory`` (a temporary folder by default)."""
    require_sd_packages()
    from transformers import CLIPTokenizer

    if directory is not None:
        check_path("tiny_tokenizer", "directory", directory)
    check_int("tiny_tokenizer", "max_length", max_length, 2, fix="Positions per prompt, start and end tokens included.")

    chars = _byte_characters()
    vocab: dict[str, int] = {}
    for token in chars + [c + "</w>" for c in chars]:
        vocab.setdefault(token, len(vocab))
    merges: list[str] = []
    for word in WORDS:  # BPE merges that build each word from its characters, left to right
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:
            merge = f"{pieces[0]} {pieces[1]}"
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            if merge not in merges:
                merges.append(merge)
                vocab.setdefault(pieces[0], len(vocab))
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    directory = Path(tempfile.mkdtemp(prefix="tiny_clip_") if directory is None else directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return CLIPTokenizer.from_pretrained(directory, model_max_length=max_length)


def tiny_components(seed: int = 0, image_size: int = 64) -> SDComponents:
    """SD 1.5's components at toy size, random weights drawn from ``seed``; images of image_size px (8x smaller
    latents, 4 channels: the same 48x compression as SD's 512 px -> 4x64x64)."""
    require_sd_packages()
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    check_tiny(seed, image_size)
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length, hidden_act="quick_gelu",
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=image_size // 8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 16, 32, 32), layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8,
        sample_size=image_size,
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )  # Stable Diffusion 1.5's scheduler settings
    for module in (text_encoder, unet, vae):
        module.eval().requires_grad_(False)
    return SDComponents(tokenizer, text_encoder, unet, vae, scheduler, source="tiny random components (no weights)")
