"""Classifier-free guidance and the text-conditioned U-Net: scales 0 and 1, one batched forward, negative prompts,
condition dropout on prompts, training through the one general loop, and generate() (prompts -> images)."""

from __future__ import annotations

import pytest
import torch

from dlcourse.data import Shapes
from dlcourse.models import TextConditionedUNet, TextEncoder, Tokenizer, UNet, UNetConfig
from dlcourse.sampling import ddim_sample, generate, guidance_scale_from_w, guided_denoiser
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig, train
from dlcourse.training.batches import drop_conditions

PROMPTS = ["a red circle", "a small blue cross on the left", "a large green square at the top"]


def _model(seed: int = 0) -> TextConditionedUNet:
    torch.manual_seed(seed)
    unet = UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                           context_dim=16, num_heads=2, zero_init=False))  # fmt: skip
    return TextConditionedUNet(unet, TextEncoder(len(Tokenizer.for_shapes()), 12, dim=16, depth=1, num_heads=2)).eval()


@pytest.fixture
def setup():
    model, tokenizer = _model(), Tokenizer.for_shapes()
    ids, mask = tokenizer.encode(PROMPTS)
    null_ids, null_mask = tokenizer.encode("")
    with torch.no_grad():
        context, null = model.encode_prompts(ids, mask), model.encode_prompts(null_ids, null_mask)
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(3, 3, 16, 16, generator=g), torch.tensor([10, 500, 990])
    return model, tokenizer, (context, mask), (null, null_mask), x, t


def test_scale_1_is_the_conditional_model_and_0_the_unconditional_one(setup):
    model, _, (context, mask), (null, null_mask), x, t = setup
    with torch.no_grad():
        cond = model.unet(x, t, context=context, context_mask=mask)
        uncond = model.unet(x, t, context=null.expand_as(context), context_mask=null_mask.expand_as(mask))
        at = {s: guided_denoiser(model.unet, context, null, s, context_mask=mask, uncond_mask=null_mask)(x, t)
              for s in (0.0, 1.0, 3.0)}  # fmt: skip
    torch.testing.assert_close(at[1.0], cond, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(at[0.0], uncond, rtol=1e-5, atol=1e-5)
    # The one batched forward of 2B equals the two separate forwards combined by the formula.
    torch.testing.assert_close(at[3.0], uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-5)
    assert (cond - uncond).abs().max() > 1e-3  # the prompt matters, so the checks above can fail
    assert guidance_scale_from_w(0.0) == 1.0 and guidance_scale_from_w(6.5) == 7.5


def test_a_negative_prompt_changes_the_output_and_the_empty_one_does_not(setup):
    model, tokenizer, (context, mask), (null, null_mask), x, t = setup
    negative_ids, negative_mask = tokenizer.encode("a red")
    empty_ids, empty_mask = tokenizer.encode("")
    with torch.no_grad():
        plain = guided_denoiser(model.unet, context, null, 5.0, context_mask=mask, uncond_mask=null_mask)(x, t)
        negative = model.encode_prompts(negative_ids, negative_mask)
        away = guided_denoiser(model.unet, context, negative, 5.0, context_mask=mask, uncond_mask=negative_mask)(x, t)
        empty = model.encode_prompts(empty_ids, empty_mask)
        same = guided_denoiser(model.unet, context, empty, 5.0, context_mask=mask, uncond_mask=empty_mask)(x, t)
    assert (away - plain).abs().max() > 1e-3
    assert torch.equal(same, plain)


def test_guidance_runs_inside_a_sampler_and_refuses_mismatched_contexts(setup):
    model, _, (context, mask), (null, null_mask), x, _ = setup
    guided = guided_denoiser(model.unet, context, null, 3.0, context_mask=mask, uncond_mask=null_mask)
    out = ddim_sample(guided, NoiseSchedule.from_name("cosine", 100), x, num_steps=5, prediction_type="v",
                      progress=False)  # fmt: skip
    assert out.shape == x.shape and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="same L and D"):
        guided_denoiser(model.unet, context, null[:, :5], 3.0)
    with pytest.raises(ValueError, match="both contexts or for neither"):
        guided_denoiser(model.unet, context, null, 3.0, context_mask=mask)
    with pytest.raises(ValueError, match="context_dim=16"):
        TextConditionedUNet(model.unet, TextEncoder(10, 12, dim=8, depth=1, num_heads=2))


def test_condition_dropout_empties_about_p_uncond_of_the_prompts():
    tokenizer = Tokenizer.for_shapes()
    ids, mask = tokenizer.encode(["a small red circle at the top left"] * 4000)
    null_ids, null_mask = tokenizer.encode("")
    dropped = drop_conditions({"ids": ids, "mask": mask}, {"ids": null_ids[0], "mask": null_mask[0]}, 0.2,
                              torch.Generator().manual_seed(0))  # fmt: skip
    empty = (dropped["ids"] == null_ids).all(dim=1)
    assert abs(empty.float().mean().item() - 0.2) < 0.02
    assert torch.equal(dropped["mask"][empty], null_mask.expand(int(empty.sum()), -1))  # ids and mask together
    assert torch.equal(dropped["ids"][~empty], ids[~empty])


