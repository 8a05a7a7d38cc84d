"""Text conditioning: a tokenizer for the Shapes captions and a small transformer text encoder.

Stable Diffusion turns a prompt into CLIP tokens (a 49,408-word BPE vocabulary, 77 positions) and CLIP's
transformer turns those into one 768-d embedding per token, which the U-Net reads through cross-attention. Ours
is the same pipeline at the size of the Shapes world: one token per word of the captions' vocabulary, a start
token in front (so even the empty prompt has one real token), padding to a fixed length with a mask that marks
the real tokens, and a transformer of a few layers trained together with the U-Net.

    "a red circle"  ->  ids  [<start>, a, red, circle, <pad>, ...]    (B, L)
                        mask [True,    True, True, True, False, ...]  (B, L)
                    ->  TextEncoder  ->  embeddings (B, L, dim)

The empty prompt "" is the unconditional input of classifier-free guidance: [<start>, <pad>, ...].

Taught in notebooks/06_classifier_free_guidance.ipynb: "From a prompt to tokens", "The text encoder" and "Teaching
notebook 03's model to read" (:meth:`TextConditionedUNet.from_unconditional`).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from dlcourse.argument_checks import check_device
from dlcourse.data.captions import captions_from_attributes
from dlcourse.data.world import ATTRIBUTES
from dlcourse.models.text_checks import (
    check_from_unconditional,
    check_prompt_words,
    check_prompts,
    check_text_encoder_args,
    check_text_encoder_inputs,
    check_text_unet,
    check_token_ids,
    check_tokenizer_args,
    check_weights_map,
)

__all__ = ["PAD", "START", "TextConditionedUNet", "TextEncoder", "Tokenizer"]

PAD, START = "<pad>", "<start>"


def _words(prompt: str) -> list[str]:
    """Lower-cased words of a prompt; commas and full stops are ignored."""
    return prompt.lower().replace(",", " ").replace(".", " ").split()


class Tokenizer:
    """Words to ids and back, for a fixed vocabulary; ``encode`` pads every prompt to ``max_length`` tokens.

    vocabulary: the known words (the special tokens <pad> = 0 and <start> = 1 come first).
    max_length: tokens per prompt, the start token included.
    """

    def __init__(self, vocabulary: Sequence[str], max_length: int = 12):
        words = check_tokenizer_args(vocabulary, max_length, (PAD, START), _words)  # unique, no special tokens
        self.vocabulary = [PAD, START, *words]
        self.ids = {word: i for i, word in enumerate(self.vocabulary)}
        self.max_length = max_length

    @classmethod
    def for_shapes(cls, max_length: int = 12) -> Tokenizer:
        """The words of every Shapes caption ("a small red circle at the top left" and the rest)."""
        grids = [torch.arange(len(values)) for values in ATTRIBUTES.values()]
        combos = torch.tensor(list(itertools.product(*(g.tolist() for g in grids))))
        captions = captions_from_attributes(dict(zip(ATTRIBUTES, combos.T, strict=True)))
        return cls(sorted({word for caption in captions for word in _words(caption)}), max_length)

    def __len__(self) -> int:
        return len(self.vocabulary)

    def encode(self, prompts: str | Sequence[str], device: str | torch.device | None = None) -> tuple[Tensor, Tensor]:
        """ids (B, max_length) long and mask (B, max_length) bool (True = a real token) for the prompts.

        Raises a ValueError for an unknown word (naming the closest known words) or a prompt that is too long.
        """
        prompts = check_prompts(prompts)  # a single prompt becomes a list of one
        check_device("Tokenizer.encode", "device", device)
        ids = torch.full((len(prompts), self.max_length), self.ids[PAD], dtype=torch.long)
        for row, prompt in enumerate(prompts):
            words = _words(prompt)
            check_prompt_words(prompt, words, self.vocabulary, self.max_length)
            ids[row, : len(words) + 1] = torch.tensor([self.ids[START], *(self.ids[w] for w in words)])
        return ids.to(device), (ids != self.ids[PAD]).to(device)

    def decode(self, ids: Tensor) -> list[str]:
        """The prompts (B,) back from ids (B, L): the words, without the special tokens."""
        return [" ".join(self.vocabulary[i] for i in row if i > 1) for row in check_token_ids(ids, len(self))]


class TextEncoder(nn.Module):
    """Token and position embeddings, then pre-norm transformer layers: ids (B, L), mask (B, L) -> (B, L, dim).

    Padding positions are masked out of every attention, so the embeddings of the real tokens do not depend on
    how much padding follows them.
    """

    def __init__(self, vocab_size: int, max_length: int, dim: int = 64, depth: int = 2, num_heads: int = 4):
        check_text_encoder_args(vocab_size, max_length, dim, depth, num_heads)
        super().__init__()
        self.max_length, self.dim = max_length, dim
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Parameter(torch.randn(max_length, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            dim, num_heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids (B, L) long and mask (B, L) bool (True = a real token), L <= max_length -> embeddings (B, L, dim)."""
        check_text_encoder_inputs(ids, mask, self.max_length, self.position_embedding.device)
        x = self.token_embedding(ids) + self.position_embedding[: ids.shape[1]]
        return self.norm(self.layers(x, src_key_padding_mask=~mask))


class TextConditionedUNet(nn.Module):
    """A :class:`~dlcourse.models.UNet` with cross-attention and the :class:`TextEncoder` that feeds it, trained
    together: ``model(x_t, t, ids, mask)`` -> the U-Net's output (B, C, H, W).

    ids, mask: (B, L) from :meth:`Tokenizer.encode`. ``config`` is the U-Net's (its in_channels and resolution
    are what the training loop checks the data against). For sampling with guidance, encode the prompts once
    (:meth:`encode_prompts`) and call ``model.unet`` with the embeddings at every step.
    """

    def __init__(self, unet: nn.Module, text_encoder: TextEncoder):
        check_text_unet(unet, text_encoder, TextEncoder)
        super().__init__()
        self.unet, self.text_encoder, self.config = unet, text_encoder, unet.config

    @classmethod
    def from_unconditional(cls, unet: nn.Module, text_encoder: TextEncoder) -> TextConditionedUNet:
        """A text-conditioned copy of a trained unconditional U-Net: the same weights, plus cross-attention.

        The new U-Net has ``unet``'s config with ``context_dim = text_encoder.dim``; every weight of ``unet`` is
        copied, and the cross-attention layers are new, with their output projections at zero, so the copy starts
        out predicting exactly what ``unet`` predicts, whatever the prompt (a "zero" start, as ControlNet and
        GLIGEN add conditioning to a trained model). ``unet`` itself is not changed.
        """
        check_from_unconditional(unet, text_encoder, TextEncoder)
        config = dataclasses.replace(unet.config, context_dim=text_encoder.dim, zero_init=True)
        conditioned = type(unet)(config).to(next(unet.parameters()).device)
        missing, unexpected = conditioned.load_state_dict(unet.state_dict(), strict=False)
        check_weights_map(missing, unexpected)
        return cls(conditioned, text_encoder)

    def encode_prompts(self, ids: Tensor, mask: Tensor) -> Tensor:
        """Token embeddings (B, L, dim) of tokenised prompts: the U-Net's context."""
        return self.text_encoder(ids, mask)

    def forward(self, x: Tensor, t: Tensor, ids: Tensor, mask: Tensor) -> Tensor:
        return self.unet(x, t, context=self.encode_prompts(ids, mask), context_mask=mask)
