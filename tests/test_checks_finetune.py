"""dlcourse.finetune refuses bad arguments with an error that names the argument (dlcourse/finetune/checks.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dlcourse.finetune import (
    ExtendedEmbedding,
    LoRAConv2d,
    LoRALinear,
    add_concept_token,
    captioned,
    inject_lora,
    load_adapter,
    lora_layers,
    lora_parameters,
    merge_lora,
    prior_preservation,
    save_adapter,
    set_lora_scale,
    unmerge_lora,
)
from dlcourse.models import TextEncoder, Tokenizer

BAD = (TypeError, ValueError)


class _Block(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.attn = nn.Module()
        self.attn.qkv, self.attn.proj_out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.conv = nn.Conv2d(3, width, 3)
        self.depthwise = nn.Conv2d(width, width, 3, groups=width)


class _Net(nn.Module):
    """Layers named like the course U-Net's attention ("block.attn.qkv"), a conv, and a depthwise conv."""

    def __init__(self, width: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.block = _Block(width)

    def forward(self, x):
        return self.block.attn.proj_out(self.block.attn.qkv(x)[..., : x.shape[-1]])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"targets": "*attn*"}, "targets must be a list or tuple of strings; got the string .* letter by letter"),
        ({"targets": []}, "targets must be"),
        ({"targets": ["*.qkv", 3]}, "targets must be"),
        ({"rank": 0}, "rank must be an integer"),
        ({"rank": 2.0}, "rank must be an integer"),
        ({"rank": True}, "rank must be an integer"),
        ({"rank": 9}, r"rank must be an integer from 1 to 8"),  # above the smaller side of Linear(8, 8)
        ({"alpha": math.nan}, "alpha must be a finite number"),
        ({"alpha": -1.0}, "alpha must be a finite number > 0"),
        ({"dtype": torch.int64}, "dtype must be"),
        ({"dtype": "float16"}, "dtype must be"),
        ({"targets": ["*.depthwise"]}, "groups=8 convolution"),
        ({"targets": ["*.nothing"]}, "match no Linear or Conv2d layer"),
    ],
)
def test_inject_lora_refuses_bad_arguments_before_touching_the_model(kwargs, match):
    model = _Net()
    with pytest.raises(BAD, match=match):
        inject_lora(model, **{"rank": 2, "targets": ["*.attn.*", "*.conv"]} | kwargs)
    assert not lora_layers(model) and all(p.requires_grad for p in model.parameters())  # untouched


def test_lora_layers_check_their_base_and_settings():
    with pytest.raises(TypeError, match="base must be an nn.Linear"):
        LoRALinear(nn.Conv2d(3, 8, 3), rank=2)
    with pytest.raises(ValueError, match="base must be a groups=1 convolution"):
        LoRAConv2d(nn.Conv2d(8, 8, 3, groups=2), rank=2)
    with pytest.raises(ValueError, match="alpha must be"):
        LoRALinear(nn.Linear(8, 8), rank=2, alpha=math.inf)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        inject_lora("unet")


@pytest.mark.parametrize("call", [merge_lora, unmerge_lora, lora_parameters, lambda m: set_lora_scale(m, 0.5)])
def test_lora_functions_refuse_a_model_without_lora(call):
    with pytest.raises(ValueError, match="model has no LoRA layers; call inject_lora"):
        call(_Net())
    with pytest.raises(TypeError, match=r"^(merge_lora|unmerge_lora|lora_parameters|set_lora_scale): model must be"):
        call(lora_parameters)  # a function, not the model


@pytest.mark.parametrize(("scale", "error"), [(math.nan, ValueError), (math.inf, ValueError), ("1", TypeError),
                                              (None, TypeError), (True, TypeError)])  # fmt: skip
def test_set_lora_scale_refuses_a_scale_that_is_not_a_finite_number(scale, error):
    model = _Net()
    inject_lora(model, rank=2, targets=["*.attn.*"])
    with pytest.raises(error, match="scale must be a finite number"):
        set_lora_scale(model, scale)
    set_lora_scale(model, -0.5)  # a negative scale is allowed: it subtracts the update


def _trained(width: int = 8, rank: int = 2) -> _Net:
    model = _Net(width)
    inject_lora(model, rank=rank, targets=["*.attn.*"])
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_up.weight.normal_()
    return model


def test_load_adapter_refuses_a_merged_model_and_adapters_of_another_model(tmp_path):
    path = save_adapter(_trained(), tmp_path / "a.pt")
    merged = _trained()
    with torch.no_grad():
        merged.block.attn.qkv.lora_up.weight.zero_()
    merge_lora(merged)
    with pytest.raises(ValueError, match=r"model's LoRA layers are merged.*unmerge_lora\(model\) first"):
        load_adapter(merged, path)
    unmerge_lora(merged)
    load_adapter(merged, path)  # unmerged, the same layers: the adapter's weights are loaded into them
    x = torch.randn(2, 8)
    fresh = _Net()
    load_adapter(fresh, path)
    with torch.no_grad():
        assert torch.equal(merged(x), fresh(x))
    with pytest.raises(ValueError, match="do not fit model's layer of 16 -> 48"):
        load_adapter(_Net(width=16), path)
    with pytest.raises(ValueError, match="differ from the adapter's"):
        load_adapter(_trained(rank=4), path)
    with pytest.raises(TypeError, match="path must be a path"):
        load_adapter(_Net(), None)
    with pytest.raises(FileNotFoundError, match="path must be a file that exists.*save_adapter"):
        load_adapter(_Net(), tmp_path / "missing.pt")
    with pytest.raises(TypeError, match="path must be a path"):
        save_adapter(_trained(), 3)
    with pytest.raises(TypeError, match="model must be"):
        save_adapter(lora_layers(_trained()), tmp_path / "b.pt")


