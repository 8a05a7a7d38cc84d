"""Tests for dlcourse.models.text: the Shapes tokenizer (padding, mask, errors) and the text encoder."""

from __future__ import annotations

import pytest
import torch

from dlcourse.data import Shapes
from dlcourse.models.text import PAD, START, TextEncoder, Tokenizer


def test_the_shapes_vocabulary_covers_every_caption_and_round_trips():
    tokenizer = Tokenizer.for_shapes()
    assert tokenizer.vocabulary[:2] == [PAD, START]
    for word in ("circle", "magenta", "small", "left", "centre", "at", "the"):
        assert word in tokenizer.ids
    captions = Shapes(resolution=16, seed=0).batch(0, 64).captions
    ids, mask = tokenizer.encode(captions)
    assert ids.shape == mask.shape == (64, tokenizer.max_length) and ids.dtype == torch.long
    assert tokenizer.decode(ids) == [" ".join(c.lower().split()) for c in captions]
    assert (ids[:, 0] == tokenizer.ids[START]).all() and torch.equal(mask, ids != tokenizer.ids[PAD])


def test_case_and_commas_are_ignored_and_the_empty_prompt_is_one_start_token():
    tokenizer = Tokenizer.for_shapes()
    a, mask_a = tokenizer.encode("A Red, circle.")
    b, _ = tokenizer.encode(["a red circle"])
    assert torch.equal(a, b) and mask_a.sum() == 4
    empty, mask = tokenizer.encode("")
    assert empty[0, 0] == tokenizer.ids[START] and mask.tolist() == [[True] + [False] * (tokenizer.max_length - 1)]


def test_unknown_words_name_the_close_known_ones_and_long_prompts_are_refused():
    tokenizer = Tokenizer.for_shapes(max_length=6)
    with pytest.raises(ValueError, match=r"'circel': did you mean circle"):
        tokenizer.encode("a red circel")
    with pytest.raises(ValueError, match="never seen"):
        tokenizer.encode("a purple unicorn")
    with pytest.raises(ValueError, match="at most 5"):
        tokenizer.encode("a small red circle at the top left")
    with pytest.raises(ValueError, match="never seen"):
        tokenizer.encode("a <pad> circle")


def test_the_padding_mask_makes_embeddings_independent_of_the_padding_length():
    torch.manual_seed(0)
    short, long = Tokenizer.for_shapes(max_length=10), Tokenizer.for_shapes(max_length=16)
    encoder = TextEncoder(len(short), max_length=16, dim=32, depth=2, num_heads=4).eval()
    prompts = ["a red circle", "", "a small blue cross on the left"]
    (ids_s, mask_s), (ids_l, mask_l) = short.encode(prompts), long.encode(prompts)
    with torch.no_grad():
        out_s, out_l = encoder(ids_s, mask_s), encoder(ids_l, mask_l)
    assert out_s.shape == (3, 10, 32) and out_l.shape == (3, 16, 32)
    torch.testing.assert_close(out_s[mask_s], out_l[mask_l], rtol=1e-5, atol=1e-6)
    other = encoder(*long.encode(["a red square"] + prompts[1:]))  # another word, another embedding
    assert not torch.allclose(other[0, :4], out_l[0, :4])


def test_the_encoder_refuses_mismatched_inputs():
    encoder = TextEncoder(20, max_length=8, dim=16, depth=1, num_heads=2)
    with pytest.raises(ValueError, match="L <= 8"):
        encoder(torch.zeros(2, 9, dtype=torch.long), torch.ones(2, 9, dtype=torch.bool))
    with pytest.raises(ValueError, match="same shape"):
        encoder(torch.zeros(2, 8, dtype=torch.long), torch.ones(2, 7, dtype=torch.bool))
