"""DreamBooth: fine-tune the whole U-Net (or a LoRA of it) on a few images of one subject (Ruiz et al. 2023).

The subject's images are captioned with an **instance prompt** that pairs a rare identifier with the subject's class,
"a sks triangle". Trained on a handful of images alone, the model soon draws the subject for *every* triangle prompt:
the class word drifts to mean the subject ("language drift"). **Prior preservation** fights this with a second term:
images the model itself generated for the plain **class prompt** ("a triangle") before fine-tuning, trained on with
that prompt, so the class keeps its old meaning (Ruiz et al. 2023, Eq. 2):

    L = E || eps - eps_theta(x_t, t, c_instance) ||^2  +  lambda * E || eps' - eps_theta(x'_t, t', c_class) ||^2

Both terms run through :func:`~dlcourse.training.train`: the instance images are the data, the class images a
:class:`~dlcourse.training.LossTerm` of weight lambda (0 gives exactly the run without it).

Taught in notebooks/07_lora_dreambooth.ipynb, "DreamBooth, with and without prior preservation".
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from dlcourse.finetune.checks import check_caption_inputs, check_prior_preservation
from dlcourse.models.text import Tokenizer
from dlcourse.training import LossTerm

__all__ = ["captioned", "prior_preservation"]


def captioned(images: Tensor, prompts: str | Sequence[str], tokenizer: Tokenizer) -> dict[str, Tensor]:
    """Training data for a text model: {"x0": images (N, C, H, W), "ids": (N, L), "mask": (N, L)} on the images'
    device; one prompt for all images or one per image."""
    prompts = check_caption_inputs("captioned", images, prompts, tokenizer)  # one prompt per image
    ids, mask = tokenizer.encode(prompts, images.device)
    return {"x0": images, "ids": ids, "mask": mask}


def prior_preservation(
    class_images: Tensor, class_prompt: str, tokenizer: Tokenizer, weight: float = 1.0, batch_size: int | None = None
) -> LossTerm:
    """The prior-preservation term: the base model's own images of ``class_prompt`` (generated before fine-tuning),
    trained on with that prompt at ``weight`` (lambda; 1 in the paper)."""
    check_prior_preservation(class_images, class_prompt, tokenizer, weight, batch_size)
    return LossTerm(data=captioned(class_images, class_prompt, tokenizer), weight=weight, batch_size=batch_size)
