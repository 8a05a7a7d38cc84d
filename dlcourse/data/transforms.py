"""The two pixel ranges of the course, and the only place that converts between them.

Images are *stored and modelled* in [-1, 1]: the forward process adds unit-variance Gaussian noise, so data
centred on 0 with a spread comparable to the noise is what the maths assumes (Ho et al. 2020, Sec. 3.3,
scales images to [-1, 1]). Images are *displayed* in [0, 1], which matplotlib and image files expect.
Mixing them up is a classic bug: ``NoiseSchedule.q_sample`` refuses images outside [-1, 1] and names
:func:`to_model_range` as the fix (notebooks/01_forward_process.ipynb, "Mistakes caught early").
"""

from __future__ import annotations

import torch

__all__ = ["to_display_range", "to_model_range"]


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """Map pixels from [0, 1] (display) to [-1, 1] (model): ``x * 2 - 1``.

    x: (..., C, H, W) with values in [0, 1] -> same shape, values in [-1, 1].
    """
    return x * 2 - 1


def to_display_range(x: torch.Tensor) -> torch.Tensor:
    """Map pixels from [-1, 1] (model) to [0, 1] (display): ``(x + 1) / 2``, clamped to [0, 1].

    The clamp matters for generated samples, which can overshoot [-1, 1] slightly.
    x: (..., C, H, W) -> same shape, values in [0, 1].
    """
    return ((x + 1) / 2).clamp(0, 1)
