"""Input checks of the Shapes world, kept out of the code a learner reads: each says what is wrong and how
to fix it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from dlcourse.data.world import ATTRIBUTES


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_resolution(resolution: int) -> None:
    if not _is_int(resolution) or not 8 <= resolution <= 512:  # 512: Stable Diffusion's images (notebook 08, gpu)
        raise ValueError(
            f"resolution must be an int from 8 to 512 (pixels per side), got {resolution!r}. "
            "The course uses 32 (24 for quick CPU runs, 64 for larger images, 512 for Stable Diffusion)."
        )


def check_seed(seed: int) -> None:
    if not _is_int(seed) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an int in [0, 2**63), got {seed!r}.")


def check_split(split: str, splits: tuple[str, ...]) -> None:
    if split not in splits:
        raise ValueError(f"split must be one of {splits}, got {split!r}.")


def check_count(caller: str, name: str, value: int) -> None:
    """An image index or count: an int >= 0."""
    if not _is_int(value) or value < 0:
        raise ValueError(f"{caller}: {name} must be an int >= 0, got {value!r}.")


def check_holdout(holdout: Mapping[str, str] | Sequence[Mapping[str, str]]) -> tuple[dict[str, str], ...]:
    """The held-out combinations as a tuple of {attribute: value} rules (one dict is one rule)."""
    rules = (holdout,) if isinstance(holdout, Mapping) else tuple(holdout)
    for rule in rules:
        if not isinstance(rule, Mapping) or not rule:
            raise ValueError(
                f"holdout must be a list of non-empty dicts of attributes, e.g. "
                f"[{{'shape': 'triangle', 'colour': 'red'}}], got {holdout!r}."
            )
        for name, value in rule.items():
            if name not in ATTRIBUTES:
                raise ValueError(f"holdout: unknown attribute {name!r}; valid are {list(ATTRIBUTES)}.")
            if value not in ATTRIBUTES[name]:
                raise ValueError(f"holdout: unknown {name} {value!r}; valid are {list(ATTRIBUTES[name])}.")
    return tuple(dict(rule) for rule in rules)


def checked_attributes(
    attributes: Mapping[str, torch.Tensor], device: str | torch.device | None, check_values: bool
) -> dict[str, torch.Tensor]:
    """render's attributes as (N,) LongTensors on ``device`` (default: their own device).

    check_values: also check that every index is in range (one host synchronisation).
    """
    missing = [name for name in ATTRIBUTES if name not in attributes]
    if missing:
        raise ValueError(f"render: attributes lack {missing}; give all of {list(ATTRIBUTES)} as (N,) tensors")
    device = torch.device(device) if device is not None else torch.as_tensor(attributes["shape"]).device
    attributes = {name: torch.as_tensor(attributes[name], device=device) for name in ATTRIBUTES}
    n = attributes["shape"].shape[0]
    for name, t in attributes.items():
        if t.dtype != torch.long or t.shape != (n,):
            raise ValueError(
                f"render: attributes[{name!r}] must be a ({n},) LongTensor like attributes['shape'], "
                f"got {t.dtype} of shape {tuple(t.shape)}."
            )
        if check_values and bool(((t < 0) | (t >= len(ATTRIBUTES[name]))).any()):
            raise ValueError(
                f"render: attributes[{name!r}] must hold indices 0..{len(ATTRIBUTES[name]) - 1} into "
                f"{ATTRIBUTES[name]}; pass check=False to skip this test (it synchronises with the device)."
            )
    return attributes


def check_jitter(jitter: torch.Tensor, n: int) -> None:
    if not isinstance(jitter, torch.Tensor) or jitter.shape != (n, 4):
        shape = tuple(jitter.shape) if isinstance(jitter, torch.Tensor) else type(jitter).__name__
        raise ValueError(f"render: jitter must be a ({n}, 4) tensor, values in [-1, 1]; got {shape}.")
