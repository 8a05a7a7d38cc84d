"""Textual inversion: teach the text encoder one new word by learning its embedding alone (Gal et al. 2023).

Everything stays frozen (U-Net, text encoder, every existing word) except one new row of the token-embedding table: the
vector of a new word (a rare identifier such as "sks"). Training it on a few images of a concept, with prompts such as
"a sks", finds the point in embedding space that makes the frozen model draw the concept. It is the smallest way to
teach a concept (``dim`` numbers; 768 for Stable Diffusion 1.5) and usually the weakest.

The new row lives in a parameter of its own (:class:`ExtendedEmbedding`), so "only the new row trains" holds by
construction: the old table is a different, frozen tensor that the optimiser never sees.

Used in notebooks/07_lora_dreambooth.ipynb, "A word for the concept" and "Textual inversion: one new word".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dlcourse.finetune.checks import check_concept_token, check_extended_embedding
from dlcourse.models.text import TextEncoder, Tokenizer

__all__ = ["ExtendedEmbedding", "add_concept_token"]


class ExtendedEmbedding(nn.Module):
    """A frozen nn.Embedding of ``V`` rows plus ``new`` (n, dim), trainable rows for ids V .. V + n - 1.

    ids (...) long -> (..., dim).
    """

    def __init__(self, base: nn.Embedding, new: Tensor):
        check_extended_embedding(base, new)
        super().__init__()
        self.base = base.requires_grad_(False)
        self.new = nn.Parameter(new.detach().clone())

    @property
    def num_embeddings(self) -> int:
        return self.base.num_embeddings + self.new.shape[0]

    def forward(self, ids: Tensor) -> Tensor:
        old = ids < self.base.num_embeddings
        out = self.base(torch.where(old, ids, 0))
        return torch.where(old[..., None], out, self.new[(ids - self.base.num_embeddings).clamp(min=0)])


def add_concept_token(
    tokenizer: Tokenizer, text_encoder: TextEncoder, word: str, init_word: str
) -> tuple[Tokenizer, nn.Parameter]:
    """Add ``word`` to the vocabulary and its embedding to ``text_encoder`` (in place), starting from ``init_word``'s.

    Returns the extended tokenizer and the new embedding row (1, dim): the one parameter to train. Freezes the rest of
    the text encoder. ``init_word`` (e.g. the concept's class, "triangle") gives the search a sensible start.
    """
    check_concept_token(tokenizer, text_encoder, word, init_word)
    table = text_encoder.token_embedding
    extended = Tokenizer(tokenizer.vocabulary[2:] + [word.lower()], tokenizer.max_length)
    text_encoder.requires_grad_(False)
    start = table.weight[tokenizer.ids[init_word]][None]  # (1, dim)
    text_encoder.token_embedding = ExtendedEmbedding(table, start)
    return extended, text_encoder.token_embedding.new
