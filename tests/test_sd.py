"""dlcourse.sd: our loop over Stable Diffusion's components equals diffusers' pipelines; our LoRA in SD's attention.

Every test runs on tiny random components built locally (dlcourse.sd.tiny): no download, no weights.
"""

import copy

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionPipeline  # noqa: E402

from dlcourse import sd  # noqa: E402
from dlcourse.finetune import lora_parameters, merge_lora, unmerge_lora  # noqa: E402
from dlcourse.sampling import ddim_sample, guided_denoiser  # noqa: E402
from dlcourse.training import TrainConfig  # noqa: E402

PROMPTS = ["a photo of a red cat", "a watercolor painting of a house"]
NEGATIVES = ["blurry", "ugly dark"]


@pytest.fixture(scope="module")
def components():
    return sd.tiny_components(seed=0)


def _pipeline(components, cls=StableDiffusionPipeline, unet=None):
    pipe = cls(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
        unet=unet or components.unet, scheduler=components.scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _close(ours, theirs, rtol=1e-5):
    """Equal to float tolerance relative to the tensors' scale (a random U-Net's latents reach tens)."""
    scale = theirs.abs().max().item()
    assert (ours - theirs).abs().max().item() <= rtol * max(scale, 1.0), ((ours - theirs).abs().max(), scale)


def test_tokenizer_is_clip_bpe_with_the_words_whole(components):
    tokens = components.tokenizer.tokenize("a photo of sks dog, zebra")
    assert tokens[:5] == ["a</w>", "photo</w>", "of</w>", "sks</w>", "dog</w>"]
    assert "zebra</w>" not in tokens and len(tokens) > 6  # an unknown word splits into pieces, never <unk>
    assert sd.encode_prompt(components, PROMPTS).shape == (2, 77, 32)


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_text_to_image_equals_the_diffusers_pipeline(components, eta):
    pipe = _pipeline(components)
    theirs = pipe(
        PROMPTS, negative_prompt=NEGATIVES, guidance_scale=5.0, num_inference_steps=10, eta=eta,
        generator=torch.Generator().manual_seed(0), output_type="latent",
    ).images
    ours = sd.text_to_image(
        components, PROMPTS, NEGATIVES, guidance_scale=5.0, num_steps=10, eta=eta,
        generator=torch.Generator().manual_seed(0), output="latent", progress=False,
    )
    _close(ours, theirs)
    images = pipe(
        PROMPTS, negative_prompt=NEGATIVES, guidance_scale=5.0, num_inference_steps=10, eta=eta,
        generator=torch.Generator().manual_seed(0), output_type="pt",
    ).images
    _close(sd.decode_latents(components, ours) / 2 + 0.5, images, rtol=1e-4)


def test_the_final_step_setting_matters(components):
    """SD's scheduler ends on alpha_bar_0 (set_alpha_to_one=False); ending on 1 instead is measurably different, so
    the parity above checks the setting."""
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    denoiser = guided_denoiser(sd.SDUNet(components.unet), sd.encode_prompt(components, PROMPTS),
                               sd.encode_prompt(components, ["", ""]), 5.0)
    settings = components.sampler_settings()
    outs = []
    for to_one in (False, True):
        settings["set_alpha_to_one"] = to_one
        outs.append(ddim_sample(denoiser, components.schedule(), latents, num_steps=10, progress=False, **settings))
    assert (outs[0] - outs[1]).abs().max() > 1e-3
    with pytest.raises(ValueError, match="steps_offset=1"):
        ddim_sample(denoiser, components.schedule(), latents, num_steps=10, set_alpha_to_one=False,
                    timestep_spacing="leading", progress=False)  # leading without the offset ends on t=0 twice


@pytest.mark.parametrize("strength", [0.3, 0.75, 1.0])
def test_img2img_equals_the_diffusers_pipeline(components, strength):
    image = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))  # [0, 1], as the pipeline takes it
    theirs = _pipeline(components, StableDiffusionImg2ImgPipeline)(
        PROMPTS, image=image, negative_prompt=NEGATIVES, strength=strength, guidance_scale=4.0,
        num_inference_steps=10, generator=torch.Generator().manual_seed(3), output_type="pt",
    ).images
    ours = sd.img2img(
        components, image * 2 - 1, PROMPTS, NEGATIVES, strength=strength, guidance_scale=4.0, num_steps=10,
        generator=torch.Generator().manual_seed(3), progress=False,
    )
    _close(ours / 2 + 0.5, theirs, rtol=1e-4)


