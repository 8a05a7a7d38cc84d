"""The loops written on the notebooks' pages are the package's loops: same seed, same result, bit for bit on a CPU.

Notebooks 03 and 04 write Algorithm 1 (training), Algorithm 2 (DDPM sampling) and the DDIM sampler, notebook 05
the autoencoder's loss, notebook 06 cross-attention, classifier-free guidance and text to image, notebook 07 LoRA's
forward and DreamBooth's two-term loss, notebook 08 Stable Diffusion's sampler, as short functions a learner reads and
changes, each in a code cell tagged "loop-on-the-page". These tests run that very cell source (read from the notebook,
so an edit there is tested here) on tiny models, and compare the result with ``train``, ``ddpm_sample``,
``ddim_sample``, ``VAELoss``, ``CrossAttention``, ``guided_denoiser``, ``generate``, ``LoRALinear``,
``train(extra_terms=...)`` and ``sd.text_to_image`` (bit for bit where the arithmetic is the same, to float rounding
where the package batches it differently).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcourse import EMA, Shapes, ddim_sample, ddim_step, ddpm_sample, ddpm_step, learning_rate, timesteps, train
from dlcourse.finetune import LoRALinear, captioned, prior_preservation
from dlcourse.models import (
    VAE,
    CrossAttention,
    TextConditionedUNet,
    TextEncoder,
    Tokenizer,
    UNet,
    UNetConfig,
    VAEConfig,
    VAELoss,
)
from dlcourse.sampling import generate, guided_denoiser
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig, ddpm_loss
from dlcourse.training.loop import TERM_SEED_STRIDE

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TAG = "loop-on-the-page"
# What the loop cells may use besides builtins: the imports at the top of their notebooks.
NAMESPACE = {
    "torch": torch, "F": F, "nn": nn, "EMA": EMA, "learning_rate": learning_rate, "timesteps": timesteps,
    "ddpm_step": ddpm_step, "ddim_step": ddim_step, "ddim_sample": ddim_sample, "guided_denoiser": guided_denoiser,
    "ddpm_loss": ddpm_loss,
}  # fmt: skip


def loop_from_notebook(notebook: str, name: str):
    """The function ``name`` defined by the tagged cell of ``notebook``, run from the cell's own source."""
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    cells = [c for c in nb.cells if TAG in c.metadata.get("tags", []) and f"def {name}(" in c.source]
    assert len(cells) == 1, f"{notebook}: expected one cell tagged {TAG!r} defining {name}(), found {len(cells)}"
    namespace = dict(NAMESPACE)
    exec(compile(cells[0].source, f"{notebook}:{name}", "exec"), namespace)  # the learner's code, as written
    return namespace[name]


def tiny_unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    config = UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                        zero_init=False)  # fmt: skip
    return UNet(config)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("prediction_type, schedule_name", [("v", "cosine"), ("eps", "linear")])
