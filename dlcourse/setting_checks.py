"""The checks :func:`dlcourse.modes.settings` runs on an override, before a notebook spends any time on it.

An override must keep the table's type (:func:`checked_override`) and a value its setting can take
(:func:`check_value`): ``settings("ddpm_shapes", steps=-10)`` is refused here, with the setting, the value and what
it needs, instead of failing (or silently doing nothing) deep inside a training loop. :data:`KINDS` says, for every
setting name in dlcourse/modes.py and dlcourse/recipes.py, what a value needs; tests/test_modes.py checks that every
setting has a kind and that every table value passes its check.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

__all__ = ["KINDS", "check_value", "checked_override"]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _needs(needs: str, ok: Callable[[Any], bool]) -> Callable[[Any], str | None]:
    """A check that says what the value needs (``needs``) when ``ok(value)`` is false, else returns None."""
    return lambda value: None if ok(value) else f"it needs {needs}"


def _refused_by(check: Callable[[Any], Any]) -> Callable[[Any], str | None]:
    """A check that asks the function which uses the value; its own ValueError says what the value needs."""

    def run(value: Any) -> str | None:
        try:
            check(value)
        except ValueError as error:
            return str(error).splitlines()[0].rstrip(".")
        return None

    return run


def _schedule(name: str) -> None:
    from dlcourse.schedules import make_betas

    make_betas(name, 10)


def _prediction_type(name: str) -> None:
    from dlcourse.parameterization import check_prediction_type

    check_prediction_type(name)


def _reconstruction(name: str) -> None:
    from dlcourse.models import VAELoss

    VAELoss(reconstruction=name)


def _caption(pair: str) -> None:
    from dlcourse.data import parse_caption

    parse_caption(pair)


_COUNT = _needs("a positive int (>= 1)", lambda v: _is_int(v) and v >= 1)
_INDEX = _needs("an int >= 0", lambda v: _is_int(v) and v >= 0)
_LR = _needs("a finite learning rate > 0", lambda v: _is_real(v) and v > 0)
_PROBABILITY = _needs("a probability in [0, 1]", lambda v: _is_real(v) and 0 <= v <= 1)
_DECAY = _needs("a decay in [0, 1)", lambda v: _is_real(v) and 0 <= v < 1)
_WEIGHT = _needs("a finite number >= 0", lambda v: _is_real(v) and v >= 0)
_POSITIVE = _needs("a finite number > 0", lambda v: _is_real(v) and v > 0)

# setting name -> what each value (each element, for a tuple setting) needs. One name means one thing in every table
# ("steps" is a count of training steps in a recipe and a tuple of sampling step counts in notebook 04).
KINDS: dict[str, Callable[[Any], str | None]] = {
    # sizes: resolutions, widths, depths, heads, lengths, ranks
    **dict.fromkeys(("resolution", "eval_resolution", "size", "base_channels", "channel_mults", "num_res_blocks",
                     "attention_resolutions", "latent_channels", "text_dim", "text_depth", "text_heads", "max_length",
                     "rank", "num_timesteps"), _COUNT),
    # step counts and repetitions
    **dict.fromkeys(("steps", "hand_steps", "sample_steps", "few_steps", "prompt_steps", "num_steps", "class_steps",
                     "lora_steps", "db_steps", "lr_steps", "speed_steps", "spread_steps", "detector_steps",
                     "timing_iters", "budget_s", "pair_steps", "reference_steps", "dpm_steps", "path_steps",
                     "nfes"), _COUNT),
    # counts of images, samples, prompts; batch sizes
    **dict.fromkeys(("n_train", "n_test", "n_eval", "n_small", "n_chain", "n_images", "n_show", "n_x0_error",
                     "n_interpolate", "n_scale", "n_psnr", "n_prompts", "per_prompt", "n_heldout_prompts",
                     "n_negative", "n_instance", "n_class", "n_drift", "n_latent", "detector_n_train",
                     "batch_size", "sample_batch", "db_batch", "lr_batch", "fp16_batch", "n_pairs", "n_page",
                     "page_batch", "n_paths", "straight_n"), _COUNT),
    **dict.fromkeys(("seed", "spread_seeds", "warmup_steps", "t_probe"), _INDEX),
    **dict.fromkeys(("lr", "lr_ti", "lr_lora", "lr_dreambooth", "db_lr", "lr_ok", "lr_high"), _LR),
    **dict.fromkeys(("p_name", "p_uncond"), _PROBABILITY),
    "strengths": _PROBABILITY,  # img2img strength: the fraction of the schedule re-noised
    **dict.fromkeys(("ema_decay", "betas"), _DECAY),  # betas: Adam's (beta1, beta2), each a decay
    **dict.fromkeys(("kl_weight", "prior_weight", "guidance_scale", "guidance_scales", "scales"), _WEIGHT),
    "show_scale": _POSITIVE,
    "shifts": _POSITIVE,  # SD3's resolution shift of the flow sampler's times; 1 is none
    "schedule": _refused_by(_schedule),
    "prediction_type": _refused_by(_prediction_type),
    "reconstruction": _refused_by(_reconstruction),
    "lr_decay": _needs("'constant' or 'cosine'", lambda v: v in ("constant", "cosine")),
    "t_distribution": _needs("'uniform' or 'logit_normal'", lambda v: v in ("uniform", "logit_normal")),
    "pair_solver": _needs("'euler' or 'heun'", lambda v: v in ("euler", "heun")),
    "pair_spacing": _needs("'uniform' or 'diffusers'", lambda v: v in ("uniform", "diffusers")),
    "holdout": _refused_by(_caption),  # each a colour-shape pair, e.g. "red triangle"
    "model_id": _needs("a non-empty model id or folder, or None for the toy components",
                       lambda v: v is None or (isinstance(v, str) and v.strip() != "")),
    "gradient_checkpointing": _needs("True or False", lambda v: isinstance(v, bool)),
}

# tuples that need an element
_NON_EMPTY = ("channel_mults", "steps", "scales", "guidance_scales", "strengths", "spread_seeds", "nfes", "shifts")
_PAIRS = ("betas",)  # tuples of exactly two


def check_value(where: str, key: str, value: Any) -> None:
    """Raise a ValueError unless ``value`` is a value the setting ``key`` can take (see :data:`KINDS`).

    where: the call the value came from, for the message (``"settings('ddpm_shapes')"``).
    """
    if key not in KINDS:  # a setting added to a table without a kind: tests/test_modes.py catches it first
        raise KeyError(f"{key!r} has no kind in dlcourse/setting_checks.py KINDS; add one")
    check = KINDS[key]
    if isinstance(value, tuple):
        if key in _NON_EMPTY and not value:
            raise ValueError(f"{where}: {key} got (): it needs at least one element.")
        if key in _PAIRS and len(value) != 2:
            raise ValueError(f"{where}: {key} got {value!r}: it needs two values (beta1, beta2), e.g. (0.9, 0.999).")
        for i, element in enumerate(value):
            problem = check(element)
            if problem:
                raise ValueError(f"{where}: {key}[{i}] got {element!r} (in {value!r}): {problem}.")
        return
    problem = check(value)
    if problem:
        raise ValueError(f"{where}: {key} got {value!r}: {problem}.")


def checked_override(where: str, key: str, value: Any, default: Any) -> Any:
    """``value`` as an override of the setting ``key`` whose table value is ``default``, in the table's type,
    after :func:`check_value`.

    An int setting takes an int, a float setting any real number (stored as a float), a tuple setting a tuple
    or list of elements like the table's, a str setting a str. A value of another type is a TypeError (a
    model_id, a str, may also be None: the toy components); a value of the right type that the setting cannot
    take is a ValueError.
    """
    value = _in_the_tables_type(where, key, value, default)
    check_value(where, key, value)
    return value


def _in_the_tables_type(where: str, key: str, value: Any, default: Any) -> Any:
    if default is None or (key == "model_id" and value is None):  # no type to keep; None: the toy components
        return value
    if isinstance(default, tuple) and isinstance(value, tuple | list):
        return tuple(_in_the_tables_type(where, f"{key}[{i}]", v, default[0]) if default else v
                     for i, v in enumerate(value))
    if isinstance(default, bool) and isinstance(value, bool):
        return value
    if _is_int(default) and _is_int(value):
        return int(value)
    if isinstance(default, float) and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, str) and isinstance(value, str):
        return value
    kind = {tuple: "a tuple", bool: "a bool", int: "an int", float: "a number", str: "a str"}
    if type(default) not in kind and isinstance(value, type(default)):
        return value
    kind = kind.get(type(default), f"a {type(default).__name__}")
    raise TypeError(
        f"{where}: {key} is {kind} setting, got {value!r} of type {type(value).__name__}; pass {kind} like the "
        f"table's {default!r}."
    )
