"""Textual inversion (only the new word's embedding trains) and DreamBooth's prior preservation (lambda = 0 is the
instance loss alone) on a tiny text-conditioned model."""

from __future__ import annotations

import pytest
import torch

from dlcourse.data import Shapes
from dlcourse.finetune import add_concept_token, captioned, prior_preservation
from dlcourse.models import TextConditionedUNet, TextEncoder, Tokenizer, UNet, UNetConfig
from dlcourse.schedules import NoiseSchedule
from dlcourse.training import TrainConfig, train

SCHEDULE = NoiseSchedule.from_name("cosine", 100)


def _model(seed: int = 0) -> tuple[TextConditionedUNet, Tokenizer]:
    torch.manual_seed(seed)
    tokenizer = Tokenizer.for_shapes()
    unet = UNet(UNetConfig(resolution=16, base_channels=16, channel_mults=(1, 2), attention_resolutions=(8,),
                           context_dim=16, num_heads=2, zero_init=False))  # fmt: skip
    return TextConditionedUNet(unet, TextEncoder(len(tokenizer), 12, dim=16, depth=1, num_heads=2)), tokenizer


def test_textual_inversion_trains_only_the_new_words_embedding():
    model, tokenizer = _model()
    old_ids, old_mask = tokenizer.encode(["a red circle", ""])
    with torch.no_grad():
        before_embeddings = model.encode_prompts(old_ids, old_mask)
    tokenizer, new_row = add_concept_token(tokenizer, model.text_encoder, "sks", init_word="triangle")
    assert tokenizer.ids["sks"] == len(tokenizer) - 1 and new_row.shape == (1, 16)
    with torch.no_grad():  # the old words embed as before (to float rounding: frozen layers take other kernels)
        after_embeddings = model.encode_prompts(*tokenizer.encode(["a red circle", ""]))
        torch.testing.assert_close(after_embeddings, before_embeddings, rtol=1e-5, atol=1e-6)
        rows = model.text_encoder.token_embedding(torch.tensor([[tokenizer.ids["triangle"], tokenizer.ids["sks"]]]))
        assert torch.equal(rows[0, 0], rows[0, 1])  # the new word starts as "triangle"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    images = Shapes(resolution=16, seed=0).batch(0, 8).images
    train(model, captioned(images, "a sks", tokenizer), SCHEDULE, TrainConfig(steps=3, batch_size=4, lr=1e-2,
          warmup_steps=1), trainable=[new_row], progress=False)  # fmt: skip
    after = model.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == ["text_encoder.token_embedding.new"], changed


def test_textual_inversion_refuses_known_words_and_unknown_starting_words():
    model, tokenizer = _model()
    with pytest.raises(ValueError, match="already in the vocabulary"):
        add_concept_token(tokenizer, model.text_encoder, "circle", init_word="triangle")
    with pytest.raises(ValueError, match="init_word"):
        add_concept_token(tokenizer, model.text_encoder, "sks", init_word="hexagon")
    add_concept_token(tokenizer, model.text_encoder, "sks", init_word="triangle")
    with pytest.raises(ValueError, match="already has a concept token"):
        add_concept_token(tokenizer, model.text_encoder, "zwx", init_word="triangle")


def test_dreambooth_with_lambda_zero_is_the_instance_loss_alone():
    _, tokenizer = _model()  # (the identifier word would be added with add_concept_token; any prompt will do here)
    instance = captioned(Shapes(resolution=16, seed=0).batch(0, 4).images, "a large triangle", tokenizer)
    class_images = Shapes(resolution=16, seed=1).batch(0, 16).images
    config = TrainConfig(steps=3, batch_size=2, lr=1e-3, warmup_steps=1)
    plain = train(_model()[0], instance, SCHEDULE, config, progress=False)
    zero = train(_model()[0], instance, SCHEDULE, config, progress=False,
                 extra_terms=[prior_preservation(class_images, "a triangle", tokenizer, weight=0.0)])  # fmt: skip
    one = train(_model()[0], instance, SCHEDULE, config, progress=False,
                extra_terms=[prior_preservation(class_images, "a triangle", tokenizer, weight=1.0)])  # fmt: skip
    for a, b in zip(plain.model.parameters(), zero.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert zero.loss_history == plain.loss_history
    assert not all(torch.equal(a, b) for a, b in zip(plain.model.parameters(), one.model.parameters(), strict=True))
    with pytest.raises(ValueError, match="class_prompt"):
        prior_preservation(class_images, "", tokenizer)
    with pytest.raises(ValueError, match="one prompt or one per image"):
        captioned(class_images, ["a triangle"] * 3, tokenizer)