def _text():
    tokenizer = Tokenizer.for_shapes()
    torch.manual_seed(0)
    return tokenizer, TextEncoder(len(tokenizer), 12, dim=16, depth=1, num_heads=2)


@pytest.mark.parametrize(
    ("word", "init_word", "error", "match"),
    [
        ("sks dog", "triangle", ValueError, r"word must be one word .* splits into \['sks', 'dog'\]"),
        ("sks.", "triangle", ValueError, "word must be one word"),
        ("", "triangle", ValueError, "word must be one word"),
        ("<pad>", "triangle", ValueError, "word must be one word"),
        (7, "triangle", TypeError, "word must be a single word"),
        ("circle", "triangle", ValueError, "word 'circle' is already in the vocabulary"),
        ("sks", "hexagon", ValueError, "init_word must be a word of the vocabulary"),
        ("sks", "<start>", ValueError, "init_word must be a word of the vocabulary"),
        ("sks", None, TypeError, "init_word must be"),
    ],
)
def test_add_concept_token_needs_one_new_word_and_a_known_one(word, init_word, error, match):
    tokenizer, encoder = _text()
    with pytest.raises(error, match=match):
        add_concept_token(tokenizer, encoder, word, init_word)
    assert isinstance(encoder.token_embedding, nn.Embedding)  # untouched


def test_add_concept_token_checks_the_tokenizer_and_encoder_and_the_new_rows():
    tokenizer, encoder = _text()
    with pytest.raises(TypeError, match="tokenizer must be a dlcourse Tokenizer"):
        add_concept_token(["a", "b"], encoder, "sks", "triangle")
    with pytest.raises(TypeError, match="text_encoder must be"):
        add_concept_token(tokenizer, nn.Linear(2, 2), "sks", "triangle")
    with pytest.raises(ValueError, match="text_encoder has 19 token rows"):
        add_concept_token(tokenizer, TextEncoder(19, 12, dim=16, depth=1, num_heads=2), "sks", "triangle")
    new_tokenizer, _ = add_concept_token(tokenizer, encoder, "SKS", "triangle")  # one word, any case
    assert new_tokenizer.encode("a sks triangle")[0][0, 2] == len(new_tokenizer) - 1
    with pytest.raises(ValueError, match="new must be a float tensor \\(n, 16\\)"):
        ExtendedEmbedding(nn.Embedding(5, 16), torch.zeros(1, 8))
    with pytest.raises(TypeError, match="base must be an nn.Embedding"):
        ExtendedEmbedding(nn.Linear(5, 16), torch.zeros(1, 16))


@pytest.mark.parametrize(
    ("images", "prompts", "error", "match"),
    [
        (torch.zeros(3, 16, 16), "a triangle", ValueError, r"images must be .*images\[None\]"),
        ([torch.zeros(3, 16, 16)], "a triangle", TypeError, "images must be a float tensor"),
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "a triangle", ValueError, "images must be a float tensor"),
        (torch.zeros(2, 3, 16, 16), ["a triangle"] * 3, ValueError, "prompts must be one string for all or 2"),
        (torch.zeros(2, 3, 16, 16), ["a triangle", None], TypeError, "prompts must be"),
        (torch.zeros(2, 3, 16, 16), 5, TypeError, "prompts must be"),
    ],
)
def test_captioned_checks_images_and_prompts(images, prompts, error, match):
    with pytest.raises(error, match=match):
        captioned(images, prompts, Tokenizer.for_shapes())


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"class_images": torch.zeros(1, 3, 16, 16)}, ValueError, "class_images must be .* N >= 2"),
        ({"class_prompt": ""}, ValueError, "class_prompt must name the class"),
        ({"class_prompt": ["a triangle"]}, TypeError, "class_prompt must be"),
        ({"tokenizer": None}, TypeError, "tokenizer must be"),
        ({"weight": math.nan}, ValueError, "weight must be a finite number >= 0"),
        ({"weight": -1.0}, ValueError, "weight must be a finite number >= 0"),
        ({"batch_size": 0}, ValueError, "batch_size must be an integer from 1 to 4"),
        ({"batch_size": 5}, ValueError, "batch_size must be an integer from 1 to 4"),
        ({"batch_size": 2.0}, TypeError, "batch_size must be an integer"),
    ],
)
def test_prior_preservation_checks_every_argument(kwargs, error, match):
    args = {"class_images": torch.zeros(4, 3, 16, 16), "class_prompt": "a triangle",
            "tokenizer": Tokenizer.for_shapes()} | kwargs  # fmt: skip
    with pytest.raises(error, match=match):
        prior_preservation(**args)