def test_img2img_strength_and_inputs_are_checked(components):
    assert sd.img2img_start(50, 1.0) == 0 and sd.img2img_start(50, 0.3) == 35
    with pytest.raises(ValueError, match="0 steps"):
        sd.img2img_start(10, 0.05)
    with pytest.raises(ValueError, match="strength must be"):
        sd.img2img_start(10, 1.5)
    with pytest.raises(ValueError, match=r"images \* 2 - 1"):
        sd.encode_images(components, torch.rand(1, 3, 64, 64) * 255)
    with pytest.raises(ValueError, match="one prompt per image"):
        sd.img2img(components, torch.zeros(2, 3, 64, 64), "one prompt", progress=False)
    with pytest.raises(ValueError, match="height must be a multiple of 8"):
        sd.text_to_image(components, "a cat", height=60, progress=False)


def test_components_describe_sd_and_the_latent_compression(components):
    assert components.vae_scale_factor == 8 and components.scaling_factor == pytest.approx(0.18215)
    assert components.prediction_type == "eps"
    assert components.sampler_settings() == {
        "prediction_type": "eps", "timestep_spacing": "leading", "steps_offset": 1, "set_alpha_to_one": False,
    }
    latents = sd.encode_images(components, torch.zeros(1, 3, 64, 64), torch.Generator().manual_seed(0))
    assert latents.shape == (1, 4, 8, 8) and 3 * 64 * 64 / latents[0].numel() == 48


def _trained_lora_components(steps=40):
    components = sd.tiny_components(seed=0)
    base = copy.deepcopy(components.unet)
    g = torch.Generator().manual_seed(0)
    images, class_images = torch.rand(4, 3, 64, 64, generator=g) * 2 - 1, torch.rand(6, 3, 64, 64, generator=g) * 2 - 1
    config = TrainConfig(steps=steps, batch_size=2, lr=1e-2, warmup_steps=1, log_every=10, ema_decay=0.9)
    result = sd.dreambooth_lora(components, images, "a photo of sks dog", config, class_images=class_images,
                                class_prompt="a photo of a dog", rank=4, progress=False)
    return components, base, result


@pytest.fixture(scope="module")
def trained():
    return _trained_lora_components()


def _unet_out(unet, components):
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        return unet(x, torch.tensor([700, 30]), encoder_hidden_states=sd.encode_prompt(components, PROMPTS)).sample


def test_lora_in_sd_attention_trains_only_lora(trained):
    components, base, result = trained
    names = [n for n, m in components.unet.named_modules() if type(m).__name__ == "LoRALinear"]
    blocks = [n for n, m in components.unet.named_modules() if type(m).__name__ == "BasicTransformerBlock"]
    expected = {f"{b}.{attn}.{proj}" for b in blocks for attn in ("attn1", "attn2")
                for proj in ("to_q", "to_k", "to_v", "to_out.0")}
    assert set(names) == expected and len(blocks) == 4  # 8 projections in each transformer block
    losses = result.loss_history
    assert sum(losses[-10:]) / 10 < 0.9 * sum(losses[:10]) / 10  # the LoRA learns the few images
    lora_ids = {id(p) for p in lora_parameters(components.unet)}
    before = dict(base.named_parameters())
    frozen = [(name, p) for name, p in components.unet.named_parameters() if id(p) not in lora_ids]
    assert len(frozen) == len(before)
    for name, p in frozen:
        assert torch.equal(p, before[name.replace(".base.", ".")]), f"{name} changed: only LoRA may train"
    assert all(p.dtype == torch.float32 for p in lora_parameters(components.unet))


def test_lora_file_loads_in_diffusers_and_back_into_ours(trained, tmp_path):
    components, base, _ = trained
    ours = _unet_out(components.unet, components)
    assert (ours - _unet_out(base, components)).abs().max() > 1e-3  # the LoRA changed the model
    path = sd.save_sd_lora(components.unet, tmp_path / "sks.safetensors")
    assert path.stat().st_size < 0.05 * sum(p.numel() * 4 for p in base.parameters())
    pipe = _pipeline(components, unet=copy.deepcopy(base))
    pipe.load_lora_weights(str(path))  # diffusers' own loader (peft) reads our file
    _close(_unet_out(pipe.unet, components), ours)
    fresh = copy.deepcopy(base)
    assert sorted(sd.load_sd_lora(fresh, path)) == sorted(n for n, _ in fresh.named_modules()
                                                          if type(_).__name__ == "LoRALinear")
    _close(_unet_out(fresh, components), ours, rtol=0)
    merge_lora(components.unet)
    try:
        _close(_unet_out(components.unet, components), ours)
        with pytest.raises(ValueError, match="unmerge_lora"):
            sd.save_sd_lora(components.unet, tmp_path / "merged.safetensors")
    finally:
        unmerge_lora(components.unet)


