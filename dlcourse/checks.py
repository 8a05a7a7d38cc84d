"""Argument checks shared by the packages' own checks.py: a number, an integer, a tensor, a device, a generator.

Each raises an error that names the argument, says what it got and what it needs (TypeError for the wrong kind of
value, ValueError for a value out of range), with an optional hint on how to fix it. They read Python values and
tensor metadata (type, shape, dtype, device) only, never tensor values: no host synchronisation.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_bool",
    "check_callable",
    "check_device",
    "check_generator",
    "check_instance",
    "check_int",
    "check_keys",
    "check_number",
    "check_on_device",
    "check_tensor",
    "got",
]


def got(value: Any) -> str:
    """A short description of a value for an error message: a tensor's shape and dtype, anything else's repr."""
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype}, on {value.device}"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}... ({type(value).__name__})"


def _end(hint: str) -> str:
    return f" {hint}" if hint else ""


def check_number(
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    at_most: float | None = None,
    hint: str = "",
) -> None:
    """value must be a finite real number (not a bool, not a tensor), > above, >= at_least and <= at_most."""
    bounds = [f"> {above:g}" if above is not None else "", f">= {at_least:g}" if at_least is not None else "",
              f"<= {at_most:g}" if at_most is not None else ""]  # fmt: skip
    needs = " and ".join(["a finite number", *(b for b in bounds if b)]).replace("number and", "number")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        extra = " (use float(x) for a 0-d tensor)" if isinstance(value, Tensor) and value.ndim == 0 else ""
        raise TypeError(f"{name} must be {needs}, got {got(value)}{extra}.{_end(hint)}")
    if not (
        math.isfinite(value)
        and (above is None or value > above)
        and (at_least is None or value >= at_least)
        and (at_most is None or value <= at_most)
    ):
        raise ValueError(f"{name} must be {needs}, got {value!r}.{_end(hint)}")


def check_bool(name: str, value: Any, hint: str = "") -> None:
    """value must be True or False (not 0, 1 or a string)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {got(value)}.{_end(hint)}")


def check_callable(name: str, value: Any, needs: str, *, optional: bool = False) -> None:
    """value must be callable (or None when ``optional``); needs: how it is called, said in the error."""
    if not (callable(value) or (optional and value is None)):
        none = "None or " if optional else ""
        raise TypeError(f"{name} must be {none}{needs}, got {got(value)} ({type(value).__name__}).")


def check_int(name: str, value: Any, *, at_least: int | None = None, hint: str = "") -> None:
    """value must be an int (not a bool, not a float), >= at_least."""
    needs = "an integer" + (f" >= {at_least}" if at_least is not None else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be {needs}, got {got(value)}.{_end(hint)}")
    if at_least is not None and value < at_least:
        raise ValueError(f"{name} must be {needs}, got {value!r}.{_end(hint)}")


def check_instance(name: str, value: Any, kind: type | tuple[type, ...], hint: str = "") -> None:
    """value must be an instance of ``kind`` (TypeError otherwise)."""
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        needs = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{name} must be a {needs}, got {got(value)} ({type(value).__name__}).{_end(hint)}")


def check_keys(name: str, mapping: Any, needed: Iterable[str], hint: str = "") -> None:
    """mapping must be a Mapping with a value for each of ``needed``."""
    check_instance(name, mapping, Mapping, hint)
    missing = sorted(set(needed) - set(mapping))
    if missing:
        raise ValueError(f"{name} has no value for {missing} (it has {sorted(mapping)}).{_end(hint)}")


def check_tensor(
    name: str, value: Any, needs: str, *, ndim: int | None = None, floating: bool = False, hint: str = ""
) -> None:
    """value must be a tensor (TypeError), with ``ndim`` dimensions and a floating dtype if asked (ValueError).

    needs: what the argument is, e.g. "images (B, 3, H, W) in [-1, 1]", said in every error.
    """
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor: {needs}; got {got(value)}.{_end(hint)}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{name} must be {needs} ({ndim}-D); got {got(value)}.{_end(hint)}")
    if floating and not value.is_floating_point():
        raise ValueError(f"{name} must be {needs}, with a floating dtype; got {got(value)}.{_end(hint)}")


def check_on_device(name: str, value: Tensor, device: torch.device, owner: str) -> None:
    """A tensor must be on ``device``, where ``owner`` (e.g. "the VAE's weights") is."""
    if value.device != device:
        raise ValueError(
            f"{name} is on {value.device} but {owner} on {device}: move it with {name}.to({str(device)!r}) "
            f"(or the model with .to({str(value.device)!r}))."
        )


def check_device(name: str, device: Any) -> None:
    """None, a torch.device, or a string torch.device understands ("cpu", "cuda", "cuda:1", "mps")."""
    if device is None or isinstance(device, torch.device):
        return
    if not isinstance(device, str):
        raise TypeError(f"{name} must be None, a torch.device or a string like 'cuda', got {got(device)}.")
    try:
        torch.device(device)
    except RuntimeError:
        raise ValueError(
            f"{name} must be None, a torch.device or a device string like 'cpu', 'cuda', 'cuda:1', 'mps'; "
            f"got {device!r}."
        ) from None


def check_generator(name: str, generator: Any, device: torch.device | str) -> None:
    """None or a torch.Generator on ``device``'s type (random numbers are drawn where the tensors are)."""
    if generator is None:
        return
    if not isinstance(generator, torch.Generator):
        raise TypeError(
            f"{name} must be None or a torch.Generator, got {got(generator)}: use "
            f"torch.Generator(device).manual_seed(seed)."
        )
    device = torch.device(device)
    if torch.device(generator.device).type != device.type:
        raise ValueError(
            f"{name} is a {generator.device} generator but the numbers are drawn on {device}: use "
            f"torch.Generator({str(device.type)!r}).manual_seed(seed)."
        )
