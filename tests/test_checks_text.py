"""Every argument of dlcourse.models.text (Tokenizer, TextEncoder, TextConditionedUNet) is checked: a non-string
prompt, a vocabulary given as one string, float ids or an integer mask raise an error naming the argument."""

from __future__ import annotations

import pytest
import torch

from dlcourse.models import TextConditionedUNet, TextEncoder, Tokenizer, UNet, UNetConfig


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.for_shapes(max_length=8)


@pytest.mark.parametrize(
    ("prompts", "error", "match"),
    [
        (["a red circle", 3], TypeError, r"prompts\[1\] must be a string[,;] got 3 \(int\)"),
        ([None], TypeError, r"prompts\[0\] must be a string[,;] got None"),
        (3, TypeError, r"prompts must be a string or a list of strings[,;] got 3"),
        ({"a red circle"}, TypeError, r"prompts must be a string or a list of strings"),
        ("a red circel", ValueError, r"prompt 'a red circel' has words .*'circel': did you mean circle"),
        ("a <pad> circle", ValueError, r"has words the text encoder has never seen \('<pad>'\)"),
        ("a small red circle at the top left", ValueError, r"at most 7 \(max_length=8"),
    ],
)
def test_encode_refuses_prompts_that_are_not_known_words(tokenizer, prompts, error, match):
    with pytest.raises(error, match=match):
        tokenizer.encode(prompts)


def test_encode_names_a_bad_device(tokenizer):
    with pytest.raises(ValueError, match=r"device must be a device such as .* got the string 'gpu0'"):
        tokenizer.encode("a red circle", device="gpu0")
    with pytest.raises(TypeError, match=r"device must be a device such as .*[,;] got 0.5"):
        tokenizer.encode("a red circle", device=0.5)


@pytest.mark.parametrize(
    ("ids", "error", "match"),
    [
        (torch.tensor([1, 2, 3]), ValueError, r"ids must be token ids \(B, L\) from Tokenizer.encode \(2-D\)"),
        (torch.tensor([[1.0, 2.0]]), ValueError, r"ids must be an integer tensor \(torch.long\).*torch.float32"),
        (torch.tensor([[1, -1]]), ValueError, r"ids holds \[-1\], outside the vocabulary's ids 0\.\."),
        (torch.tensor([[1, 10_000]]), ValueError, r"ids holds \[10000\]"),
        ([[1, 2]], TypeError, r"ids must be a tensor"),
    ],
)
def test_decode_refuses_ids_outside_the_vocabulary(tokenizer, ids, error, match):
    with pytest.raises(error, match=match):
        tokenizer.decode(ids)


@pytest.mark.parametrize(
    ("vocabulary", "max_length", "error", "match"),
    [
        ("a red circle", 8, TypeError, r"vocabulary must be a list of words[,;] got the string 'a red circle'"),
        (["a", "red circle"], 8, ValueError, r"vocabulary must hold lower-case words .* got 'red circle'"),
        (["a", "Red"], 8, ValueError, r"got 'Red'"),
        (["a", 3], 8, ValueError, r"vocabulary must hold lower-case words .* got 3"),
        ([], 8, ValueError, r"at least one word"),
        (["a"], 1, ValueError, r"max_length must be an integer >= 2[,;] got 1"),
        (["a"], 8.0, TypeError, r"max_length must be an integer >= 2[,;] got 8.0"),
    ],
)
def test_the_tokenizer_checks_its_vocabulary_and_length(vocabulary, max_length, error, match):
    with pytest.raises(error, match=match):
        Tokenizer(vocabulary, max_length)


def test_for_shapes_checks_max_length():
    with pytest.raises(ValueError, match=r"max_length must be an integer >= 2[,;] got 0"):
        Tokenizer.for_shapes(max_length=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"vocab_size": 0}, ValueError, r"vocab_size must be an integer >= 1[,;] got 0"),
        ({"max_length": 8.5}, TypeError, r"max_length must be an integer >= 1[,;] got 8.5"),
        ({"dim": 30}, ValueError, r"dim=30 must be divisible by num_heads=4"),
        ({"depth": -1}, ValueError, r"depth must be an integer >= 1[,;] got -1"),
        ({"num_heads": None}, TypeError, r"num_heads must be an integer >= 1[,;] got None"),
    ],
)
def test_the_text_encoder_checks_its_sizes(kwargs, error, match):
    with pytest.raises(error, match=match):
        TextEncoder(**{"vocab_size": 30, "max_length": 8, "dim": 32, **kwargs})


def test_the_text_encoder_refuses_float_ids_and_integer_masks(tokenizer):
    encoder = TextEncoder(len(tokenizer), tokenizer.max_length, dim=32)
    ids, mask = tokenizer.encode(["a red circle", ""])
    assert encoder(ids, mask).shape == (2, 8, 32)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor .* got dtype torch.int64.*mask.bool\(\)"):
        encoder(ids, mask.long())
    with pytest.raises(ValueError, match=r"ids must be an integer tensor .* got dtype torch.float32"):
        encoder(ids.float(), mask)
    with pytest.raises(TypeError, match=r"mask must be a tensor"):
        encoder(ids, None)
    with pytest.raises(ValueError, match=r"L <= 8"):
        encoder(torch.ones(2, 9, dtype=torch.long), torch.ones(2, 9, dtype=torch.bool))


def test_the_text_conditioned_unet_checks_its_parts():
    unet = UNet(UNetConfig(resolution=8, base_channels=16, channel_mults=(1, 2), attention_resolutions=(),
                           num_res_blocks=1, groups=8, context_dim=32))  # fmt: skip
    encoder = TextEncoder(30, 8, dim=32)
    assert TextConditionedUNet(unet, encoder).config is unet.config
    with pytest.raises(TypeError, match=r"text_encoder must be a TextEncoder"):
        TextConditionedUNet(unet, torch.nn.Embedding(30, 32))
    with pytest.raises(TypeError, match=r"unet must be a UNet"):
        TextConditionedUNet("unet", encoder)
    with pytest.raises(ValueError, match=r"context_dim=32, but the text encoder gives 64-d"):
        TextConditionedUNet(unet, TextEncoder(30, 8, dim=64))
    with pytest.raises(TypeError, match=r"unet must be a dlcourse.models.UNet \(a module with a config\)"):
        TextConditionedUNet.from_unconditional(torch.nn.Conv2d(3, 3, 1), encoder)
    with pytest.raises(ValueError, match=r"already reads a context"):
        TextConditionedUNet.from_unconditional(unet, encoder)