def test_notebook_03_training_loop_equals_train(prediction_type, schedule_name):
    train_by_hand = loop_from_notebook("03_ddpm_training.ipynb", "train_by_hand")
    data = Shapes(resolution=16, seed=0, device="cpu").batch(0, 64).images
    schedule = NoiseSchedule.from_name(schedule_name, 200)
    config = TrainConfig(steps=6, batch_size=8, lr=1e-3, betas=(0.9, 0.95), warmup_steps=3, ema_decay=0.9, seed=3,
                         prediction_type=prediction_type)  # fmt: skip

    by_hand = tiny_unet()
    losses, ema = train_by_hand(by_hand, data, schedule, config)
    result = train(tiny_unet(), data, schedule, config, device="cpu", progress=False)

    for (name, a), b in zip(result.model.state_dict().items(), by_hand.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"weights differ at {name}"
    for (name, a), b in zip(result.ema_model.state_dict().items(), ema.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), f"EMA weights differ at {name}"
    assert result.loss_history == losses
    changed = dataclasses.replace(config, grad_clip=None)  # the test can fail: another setting, other weights
    other = train(tiny_unet(), data, schedule, changed, device="cpu", progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(other.model.parameters(), by_hand.parameters(), strict=True))


@pytest.mark.parametrize("num_steps", [10, 50])
def test_notebook_03_sampling_loop_equals_ddpm_sample(num_steps):
    ddpm_by_hand = loop_from_notebook("03_ddpm_training.ipynb", "ddpm_by_hand")
    model, schedule = tiny_unet().eval(), NoiseSchedule.from_name("cosine", 50)
    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ours = ddpm_by_hand(model, schedule, x_T, num_steps, "v", torch.Generator().manual_seed(1))
    theirs = ddpm_sample(model, schedule, x_T, num_steps=num_steps, prediction_type="v", clip_x0=(-1, 1),
                         generator=torch.Generator().manual_seed(1), progress=False)  # fmt: skip
    assert torch.equal(ours, theirs)
    other = ddpm_by_hand(model, schedule, x_T, num_steps, "v", torch.Generator().manual_seed(2))
    assert not torch.equal(ours, other)


@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_notebook_04_ddim_loop_equals_ddim_sample(eta):
    ddim_by_hand = loop_from_notebook("04_ddim_sampling.ipynb", "ddim_by_hand")
    model, schedule = tiny_unet().eval(), NoiseSchedule.from_name("cosine", 100)
    x_T = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ours = ddim_by_hand(model, schedule, x_T, 10, eta, "eps", torch.Generator().manual_seed(1))
    theirs = ddim_sample(model, schedule, x_T, num_steps=10, eta=eta, prediction_type="eps", clip_x0=(-1, 1),
                         generator=torch.Generator().manual_seed(1), progress=False)  # fmt: skip
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("kl_weight", [1e-6, 1e-2])
def test_notebook_05_vae_loss_equals_vae_loss(kl_weight):
    vae_loss_by_hand = loop_from_notebook("05_latent_diffusion.ipynb", "vae_loss_by_hand")
    torch.manual_seed(0)
    vae = VAE(VAEConfig(resolution=16, base_channels=8, groups=4))
    x = Shapes(resolution=16, seed=0).batch(0, 4).images
    ours = vae_loss_by_hand(vae, x, kl_weight, torch.Generator().manual_seed(1))
    theirs = VAELoss(kl_weight=kl_weight, reconstruction="mse")(vae, x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=0.0)
    other = vae_loss_by_hand(vae, x, kl_weight, torch.Generator().manual_seed(2))  # another z, another loss
    assert not torch.equal(ours, other)
    ours.backward()  # the trick lets gradients reach the encoder through the sample
    assert vae.conv_moments.weight.grad.abs().sum() > 0


def test_notebook_06_cross_attention_equals_the_package_and_ignores_padding():
    cross_attention_by_hand = loop_from_notebook("06_classifier_free_guidance.ipynb", "cross_attention_by_hand")
    torch.manual_seed(0)
    block = CrossAttention(channels=16, context_dim=8, num_heads=4).eval()
    nn.init.normal_(block.proj_out.weight)  # a non-trivial output, so a wrong mix of values shows
    h, context = torch.randn(2, 16, 4, 4), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    with torch.no_grad():
        ours = cross_attention_by_hand(block, h, context, mask)
        torch.testing.assert_close(ours, block(h, context, mask), rtol=1e-5, atol=1e-5)
        garbage = context.clone()
        garbage[0, 3:] = 100.0  # what sits in the padding must not matter
        torch.testing.assert_close(cross_attention_by_hand(block, h, garbage, mask), ours)
        assert not torch.allclose(cross_attention_by_hand(block, h, context, torch.ones_like(mask)), ours)


@pytest.mark.parametrize("scale", [0.0, 1.0, 7.5])
def test_notebook_06_guidance_equals_the_batched_guided_denoiser(scale):
    guided_by_hand = loop_from_notebook("06_classifier_free_guidance.ipynb", "guided_by_hand")
    torch.manual_seed(0)
    unet = UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                           context_dim=8, num_heads=2, zero_init=False)).eval()  # fmt: skip
    context, mask = torch.randn(3, 5, 8), torch.tensor([[True] * 3 + [False] * 2] * 3)
    null, null_mask = torch.randn(1, 5, 8), torch.tensor([[True] + [False] * 4])
    x_t, t = torch.randn(3, 3, 16, 16), torch.tensor([10, 50, 90])
    with torch.no_grad():
        ours = guided_by_hand(unet, context, mask, null, null_mask, scale)(x_t, t)
        theirs = guided_denoiser(unet, context, null, scale, context_mask=mask, uncond_mask=null_mask)(x_t, t)
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
        other = guided_by_hand(unet, context, mask, null, null_mask, scale + 1.0)(x_t, t)
    assert not torch.allclose(ours, other)


def test_notebook_06_text_to_image_equals_generate():
    generate_by_hand = loop_from_notebook("06_classifier_free_guidance.ipynb", "generate_by_hand")
    torch.manual_seed(0)
    unet = UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                           context_dim=16, num_heads=2, zero_init=False))  # fmt: skip
    tokenizer = Tokenizer.for_shapes()
    model = TextConditionedUNet(unet, TextEncoder(len(tokenizer), 12, dim=16, depth=1, num_heads=2)).eval()
    sampling = {"schedule": NoiseSchedule.from_name("cosine", 100), "prediction_type": "v", "num_steps": 5,
                "clip_x0": (-1, 1), "guidance_scale": 3.0}  # fmt: skip
    prompts = ["a red circle", "a small blue cross on the left"]
    ours = generate_by_hand(model, tokenizer, prompts, negative_prompt="a green", seed=3, **sampling)
    package = generate(model, tokenizer, prompts, negative_prompt="a green", seed=3, **sampling)
    torch.testing.assert_close(ours, package, rtol=0, atol=0)
    other = generate_by_hand(model, tokenizer, prompts, seed=3, **sampling)  # no negative prompt
    assert not torch.allclose(ours, other)


