"""dlcourse.sd refuses bad arguments with an error that names the argument (dlcourse/sd/checks.py and
finetune_checks.py), on the toy components of dlcourse.sd.tiny: no download. Every call here fails in its checks,
before any sampling."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from dlcourse import sd  # noqa: E402
from dlcourse.training import TrainConfig  # noqa: E402

BAD = (TypeError, ValueError)
IMAGE = torch.zeros(1, 3, 64, 64)


@pytest.fixture(scope="module")
def components():
    return sd.tiny_components(seed=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"image": torch.zeros(1, 3, 60, 60)}, r"image must have a height and width .*crop to 56x56 or 64x64"),
        ({"image": torch.zeros(3, 64, 64)}, r"image must be .*image\[None\]"),
        ({"image": torch.zeros(1, 4, 64, 64)}, r"image must be a float tensor of images \(N, 3, H, W\)"),
        ({"image": torch.full((1, 3, 64, 64), 255.0)}, r"image must be images in \[-1, 1\]"),
        ({"image": torch.full((1, 3, 64, 64), math.nan)}, r"image must be images in \[-1, 1\]"),
        ({"prompt": None}, "prompt must be a string or a list"),
        ({"prompt": []}, "prompt must be"),
        ({"prompt": ["a cat", 3]}, "prompt must be"),
        ({"prompt": ["a cat", "a dog"]}, "prompt must be one prompt per image"),
        ({"negative_prompt": ["blurry", "dark"]}, "negative_prompt must be one string for all or 1"),
        ({"strength": 0.0}, r"strength must be a finite number > 0 and <= 1"),
        ({"strength": 1.5}, "strength must be"),
        ({"strength": math.nan}, "strength must be"),
        ({"strength": "0.5"}, "strength must be"),
        ({"guidance_scale": math.nan}, "guidance_scale must be a finite number"),
        ({"num_steps": 0}, "num_steps must be an integer from 1 to 1000"),
        ({"num_steps": 10.0}, "num_steps must be an integer"),
        ({"generator": 0}, "generator must be None or a torch.Generator"),
        ({"fast": "yes"}, "fast must be True or False"),
        ({"progress": None}, "progress must be True or False"),
        ({"components": "sd15"}, "components must be SDComponents"),
    ],
)
def test_img2img_names_the_bad_argument(components, kwargs, match):
    args = {"components": components, "image": IMAGE, "prompt": "a cat", "progress": False} | kwargs
    with pytest.raises(BAD, match=match):
        sd.img2img(**args)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"height": 60}, r"height must be a multiple of 8 .* 56 or 64"),
        ({"width": 4}, "width must be an integer >= 8"),
        ({"width": 64.0}, "width must be an integer"),
        ({"eta": 2.0}, "eta must be a number in"),
        ({"eta": math.nan}, "eta must be"),
        ({"guidance_scale": math.inf}, "guidance_scale must be a finite number"),
        ({"latents": torch.zeros(1, 3, 8, 8)}, r"latents must be a float tensor of images \(N, 4, H, W\)"),
        ({"latents": torch.zeros(2, 4, 8, 8)}, "latents must hold one starting noise per prompt"),
        ({"latents": torch.zeros(1, 4, 8, 8), "height": 128}, "height=128 disagrees with latents"),
        ({"negative_prompt": 3}, "negative_prompt must be"),
        ({"output": "png"}, "output must be 'image' or 'latent'"),
        ({"prompt": ("a cat", None)}, "prompt must be"),
    ],
)
def test_text_to_image_names_the_bad_argument(components, kwargs, match):
    args = {"components": components, "prompt": "a cat", "progress": False} | kwargs
    with pytest.raises(BAD, match=match):
        sd.text_to_image(**args)


def test_the_pipeline_pieces_name_the_bad_argument(components):
    with pytest.raises(TypeError, match="prompt must be"):
        sd.encode_prompt(components, 5)
    with pytest.raises(TypeError, match="components must be SDComponents"):
        sd.encode_prompt(None, "a cat")
    with pytest.raises(ValueError, match="images must have a height and width that are multiples of 8"):
        sd.encode_images(components, torch.zeros(1, 3, 60, 64))
    with pytest.raises(TypeError, match="generator must be"):
        sd.encode_images(components, IMAGE, generator=3)
    with pytest.raises(ValueError, match=r"latents must be a float tensor of images \(N, 4, H, W\)"):
        sd.decode_latents(components, IMAGE)
    with pytest.raises(TypeError, match="num_steps must be an integer"):
        sd.img2img_start("10", 0.5)
    with pytest.raises(ValueError, match="strength must be"):
        sd.img2img_start(10, math.nan)
    with pytest.raises(TypeError, match="unet must be a torch.nn.Module"):
        sd.SDUNet(components)
    unet = sd.SDUNet(components.unet)
    x, t = torch.zeros(2, 4, 8, 8), torch.tensor([10, 20])
    with pytest.raises(ValueError, match=r"context must be prompt embeddings \(B, 77, 32\) with B = 2"):
        unet(x, t, torch.zeros(2, 77, 16))
    with pytest.raises(ValueError, match=r"x_t must be latents \(B, 4, h, w\)"):
        unet(torch.zeros(2, 3, 8, 8), t, torch.zeros(2, 77, 32))


def test_loading_and_toy_components_name_the_bad_argument(components):
    with pytest.raises(TypeError, match="model_id must be a path"):
        sd.load_components(3)
    with pytest.raises(ValueError, match="model_id must be"):
        sd.load_components("  ")
    with pytest.raises(TypeError, match="model_id must be"):
        sd.stable_diffusion(3)
    with pytest.raises(ValueError, match="dtype must be None or a floating torch.dtype"):
        sd.load_components("some/model", dtype=torch.int8)
    with pytest.raises(ValueError, match="device must be a device such as"):
        sd.stable_diffusion(None, device="gpu")
    with pytest.raises(TypeError, match="local_files_only must be True or False"):
        sd.load_components("some/model", local_files_only="yes")
    with pytest.raises(ValueError, match="device must be"):
        components.to("gpu")
    with pytest.raises(ValueError, match="dtype must be"):
        components.to("cpu", torch.int8)
    parts = {"tokenizer": components.tokenizer, "text_encoder": components.text_encoder, "unet": components.unet,
             "vae": components.vae, "scheduler": components.scheduler, "source": "test"}  # fmt: skip
    for name, bad, match in (("unet", "unet.safetensors", "unet must be a torch.nn.Module"),
                             ("scheduler", None, "scheduler must be a diffusers scheduler"),
                             ("tokenizer", 3, "tokenizer must be a CLIPTokenizer"),
                             ("source", None, "source must be a string")):  # fmt: skip
        with pytest.raises(TypeError, match=match):
            sd.SDComponents(**parts | {name: bad})
    with pytest.raises(ValueError, match=r"image_size must be a multiple of 8 .* 56 or 64"):
        sd.tiny_components(image_size=60)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        sd.tiny_components(seed=-1)
    with pytest.raises(ValueError, match="max_length must be an integer >= 2"):
        sd.tiny_tokenizer(max_length=1)


def test_lora_functions_name_the_bad_argument(tmp_path):
    from safetensors.torch import save_file

    components = sd.tiny_components(seed=1)
    unet = components.unet
    with pytest.raises(ValueError, match="rank must be an integer >= 1"):
        sd.inject_sd_lora(unet, rank=0)
    with pytest.raises(ValueError, match="alpha must be a finite number > 0"):
        sd.inject_sd_lora(unet, alpha=math.nan)
    with pytest.raises(TypeError, match="unet must be a torch.nn.Module"):
        sd.inject_sd_lora(components)
    name = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # Linear(32, 32)
    save_file({f"unet.{name}.lora_A.weight": torch.zeros(4, 7), f"unet.{name}.lora_B.weight": torch.zeros(32, 4)},
              str(tmp_path / "other.safetensors"))  # fmt: skip
    with pytest.raises(ValueError, match=r"do not fit unet's Linear\(32, 32\)"):
        sd.load_sd_lora(unet, tmp_path / "other.safetensors")
    save_file({"unet.no.such.layer.lora_A.weight": torch.zeros(4, 32),
               "unet.no.such.layer.lora_B.weight": torch.zeros(32, 4)}, str(tmp_path / "missing.safetensors"))
    with pytest.raises(ValueError, match="unet lacks Linear layers the file has"):
        sd.load_sd_lora(unet, tmp_path / "missing.safetensors")
    assert not any(type(m).__name__ == "LoRALinear" for m in unet.modules())  # refused before touching the U-Net
    sd.inject_sd_lora(unet, rank=2)
    path = sd.save_sd_lora(unet, tmp_path / "ok.safetensors")
    with pytest.raises(ValueError, match="unet already has LoRA layers"):
        sd.load_sd_lora(unet, path)
    with pytest.raises(TypeError, match="path must be a path"):
        sd.save_sd_lora(unet, None)
    with pytest.raises(ValueError, match="components.unet already has LoRA layers"):
        sd.dreambooth_lora(components, IMAGE, "a photo of sks dog", TrainConfig(steps=1, batch_size=1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"instance_images": torch.zeros(2, 3, 60, 60)}, "instance_images must have a height and width"),
        ({"instance_images": torch.zeros(2, 3, 64, 64) + 2}, r"instance_images must be images in \[-1, 1\]"),
        ({"instance_prompt": ""}, "instance_prompt must be a non-empty string"),
        ({"instance_prompt": ["a photo of sks dog"]}, "instance_prompt must be a non-empty string"),
        ({"config": {"steps": 1}}, "config must be a dlcourse.training.TrainConfig"),
        ({"class_images": torch.zeros(2, 3, 64, 64)}, "needs both class_images and class_prompt"),
        ({"class_images": torch.zeros(2, 3, 32, 32), "class_prompt": "a dog"}, "class_images must have the instance"),
        ({"prior_weight": math.nan}, "prior_weight must be a finite number >= 0"),
        ({"rank": 0}, "rank must be an integer >= 1"),
        ({"gradient_checkpointing": 1}, "gradient_checkpointing must be True or False"),
        ({"precision": "fp16"}, "precision must be None or a dlcourse.runtime.Precision"),
    ],
)
def test_dreambooth_lora_names_the_bad_argument_before_encoding(components, kwargs, match):
    args = {"components": components, "instance_images": torch.zeros(2, 3, 64, 64),
            "instance_prompt": "a photo of sks dog", "config": TrainConfig(steps=1, batch_size=1)} | kwargs
    with pytest.raises(BAD, match=match):
        sd.dreambooth_lora(**args)


def test_a_photo_folder_names_the_files_it_cannot_use(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), (255, 0, 0)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "photo.heic").write_bytes(b"\0\1")
    with pytest.warns(UserWarning, match=r"skipped 2 file\(s\) .*: notes.txt, photo.heic"):
        assert sd.load_image_folder(tmp_path, 16).shape == (1, 3, 16, 16)
    (tmp_path / "notes.txt").unlink()
    (tmp_path / "photo.heic").unlink()
    (tmp_path / "broken.jpg").write_text("a web page saved as .jpg")
    with pytest.raises(ValueError, match=r"cannot be read as images: broken.jpg \(UnidentifiedImageError\)"):
        sd.load_image_folder(tmp_path, 16)
    with pytest.raises(ValueError, match="size must be an integer >= 8"):
        sd.load_image_folder(tmp_path, 0)
    with pytest.raises(TypeError, match="size must be an integer"):
        sd.load_image_folder(tmp_path, "512")
    with pytest.raises(TypeError, match="folder must be a path"):
        sd.load_image_folder(None, 64)
    with pytest.raises(FileNotFoundError, match="folder must be a folder of 3-20 photos"):
        sd.load_image_folder(tmp_path / "a.png", 64)