def test_the_text_model_trains_through_the_general_loop_with_prompt_dropout():
    tokenizer = Tokenizer.for_shapes()
    batch = Shapes(resolution=16, seed=0).batch(0, 64)
    ids, mask = tokenizer.encode(batch.captions)
    null_ids, null_mask = tokenizer.encode("")
    model = _model().train()
    before = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    result = train(model, {"x0": batch.images, "ids": ids, "mask": mask}, NoiseSchedule.from_name("cosine", 100),
                   TrainConfig(steps=4, batch_size=8, warmup_steps=1, p_uncond=0.1, prediction_type="v"),
                   null_condition={"ids": null_ids[0], "mask": null_mask[0]}, progress=False)  # fmt: skip
    assert len(result.loss_history) == 4
    after = model.text_encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before), "the text encoder trains with the U-Net"


def test_a_text_model_made_from_an_unconditional_one_starts_out_predicting_what_it_predicts():
    torch.manual_seed(0)
    plain = UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                            num_heads=2, zero_init=False)).eval()  # fmt: skip
    weights = {k: v.clone() for k, v in plain.state_dict().items()}
    tokenizer = Tokenizer.for_shapes()
    model = TextConditionedUNet.from_unconditional(plain, TextEncoder(len(tokenizer), 12, dim=16, depth=1,
                                                                      num_heads=2)).eval()  # fmt: skip
    assert model.config.context_dim == 16 and plain.config.context_dim is None
    x, t = torch.randn(3, 3, 16, 16), torch.tensor([5, 50, 95])
    ids, mask = tokenizer.encode(["a red circle", "", "a small blue cross on the left"])
    with torch.no_grad():
        torch.testing.assert_close(model(x, t, ids, mask), plain(x, t), rtol=0, atol=0)
    assert all(torch.equal(weights[k], v) for k, v in plain.state_dict().items()), "the original is untouched"
    with pytest.raises(ValueError, match="already reads a context"):
        TextConditionedUNet.from_unconditional(model.unet, model.text_encoder)


def test_the_text_models_prediction_does_not_depend_on_the_padding_length(setup):
    model, tokenizer, (context, mask), _, x, t = setup
    short_ids, short_mask = Tokenizer.for_shapes(max_length=9).encode(PROMPTS)  # 3 fewer padding tokens
    with torch.no_grad():
        full = model(x, t, *tokenizer.encode(PROMPTS))
        torch.testing.assert_close(model(x, t, short_ids, short_mask), full, rtol=1e-5, atol=1e-5)
        unmasked = model.unet(x, t, context=context, context_mask=None)  # padding attended to: another output
    assert not torch.allclose(unmasked, full, rtol=1e-5, atol=1e-5)


def test_generate_is_guided_ddim_from_the_seeds_noise(setup):
    model, tokenizer, (context, mask), _, _, _ = setup
    schedule = NoiseSchedule.from_name("cosine", 100)
    sampling = {"schedule": schedule, "guidance_scale": 3.0, "prediction_type": "v", "num_steps": 4, "clip_x0": (-1, 1)}
    images = generate(model, tokenizer, PROMPTS, negative_prompt="a red", seed=7, **sampling)
    negative_ids, negative_mask = tokenizer.encode("a red")
    with torch.no_grad():
        away = model.encode_prompts(negative_ids, negative_mask)
    denoise = guided_denoiser(model.unet, context, away, 3.0, context_mask=mask, uncond_mask=negative_mask)
    noise = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    expected = ddim_sample(denoise, schedule, noise, num_steps=4, prediction_type="v", clip_x0=(-1, 1), progress=False)
    assert images.shape == (3, 3, 16, 16)
    torch.testing.assert_close(images, expected, rtol=0, atol=0)
    # The seed fixes the noise: the first prompt alone starts where it started in the batch, another seed elsewhere.
    alone = generate(model, tokenizer, PROMPTS[0], negative_prompt="a red", seed=7, **sampling)
    torch.testing.assert_close(alone, images[:1], rtol=1e-5, atol=1e-5)
    other = generate(model, tokenizer, PROMPTS[0], negative_prompt="a red", seed=8, **sampling)
    assert (other - alone).abs().max() > 1e-2


def test_generate_refuses_what_would_go_wrong_inside_it(setup):
    model, tokenizer, *_ = setup
    sampling = {"schedule": NoiseSchedule.from_name("cosine", 100), "prediction_type": "v", "num_steps": 2}
    with pytest.raises(ValueError, match="training mode"):
        generate(_model().train(), tokenizer, PROMPTS, guidance_scale=3.0, **sampling)
    with pytest.raises(ValueError, match="3 prompts but 2 negative prompts"):
        generate(model, tokenizer, PROMPTS, guidance_scale=3.0, negative_prompt=["a red", "a blue"], **sampling)
    with pytest.raises(ValueError, match="guidance_scale_from_w"):
        generate(model, tokenizer, PROMPTS, guidance_scale=-1.0, **sampling)
    with pytest.raises(ValueError, match="non-empty list of strings"):
        generate(model, tokenizer, [], guidance_scale=3.0, **sampling)
    with pytest.raises(TypeError, match="TextConditionedUNet"):
        generate(model.unet, tokenizer, PROMPTS, guidance_scale=3.0, **sampling)
    with pytest.raises(ValueError, match="never seen"):
        generate(model, tokenizer, "a red circel", guidance_scale=3.0, **sampling)
