"""Pictures for the notebooks: image grids, forward-process strips, schedule plots, and widgets.

Every plotting function returns a matplotlib ``Figure`` (already closed, so Jupyter shows it exactly once,
when it is the cell's last expression) and can be saved with ``fig.savefig(...)``.

Widgets are optional: :func:`explore` always draws a *static* grid first, so a notebook reads well on GitHub
and in CI, then adds ipywidgets controls when ipywidgets is importable (imported lazily, here only). Its
sliders and text boxes update on release (``continuous_update=False``): a render that samples a batch runs
once per setting, not at every tick of a drag.

These are the course's pictures, not one of its ideas: notebooks 01 (image grids, the forward-process strip,
the schedule plots, the schedule and t explorer), 03 (the denoising strip) and 04 (the steps and eta explorer)
use them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from dlcourse.data.transforms import to_display_range
from dlcourse.schedules import NoiseSchedule

__all__ = [
    "denoising_strip",
    "explore",
    "forward_process_strip",
    "image_grid",
    "live_controls",
    "plot_schedules",
    "settings_grid",
    "show_images",
]


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """Tile ``images: (N, C, H, W)`` in [-1, 1] into one ``(3, H', W')`` image in [0, 1] on the CPU."""
    if images.ndim != 4:
        raise ValueError(f"image_grid expects a batch (N, C, H, W); got shape {tuple(images.shape)}")
    grid = make_grid(to_display_range(images.detach().float().cpu()), nrow=nrow, padding=padding, pad_value=1.0)
    return grid


def show_images(images: torch.Tensor, nrow: int = 8, title: str | None = None, scale: float = 1.0) -> Figure:
    """Show ``images: (N, C, H, W)`` in [-1, 1] as one grid, ``scale`` times 1/40 inch per pixel."""
    grid = image_grid(images, nrow=nrow)
    height, width = grid.shape[1:]
    inches_per_pixel = scale / 40
    title_inches = 0.35 if title else 0.0
    fig = plt.figure(figsize=(width * inches_per_pixel, height * inches_per_pixel + title_inches))
    top = 1 - title_inches / fig.get_size_inches()[1]
    ax = fig.add_axes((0, 0, 1, top))  # the grid fills the figure: no margins around the pixels
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    plt.close(fig)
    return fig


def forward_process_strip(
    schedules: Mapping[str, NoiseSchedule],
    x0: torch.Tensor,
    timesteps: Sequence[int],
    generator: torch.Generator | None = None,
) -> Figure:
    """x_t for each schedule (rows) at each timestep (columns), all from the same x0 and the same noise.

    ``x0: (C, H, W)`` in [-1, 1]. Using one ``eps`` for every cell isolates what the schedule does: only
    sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t) change along a row.
    """
    if x0.ndim != 3:
        raise ValueError(f"forward_process_strip expects one image (C, H, W); got shape {tuple(x0.shape)}")
    eps = torch.randn(x0.shape, generator=generator, device="cpu").to(x0.device)
    fig, axes = plt.subplots(
        len(schedules), len(timesteps), figsize=(1.3 * len(timesteps), 1.5 * len(schedules)), squeeze=False
    )
    for row, (name, schedule) in enumerate(schedules.items()):
        t = torch.tensor(list(timesteps), device=x0.device)
        batch = x0.expand(len(timesteps), *x0.shape)
        x_t = schedule.to(x0.device).q_sample(batch, t, eps=eps.expand_as(batch))
        for col, step in enumerate(timesteps):
            ax = axes[row, col]
            ax.imshow(to_display_range(x_t[col].float().cpu()).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"t={step}", fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
            ax.set_xlabel(f"ᾱ={schedule.alpha_bar[step].item():.3f}", fontsize=7)
    fig.tight_layout()
    plt.close(fig)
    return fig


def plot_schedules(schedules: Mapping[str, NoiseSchedule]) -> Figure:
    """alpha_bar_t (left) and log10 SNR(t) (right) for several schedules."""
    fig, (ax_bar, ax_snr) = plt.subplots(1, 2, figsize=(10, 3.5))
    for name, schedule in schedules.items():
        alpha_bar = schedule.alpha_bar.detach().double().cpu()
        steps = torch.arange(len(alpha_bar))
        ax_bar.plot(steps, alpha_bar, label=name)
        ax_snr.plot(steps, torch.log10(schedule.snr().detach().double().cpu()), label=name)
    ax_bar.set(xlabel="t", ylabel="ᾱ_t  (signal kept)", title="ᾱ_t = Π (1 - β_s)")
    ax_snr.set(xlabel="t", ylabel="log10 SNR(t)", title="SNR = ᾱ_t / (1 - ᾱ_t)")
    for ax in (ax_bar, ax_snr):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def settings_grid(render: Callable[..., Figure], settings: Sequence[Mapping[str, Any]]) -> Figure:
    """Draw ``render(**setting)`` for each setting side by side (the static half of :func:`explore`).

    ``render`` should title its figure with the setting it shows; the parts are pasted as pictures.
    """
    if not settings:
        raise ValueError("settings_grid needs at least one setting to draw, e.g. [{'t': 0}, {'t': 500}]")
    parts = [render(**setting) for setting in settings]
    width = max(part.get_size_inches()[0] for part in parts)
    height = sum(part.get_size_inches()[1] for part in parts)
    fig, axes = plt.subplots(len(parts), 1, figsize=(width, height), squeeze=False)  # one row per setting
    for ax, part in zip(axes[:, 0], parts, strict=True):
        canvas = FigureCanvasAgg(part)  # closed figures have no drawing canvas of their own
        canvas.draw()
        ax.imshow(np.asarray(canvas.buffer_rgba()))
        ax.set_axis_off()
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, hspace=0.02)
    plt.close(fig)
    return fig


def explore(render: Callable[..., Figure], static: Sequence[Mapping[str, Any]], **controls: Any) -> None:
    """Display ``render`` at a few fixed settings, then with live controls when ipywidgets is installed.

    ``render(**kwargs) -> Figure`` draws one setting. ``static`` lists the settings drawn side by side: what
    GitHub, CI and a reader without a live kernel see. ``controls`` are ipywidgets ``interact`` abbreviations,
    e.g. ``t=(0, 999, 10)`` for a slider or ``schedule=["linear", "cosine"]`` for a dropdown; they become
    :func:`live_controls`, which redraw when a slider is released.
    """
    unknown = {key for setting in static for key in setting} - set(controls)
    if unknown:
        raise ValueError(f"static settings use {sorted(unknown)}, which are not among the controls {sorted(controls)}")
    from IPython.display import display

    display(settings_grid(render, static))
    try:
        import ipywidgets
    except ImportError:
        print("(install ipywidgets for live controls: pip install ipywidgets)")
        return
    ipywidgets.interact(render, **live_controls(render, **controls))


def live_controls(render: Callable[..., Figure], **controls: Any) -> dict[str, Any]:
    """The ipywidgets :func:`explore` shows for ``controls``, one per argument of ``render``.

    ``controls`` are ipywidgets ``interact`` abbreviations: ``(min, max[, step])`` a slider (integer or float),
    a list of choices a dropdown, a string a text box, a ready-made widget kept as it is. Each starts at
    ``render``'s default for its argument, as ``interact`` does. Every widget that has ``continuous_update``
    gets it False: ``render`` runs when a slider is released (or Enter is pressed in a text box), not at each
    tick of a drag. Needs ipywidgets.
    """
    import ipywidgets

    parameters = inspect.signature(render).parameters
    widgets = {}
    for name, abbreviation in controls.items():
        default = parameters[name].default if name in parameters else inspect.Parameter.empty
        widget = ipywidgets.interactive.widget_from_abbrev(abbreviation, default)
        if widget is None:
            raise ValueError(
                f"control {name}={abbreviation!r} cannot be made into a widget: use a (min, max) or "
                "(min, max, step) tuple for a slider, a list of choices for a dropdown, or an ipywidgets widget"
            )
        if widget.has_trait("continuous_update"):
            widget.continuous_update = False
        widgets[name] = widget
    return widgets


def denoising_strip(
    frames: Sequence[tuple[int, torch.Tensor]], max_images: int = 4, title: str | None = None
) -> Figure:
    """Images along a sampling run: one column per recorded step, one row per image.

    ``frames``: ``(t, images)`` pairs in sampling order, ``images: (B, C, H, W)`` in [-1, 1] (x_t or the model's
    x0 prediction at that step, e.g. collected by a sampler's ``callback``); the first ``max_images`` of each
    batch are shown.
    """
    if not frames:
        raise ValueError("denoising_strip needs at least one (t, images) frame; collect them with a sampler callback")
    rows = min(max_images, frames[0][1].shape[0])
    fig, axes = plt.subplots(rows, len(frames), figsize=(1.1 * len(frames), 1.1 * rows + 0.4), squeeze=False)
    for col, (t, images) in enumerate(frames):
        for row in range(rows):
            ax = axes[row, col]
            ax.imshow(to_display_range(images[row].float().cpu()).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_axis_off()
        axes[0, col].set_title(f"t={t}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    plt.close(fig)
    return fig