def test_notebook_07_lora_equals_the_package():
    lora_by_hand = loop_from_notebook("07_lora_dreambooth.ipynb", "lora_by_hand")
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(12, 6), rank=3, alpha=5.0)
    nn.init.normal_(layer.lora_up.weight)
    layer.scale = 0.7
    x = torch.randn(4, 12)
    with torch.no_grad():
        torch.testing.assert_close(lora_by_hand(layer, x), layer(x), rtol=1e-5, atol=1e-6)
        layer.scale = 0.0
        torch.testing.assert_close(lora_by_hand(layer, x), layer.base(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prior_weight", [0.0, 1.0])
def test_notebook_07_dreambooth_loss_is_the_first_step_of_train_with_prior_preservation(prior_weight):
    dreambooth_loss = loop_from_notebook("07_lora_dreambooth.ipynb", "dreambooth_loss")
    torch.manual_seed(0)
    unet = UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                           context_dim=16, num_heads=2, zero_init=False))  # fmt: skip
    tokenizer = Tokenizer.for_shapes()
    model = TextConditionedUNet(unet, TextEncoder(len(tokenizer), 12, dim=16, depth=1, num_heads=2))
    schedule = NoiseSchedule.from_name("cosine", 100)
    images = Shapes(resolution=16, seed=0).batch(0, 10).images
    instance = captioned(images[:4], "a red circle", tokenizer)
    prior = prior_preservation(images[4:], "a triangle", tokenizer, weight=prior_weight)
    config = TrainConfig(steps=1, batch_size=3, warmup_steps=1, prediction_type="v", seed=5)
    first = train(copy.deepcopy(model), instance, schedule, config, extra_terms=[prior], progress=False)
    first = first.loss_history[0]
    generators = [torch.Generator().manual_seed(5 + k * TERM_SEED_STRIDE) for k in (0, 1)]
    with torch.no_grad():
        ours = dreambooth_loss(model.train(), schedule, "v", instance, prior.data, prior_weight, 3, *generators)
    assert ours.item() == pytest.approx(first, rel=1e-6)
    other = [torch.Generator().manual_seed(6 + k * TERM_SEED_STRIDE) for k in (0, 1)]
    with torch.no_grad():
        assert dreambooth_loss(model, schedule, "v", instance, prior.data, prior_weight, 3, *other).item() != first


# The scheduler settings of SD 1.5 (eps, "leading" + 1, ending on alpha_bar_0), of SD 2.x at 768 px (the same with v),
# and a v-model with "trailing" steps ending on alpha_bar = 1: the loop on the page must follow each. 5 steps divide
# T = 1000, where diffusers' DDIMScheduler steps between the timesteps it visits for every spacing (ddim_sample's note).
SD_SCHEDULERS = {
    "sd15_eps": {},
    "sd2_v": {"prediction_type": "v_prediction"},
    "v_trailing": {"prediction_type": "v_prediction", "timestep_spacing": "trailing", "steps_offset": 0,
                   "set_alpha_to_one": True},
}  # fmt: skip


@pytest.mark.parametrize("scheduler", list(SD_SCHEDULERS))
def test_notebook_08_sd_loop_equals_the_package_and_diffusers(scheduler):
    pytest.importorskip("diffusers")
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from dlcourse import sd

    sd_by_hand = loop_from_notebook("08_stable_diffusion.ipynb", "sd_by_hand")
    components = sd.tiny_components(seed=0)
    components.scheduler = DDIMScheduler.from_config(components.scheduler.config, **SD_SCHEDULERS[scheduler])
    settings = components.sampler_settings()
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    prompts = ["a photo of a red cat", "a house"]
    context, uncond = sd.encode_prompt(components, prompts), sd.encode_prompt(components, ["", ""])
    ours = sd_by_hand(components.unet, components.schedule(), settings, context, uncond, noise, 7.5, 5)
    package = sd.text_to_image(components, prompts, latents=noise, guidance_scale=7.5, num_steps=5, output="latent",
                               progress=False)
    pipe = StableDiffusionPipeline(vae=components.vae, text_encoder=components.text_encoder,
                                   tokenizer=components.tokenizer, unet=components.unet,
                                   scheduler=components.scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompts, latents=noise, guidance_scale=7.5, num_inference_steps=5, output_type="latent").images
    tolerance = 1e-5 * theirs.abs().max().item()
    torch.testing.assert_close(ours, package, rtol=1e-5, atol=tolerance)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=tolerance)
    other = sd_by_hand(components.unet, components.schedule(), settings, context, uncond, noise, 3.0, 5)
    assert not torch.allclose(ours, other)
    # The settings matter: the same loop read as SD 1.5's (eps) lands elsewhere for a v-model, and vice versa.
    flipped = dict(settings, prediction_type="eps" if settings["prediction_type"] == "v" else "v")
    wrong = sd_by_hand(components.unet, components.schedule(), flipped, context, uncond, noise, 7.5, 5)
    assert (wrong - theirs).abs().max() > 100 * tolerance
