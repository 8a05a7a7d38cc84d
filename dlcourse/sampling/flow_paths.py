"""The path a flow sampler takes, how straight it is, and the (noise, sample) pairs reflow trains on.

:func:`flow_trajectory` keeps x at every time of a :mod:`dlcourse.sampling.flow` sampler's run; :func:`straightness` is
Liu et al. 2023's measure of how far that path is from the straight line between its ends; :func:`reflow_pairs` couples
each noise with the image the ODE takes it to, the data of a 2-rectified flow.

Taught in notebooks/10_flow_matching.ipynb ("Reflow: straightening the paths").
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from dlcourse.runtime import Precision
from dlcourse.sampling.flow import Velocity, flow_euler_sample, flow_heun_sample, flow_sigmas
from dlcourse.sampling.flow_checks import check_solver, check_trajectory

__all__ = ["FLOW_SOLVERS", "FlowTrajectory", "ReflowPairs", "flow_trajectory", "reflow_pairs", "straightness"]


_SAMPLERS = {"euler": flow_euler_sample, "heun": flow_heun_sample}
FLOW_SOLVERS = tuple(_SAMPLERS)


class FlowTrajectory(NamedTuple):
    """The path a flow sampler took. t: (N + 1,) float32, the times from 1 down to 0 (:func:`flow_sigmas`);
    x: (N + 1, B, C, H, W) float32, the samples at them: x[0] the noise, x[-1] the image. One pixel's path (for a
    plot): ``x[:, b, c, i, j]`` against t."""

    t: Tensor
    x: Tensor


def flow_trajectory(
    velocity: Velocity,
    noise: Tensor,
    *,
    num_steps: int,
    shift: float = 1.0,
    spacing: str = "uniform",
    solver: str = "euler",
    precision: Precision | None = None,
    progress: bool = True,
) -> FlowTrajectory:
    """Sample with ``solver`` ("euler" or "heun": :func:`flow_euler_sample`, :func:`flow_heun_sample`, whose
    arguments these are) and return the whole path, x at every time, as a :class:`FlowTrajectory`.

    It keeps num_steps + 1 copies of the batch: use a few images.
    """
    check_solver(solver, FLOW_SOLVERS, "flow_trajectory")
    xs: list[Tensor] = []
    sample = _SAMPLERS[solver](
        velocity, noise, num_steps=num_steps, shift=shift, spacing=spacing,
        callback=lambda i, t, x_t, x0_pred: xs.append(x_t), precision=precision, progress=progress,
    )  # fmt: skip
    return FlowTrajectory(flow_sigmas(num_steps, shift, spacing), torch.stack([*xs, sample]))


def straightness(trajectory: FlowTrajectory) -> Tensor:
    """How far a sampled path is from a straight line: Liu et al. 2023's straightness, a 0-d float tensor,

        S = integral_0^1 E || (x_1 - x_0) - v(x_t, t) ||^2 dt,

    x_1 the noise, x_0 the image, x_1 - x_0 the velocity of the straight line between them (dx/dt, as time runs from
    the image at 0 to the noise at 1). S = 0 exactly when the path goes along that line at constant speed; the more
    it bends, the larger S, and the more a few-step sampler's Euler steps miss. Estimated along the trajectory:
    step i moves with the velocity v_i = (x_{i+1} - x_i) / (t_{i+1} - t_i) (for Euler exactly the network's
    v(x_{t_i}, t_i); for Heun the mean of its two) for a time t_i - t_{i+1}, so

        S = sum_i (t_i - t_{i+1}) mean || (x_1 - x_0) - v_i ||^2,

    the squared norm averaged over the C H W entries (so S does not grow with the image size) and the batch.
    trajectory: what :func:`flow_trajectory` returns.
    """
    check_trajectory(trajectory, FlowTrajectory)
    t, x = trajectory
    dt = (t[:-1] - t[1:]).to(x)  # (N,): the time each step covers
    v = (x[:-1] - x[1:]) / dt.view(-1, 1, 1, 1, 1)  # (N, B, C, H, W): the velocity of each step
    straight = x[0] - x[-1]  # x_1 - x_0 (B, C, H, W)
    return ((straight - v).pow(2).mean(dim=(1, 2, 3, 4)) * dt).sum()


class ReflowPairs(NamedTuple):
    """Reflow's training data. noise: (B, C, H, W) float32, the starting x_1 of each sample; samples: (B, C, H, W)
    float32, the image x_0 the flow model's ODE took it to."""

    noise: Tensor
    samples: Tensor


def reflow_pairs(
    velocity: Velocity,
    noise: Tensor,
    *,
    num_steps: int,
    shift: float = 1.0,
    spacing: str = "uniform",
    solver: str = "euler",
    precision: Precision | None = None,
    progress: bool = True,
) -> ReflowPairs:
    """The (noise, sample) pairs of a trained flow model, on which reflow trains the next one (Liu et al. 2023).

    Sampling with ``solver`` (the arguments of :func:`flow_euler_sample`) couples each noise with an image; a new
    model trained on these fixed pairs instead of independent ones (the 2-rectified flow) learns straighter paths,
    which few steps follow well. Train it with the one loop, the pairs as data:

        noise, samples = reflow_pairs(flow_model, torch.randn(N, C, H, W, generator=g), num_steps=50)
        train(new_model, {"x0": samples, "noise": noise}, None, config,
              loss_fn=FlowMatchingLoss(paired_noise="noise"), data_range=None)

    (data_range=None: a model's samples may overshoot [-1, 1] a little.) For a conditional model, sample with
    ``lambda x, t: model(x, t, class_labels=y)`` and add ``"class_labels": y`` to the data.
    """
    check_solver(solver, FLOW_SOLVERS, "reflow_pairs")
    samples = _SAMPLERS[solver](
        velocity, noise, num_steps=num_steps, shift=shift, spacing=spacing, precision=precision, progress=progress
    )
    return ReflowPairs(noise.float(), samples)
