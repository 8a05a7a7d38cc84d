"""What the network predicts: the noise eps, the velocity v, or the clean image x0.

All three carry the same information, because x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps
(Ho et al. 2020, Eq. (4)) ties x0 and eps together given x_t. Training picks one as the regression target
(:func:`training_target`); every sampler converts the network's output back into a predicted x0 and a
predicted eps (:func:`predicted_x0_and_eps`), so the samplers support all three for free.

- ``"eps"``: DDPM (Ho et al. 2020, Sec. 3.2). x0 = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) (Eq. (15)).
- ``"v"``: v = sqrt(alpha_bar) eps - sqrt(1 - alpha_bar) x0 (Salimans & Ho 2022, Sec. 4 and App. D);
  then x0 = sqrt(alpha_bar) x_t - sqrt(1 - alpha_bar) v and eps = sqrt(1 - alpha_bar) x_t + sqrt(alpha_bar) v.
- ``"x0"``: predict the clean image; eps = (x_t - sqrt(alpha_bar) x0) / sqrt(1 - alpha_bar).

``alpha_bar`` here is alpha_bar_t already gathered at each sample's timestep and shaped to broadcast against
the images, e.g. ``(B, 1, 1, 1)`` (see :func:`dlcourse.schedules.extract`). Taught in
notebooks/03_ddpm_training.ipynb.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["PREDICTION_TYPES", "check_prediction_type", "predicted_x0_and_eps", "training_target"]

PREDICTION_TYPES = ("eps", "v", "x0")


def check_prediction_type(prediction_type: str) -> str:
    """Return ``prediction_type`` if it is one of :data:`PREDICTION_TYPES`, else raise a ValueError."""
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(
            f"prediction_type must be one of {PREDICTION_TYPES} (what the network outputs: the noise, the velocity "
            f"or the clean image); got {prediction_type!r}. diffusers calls 'eps' 'epsilon' and 'x0' 'sample'."
        )
    return prediction_type


def training_target(x0: Tensor, eps: Tensor, alpha_bar: Tensor, prediction_type: str) -> Tensor:
    """The regression target for the network: eps, v or x0. x0, eps: (B, C, H, W); alpha_bar: (B, 1, 1, 1)."""
    check_prediction_type(prediction_type)
    if prediction_type == "eps":
        return eps  # Ho et al. 2020, Algorithm 1
    if prediction_type == "v":
        return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0  # Salimans & Ho 2022, Sec. 4
    return x0


def predicted_x0_and_eps(
    model_output: Tensor, x_t: Tensor, alpha_bar: Tensor, prediction_type: str
) -> tuple[Tensor, Tensor]:
    """Convert the network's output at x_t into (predicted x0, predicted eps), both (B, C, H, W)."""
    check_prediction_type(prediction_type)
    sqrt_ab, sqrt_one_minus_ab = alpha_bar.sqrt(), (1 - alpha_bar).sqrt()
    if prediction_type == "eps":
        eps = model_output
        x0 = (x_t - sqrt_one_minus_ab * eps) / sqrt_ab  # Ho et al. 2020, Eq. (15)
    elif prediction_type == "v":
        x0 = sqrt_ab * x_t - sqrt_one_minus_ab * model_output  # Salimans & Ho 2022, App. D
        eps = sqrt_one_minus_ab * x_t + sqrt_ab * model_output
    else:
        x0 = model_output
        eps = (x_t - sqrt_ab * x0) / sqrt_one_minus_ab  # Eq. (4) solved for eps
    return x0, eps
