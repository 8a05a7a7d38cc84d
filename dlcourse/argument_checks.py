"""Argument checks shared by the packages' checks.py files: a count, a number, a flag, strings, a path, a tensor.

Each raises an error that names the function, the argument, what it got and what it needs:

    inject_lora: targets must be a list or tuple of name patterns; got the string '*attn*'. ...

A wrong type is a TypeError, a wrong value a ValueError. They look at Python values, shapes and dtypes; only
:func:`check_images` with ``value_range`` reads tensor values (one host synchronisation), and none of them runs
inside a sampling or training step.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "check_bool",
    "check_callable",
    "check_device",
    "check_dtype",
    "check_generator",
    "check_generator_on",
    "check_images",
    "check_instance",
    "check_int",
    "check_keys",
    "check_number",
    "check_on_device",
    "check_path",
    "check_strings",
    "check_tensor",
    "describe",
]

_RANGE_TOLERANCE = 1e-3  # as dlcourse.schedules: a little slack for rounding (e.g. after a resize)


def describe(value: Any) -> str:
    """A short account of a value for an error message: a tensor's shape and dtype, else its repr (cut)."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, str):
        return f"the string {value!r}"
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}... ({type(value).__name__})"


def _fail(caller: str, name: str, needs: str, value: Any, fix: str, error: type[Exception]) -> None:
    raise error(f"{caller}: {name} must be {needs}; got {describe(value)}.{' ' + fix if fix else ''}")


def check_instance(
    caller: str, name: str, value: Any, kind: type | tuple[type, ...], needs: str, fix: str = ""
) -> None:
    """``value`` is an instance of ``kind`` (described to the reader as ``needs``), else a TypeError."""
    if not isinstance(value, kind):
        got = describe(value) if isinstance(value, Tensor | str) else f"a {type(value).__name__}"
        raise TypeError(f"{caller}: {name} must be {needs}; got {got}.{' ' + fix if fix else ''}")


def check_int(
    caller: str, name: str, value: Any, minimum: int | None = None, maximum: int | None = None, fix: str = ""
) -> None:
    """An integer (not a bool) in [minimum, maximum] (either bound optional)."""
    if minimum is not None and maximum is not None:
        bounds = f" from {minimum} to {maximum}"
    else:
        bounds = f" >= {minimum}" if minimum is not None else f" <= {maximum}" if maximum is not None else ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(caller, name, f"an integer{bounds}", value, fix, TypeError)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        _fail(caller, name, f"an integer{bounds}", value, fix, ValueError)


def check_number(
    caller: str,
    name: str,
    value: Any,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    above: bool = False,
    fix: str = "",
) -> None:
    """A finite real number (not a bool, not NaN or inf) >= minimum (> minimum when ``above``) and <= maximum."""
    low = "" if minimum is None else f"{'>' if above else '>='} {minimum:g}"
    high = "" if maximum is None else f"<= {maximum:g}"
    needs = " ".join(["a finite number", " and ".join(bound for bound in (low, high) if bound)]).rstrip()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(caller, name, needs, value, fix, TypeError)
    if not math.isfinite(value):
        _fail(caller, name, needs, value, fix, ValueError)
    if minimum is not None and (value <= minimum if above else value < minimum):
        _fail(caller, name, needs, value, fix, ValueError)
    if maximum is not None and value > maximum:
        _fail(caller, name, needs, value, fix, ValueError)


def check_bool(caller: str, name: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(caller, name, "True or False", value, "", TypeError)


def check_strings(
    caller: str, name: str, value: Any, *, count: int | None = None, single: bool = True, fix: str = ""
) -> list[str]:
    """One string (when ``single``) or a non-empty list/tuple of strings, ``count`` of them when given (a single
    string is repeated ``count`` times); returned as a list."""
    if single and isinstance(value, str):
        return [value] * (1 if count is None else count)
    needs = ("a string or " if single else "") + "a list or tuple of strings"
    if isinstance(value, str):  # iterating a string would give its letters, each taken as one item
        _fail(caller, name, needs, value, f"One string would be read letter by letter: wrap it, {name}=[{value!r}]. "
              f"{fix}".rstrip(), TypeError)  # fmt: skip
    if not isinstance(value, (list, tuple)):
        _fail(caller, name, needs, value, fix, TypeError)
    bad = [item for item in value if not isinstance(item, str)]
    if bad:
        _fail(caller, name, needs, value, f"{describe(bad[0])} is not a string. {fix}".rstrip(), TypeError)
    if not value:
        _fail(caller, name, needs + ", at least one", value, fix, ValueError)
    if count is not None and len(value) != count:
        _fail(caller, name, f"one string for all or {count} strings, one per image", value, fix, ValueError)
    return list(value)


def check_path(caller: str, name: str, value: Any, *, exists: bool = False, fix: str = "") -> Path:
    """A str or os.PathLike (not empty); with ``exists``, a file that is there. Returned as a Path."""
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value.strip()):
        _fail(caller, name, "a path (a str or pathlib.Path)", value, fix,
              ValueError if isinstance(value, str) else TypeError)  # fmt: skip
    path = Path(value)
    if exists and not path.is_file():
        raise FileNotFoundError(f"{caller}: {name} must be a file that exists; there is no file at {path}. {fix}")
    return path