def test_lora_alpha_is_folded_into_the_file(tmp_path):
    components = sd.tiny_components(seed=1)
    base = copy.deepcopy(components.unet)
    sd.inject_sd_lora(components.unet, rank=2, alpha=8.0)
    with torch.no_grad():
        for p in lora_parameters(components.unet):
            p.normal_(0, 0.05)
    path = sd.save_sd_lora(components.unet, tmp_path / "a.safetensors")
    pipe = _pipeline(components, unet=base)
    pipe.load_lora_weights(str(path))
    _close(_unet_out(pipe.unet, components), _unet_out(components.unet, components))


def test_dreambooth_inputs_are_checked(tmp_path):
    components = sd.tiny_components(seed=0)
    with pytest.raises(ValueError, match="both class_images and class_prompt"):
        sd.dreambooth_lora(components, torch.zeros(2, 3, 64, 64), "sks", TrainConfig(steps=1),
                           class_images=torch.zeros(2, 3, 64, 64))
    with pytest.raises(FileNotFoundError, match="photos of your subject"):
        sd.load_image_folder(tmp_path / "missing", 64)
    with pytest.raises(ValueError, match="no images"):
        sd.load_image_folder(tmp_path, 64)
    with pytest.raises(FileNotFoundError, match="save_sd_lora"):
        sd.load_sd_lora(components.unet, tmp_path / "none.safetensors")


def test_image_folder_is_resized_and_centre_cropped(tmp_path):
    from PIL import Image

    Image.new("RGB", (120, 80), (255, 0, 0)).save(tmp_path / "wide.png")
    Image.new("RGB", (50, 90), (0, 0, 255)).save(tmp_path / "tall.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.warns(UserWarning, match="skipped 1 file.*notes.txt"):  # named, not silently dropped
        images = sd.load_image_folder(tmp_path, 32)
    assert images.shape == (2, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    assert images[1, 0].mean() > 0.9 and images[0, 2].mean() > 0.9  # sorted: tall.JPG (blue), wide.png (red)


def test_loading_offline_says_what_to_do(capsys):
    with pytest.raises(sd.SDLoadError, match="huggingface-cli download"):
        sd.load_components("no-such-owner/no-such-model", local_files_only=True)
    fallback = sd.stable_diffusion("no-such-owner/no-such-model", local_files_only=True)
    assert fallback.source.startswith("tiny") and "Falling back" in capsys.readouterr().out
    assert sd.stable_diffusion(None).source.startswith("tiny") and "smoke mode" in capsys.readouterr().out


def test_a_wrong_id_and_a_gated_model_say_what_to_do():
    import httpx
    import huggingface_hub.errors as hub

    from dlcourse.sd.components import _diagnose

    response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/api/models/typo/sd"))
    wrapped = OSError("diffusers wraps the hub's error")
    wrapped.__cause__ = hub.RepositoryNotFoundError("404", response=response)
    message = _diagnose("typo/sd", wrapped)
    assert "Check the id" in message and sd.DEFAULT_MODEL_ID in message
    gated = hub.GatedRepoError("401", response=response)
    assert "accept the licence" in _diagnose("some/gated-model", gated)
    assert "huggingface-cli login" in _diagnose("some/gated-model", gated)


def test_the_real_size_bench_runs_on_toy_components(tmp_path):
    """bench/sd_real_size.py measures SD 1.5 on a GPU; on toy components it runs anywhere, so it cannot rot."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "bench" / "sd_real_size.py"
    out = tmp_path / "figures.json"
    subprocess.run([sys.executable, str(script), "--config", "tiny", "--steps", "2", "--repeats", "1",
                    "--lora-steps", "1", "--json", str(out)], check=True, capture_output=True, timeout=300)
    figures = json.loads(out.read_text())
    for key in ("ours_s_per_image", "ours_fast_s_per_image", "diffusers_s_per_image", "lora_s_per_step",
                "lora_s_per_step_checkpointing", "ratio_ours_vs_diffusers"):
        assert figures[key] > 0, key


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fp16_on_a_gpu_matches_diffusers_and_the_fast_path_matches_eager():
    components = sd.tiny_components(seed=0).to("cuda", torch.float16)
    noise = torch.randn(2, 4, 8, 8, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    settings = {"guidance_scale": 5.0, "num_steps": 10, "output": "latent", "progress": False}
    eager = sd.text_to_image(components, PROMPTS, NEGATIVES, latents=noise, **settings)
    fast = sd.text_to_image(components, PROMPTS, NEGATIVES, latents=noise, fast=True, **settings)
    _close(fast, eager, rtol=1e-3)
    theirs = _pipeline(components)(PROMPTS, negative_prompt=NEGATIVES, latents=noise.half(), guidance_scale=5.0,
                                   num_inference_steps=10, output_type="latent").images
    _close(eager, theirs.float(), rtol=2e-2)  # fp16 latents between steps there, float32 here
