"""The loops written on the notebooks' pages are the package's loops: same seed, same result, bit for bit on a CPU.

Notebooks 03 and 04 write Algorithm 1 (training), Algorithm 2 (DDPM sampling) and the DDIM sampler, notebook 05
the autoencoder's loss, notebook 06 cross-attention and classifier-free guidance, notebook 07 LoRA's forward and
notebook 08 Stable Diffusion's sampler, as short functions a learner reads and changes, each in a code cell tagged
"loop-on-the-page". These tests run that very cell source (read from the notebook, so an edit there is tested here) on
tiny models, and compare the result with ``train``, ``ddpm_sample``, ``ddim_sample``, ``VAELoss``, ``CrossAttention``,
``guided_denoiser``, ``LoRALinear`` and ``sd.text_to_image`` (bit for bit where the arithmetic is the same, to float
rounding where the package batches it differently).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlcourse import EMA, Shapes, ddim_sample, ddim_step, ddpm_sample, ddpm_step, learning_rate, timesteps, train
from dlcourse.finetune import LoRALinear
from dlcourse.models import VAE, CrossAttention, UNet, UNetConfig, VAEConfig, VAELoss
from dlcourse.sampling import guided_denoiser
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TAG = "loop-on-the-page"
# What the loop cells may use besides builtins: the imports at the top of their notebooks.
NAMESPACE = {
    "torch": torch, "F": F, "nn": nn, "EMA": EMA, "learning_rate": learning_rate, "timesteps": timesteps,
    "ddpm_step": ddpm_step, "ddim_step": ddim_step,
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


def test_notebook_08_sd_loop_equals_the_package():
    pytest.importorskip("diffusers")
    from dlcourse import sd

    sd_by_hand = loop_from_notebook("08_stable_diffusion.ipynb", "sd_by_hand")
    components = sd.tiny_components(seed=0)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    prompts = ["a photo of a red cat", "a house"]
    context, uncond = sd.encode_prompt(components, prompts), sd.encode_prompt(components, ["", ""])
    ours = sd_by_hand(components.unet, components.schedule(), context, uncond, noise, 7.5, 6)
    package = sd.text_to_image(components, prompts, latents=noise, guidance_scale=7.5, num_steps=6, output="latent",
                               progress=False)
    torch.testing.assert_close(ours, package, rtol=1e-5, atol=1e-5 * package.abs().max().item())
    other = sd_by_hand(components.unet, components.schedule(), context, uncond, noise, 3.0, 6)
    assert not torch.allclose(ours, other)