def check_dtype(caller: str, name: str, value: Any) -> None:
    """None or a floating torch.dtype (torch.float16, torch.bfloat16, torch.float32)."""
    if value is not None and not (isinstance(value, torch.dtype) and value.is_floating_point):
        _fail(caller, name, "None or a floating torch.dtype such as torch.float16 or torch.float32", value, "",
              TypeError if not isinstance(value, torch.dtype) else ValueError)  # fmt: skip


def check_device(caller: str, name: str, value: Any, *, optional: bool = True) -> None:
    """A torch.device or a device string ("cpu", "cuda", "cuda:1", "mps"); None too when ``optional``."""
    if value is None and optional:
        return
    needs = "a device such as 'cpu', 'cuda' or torch.device('cuda:0')" + (" (or None)" if optional else "")
    if not isinstance(value, (str, torch.device)):
        _fail(caller, name, needs, value, "", TypeError)
    try:
        torch.device(value)
    except RuntimeError:
        _fail(caller, name, needs, value, "", ValueError)


def check_generator(caller: str, name: str, value: Any) -> None:
    """None or a torch.Generator."""
    if value is not None and not isinstance(value, torch.Generator):
        _fail(caller, name, "None or a torch.Generator", value,
              "Seed one with torch.Generator(device).manual_seed(seed).", TypeError)  # fmt: skip


def check_images(
    caller: str,
    name: str,
    images: Any,
    *,
    channels: int | None = None,
    min_count: int = 1,
    value_range: bool = False,
) -> None:
    """A float tensor (N, C, H, W) with N >= min_count (and C == channels when given); with ``value_range``, its
    values in [-1, 1] (one host synchronisation)."""
    c = "C" if channels is None else str(channels)
    needs = f"a float tensor of images (N, {c}, H, W) with N >= {min_count}"
    if not isinstance(images, Tensor):
        _fail(caller, name, needs, type(images).__name__, "", TypeError)
    if images.ndim == 3:
        _fail(caller, name, needs, images, f"For a single image add the batch dimension: {name}[None].", ValueError)
    if images.ndim != 4 or images.shape[0] < min_count or (channels is not None and images.shape[1] != channels):
        _fail(caller, name, needs, images, "", ValueError)
    if not images.is_floating_point():
        _fail(caller, name, needs, images, "For uint8 pixels 0..255: images.float() / 127.5 - 1.", ValueError)
    if value_range and images.numel():
        low, high = torch.aminmax(images.detach())
        low, high = low.item(), high.item()
        if not (-1 - _RANGE_TOLERANCE <= low and high <= 1 + _RANGE_TOLERANCE):  # NaN fails too
            raise ValueError(
                f"{caller}: {name} must be images in [-1, 1]; got values in [{low:.3g}, {high:.3g}]. "
                "From [0, 1]: images * 2 - 1; from 0..255: images / 127.5 - 1."
            )



# Shared by the models, sampling, data and training packages' checks (a tensor's kind and device, a mapping's keys,
# a callable, a generator's device).


def check_tensor(
    caller: str, name: str, value: Any, needs: str, *, ndim: int | None = None, floating: bool = False, fix: str = ""
) -> None:
    """A tensor (else a TypeError), with ``ndim`` dimensions and a floating dtype when asked (else a ValueError);
    ``needs`` says what it is, e.g. "images (B, 3, H, W) in [-1, 1]"."""
    if not isinstance(value, Tensor):
        _fail(caller, name, f"a tensor: {needs}", value, fix, TypeError)
    if ndim is not None and value.ndim != ndim:
        _fail(caller, name, f"{needs} ({ndim}-D)", value, fix, ValueError)
    if floating and not value.is_floating_point():
        _fail(caller, name, f"{needs}, with a floating dtype", value, fix, ValueError)


def check_on_device(caller: str, name: str, value: Tensor, device: torch.device, owner: str) -> None:
    """A tensor on ``device``, where ``owner`` (e.g. "the VAE's weights") is. Metadata only: no host sync."""
    if value.device != device:
        raise ValueError(
            f"{caller}: {name} is on {value.device} but {owner} on {device}: move it with {name}.to({str(device)!r}) "
            f"(or the model with .to({str(value.device)!r}))."
        )


def check_generator_on(caller: str, name: str, value: Any, device: torch.device | str) -> None:
    """None or a torch.Generator of ``device``'s type (random numbers are drawn where the tensors are)."""
    check_generator(caller, name, value)
    kind = torch.device(device).type
    if value is not None and torch.device(value.device).type != kind:
        _fail(caller, name, f"None or a {kind} torch.Generator (the numbers are drawn on {device})",
              f"a {value.device} generator", f"Use torch.Generator({kind!r}).manual_seed(seed).", ValueError)


def check_keys(caller: str, name: str, value: Any, needed: Iterable[str], fix: str = "") -> None:
    """A mapping with a value for each of ``needed``."""
    needed = sorted(needed)
    check_instance(caller, name, value, Mapping, f"a mapping with values for {needed}", fix)
    missing = sorted(set(needed) - set(value))
    if missing:
        raise ValueError(f"{caller}: {name} has no value for {missing}; it needs one for each of {needed}. {fix}")


def check_callable(caller: str, name: str, value: Any, needs: str, *, optional: bool = False) -> None:
    """A callable (a module or a function), or None when ``optional``; ``needs`` says how it is called."""
    if not (callable(value) or (optional and value is None)):
        _fail(caller, name, ("None or " if optional else "") + needs, value, "", TypeError)
