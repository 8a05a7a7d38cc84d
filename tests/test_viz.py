"""dlcourse.viz: figures have the panels and pixels they claim; widgets refuse settings they cannot show and
redraw only when a slider is released."""

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
from matplotlib.figure import Figure

from dlcourse import NoiseSchedule, viz


def test_image_grid_maps_model_range_to_display_range():
    images = torch.stack([torch.full((3, 4, 4), -1.0), torch.full((3, 4, 4), 1.0)])
    grid = viz.image_grid(images, nrow=2, padding=0)
    assert grid.shape == (3, 4, 8)
    assert torch.all(grid[:, :, :4] == 0) and torch.all(grid[:, :, 4:] == 1)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        viz.image_grid(torch.zeros(3, 4, 4))


def test_show_images_returns_a_closed_figure():
    fig = viz.show_images(torch.rand(6, 1, 8, 8) * 2 - 1, nrow=3, title="x")
    assert isinstance(fig, Figure) and fig.axes[0].get_title() == "x"
    assert not matplotlib.pyplot.get_fignums(), "figures must be closed so Jupyter shows them once"


def test_forward_process_strip_shows_q_sample_with_shared_noise():
    schedules = {name: NoiseSchedule.from_name(name, 100) for name in ("linear", "cosine")}
    x0 = torch.rand(3, 8, 8) * 2 - 1
    fig = viz.forward_process_strip(schedules, x0, timesteps=(0, 50, 99), generator=torch.Generator().manual_seed(0))
    assert len(fig.axes) == 6
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    expected = schedules["cosine"].q_sample(x0[None], 50, eps=eps[None])[0]
    shown = torch.as_tensor(fig.axes[4].images[0].get_array().data).permute(2, 0, 1)
    assert torch.allclose(shown.float(), ((expected + 1) / 2).clamp(0, 1), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        viz.forward_process_strip(schedules, x0[None], timesteps=(0,))


def test_plot_schedules_draws_alpha_bar_and_snr_per_schedule():
    schedules = {name: NoiseSchedule.from_name(name, 50) for name in ("linear", "cosine", "scaled_linear")}
    fig = viz.plot_schedules(schedules)
    assert [len(ax.lines) for ax in fig.axes] == [3, 3]
    assert torch.allclose(torch.as_tensor(fig.axes[0].lines[1].get_ydata()), schedules["cosine"].alpha_bar.double())


def test_settings_grid_and_explore_validation():
    def render(t=0):
        fig = Figure()
        fig.add_subplot().set_title(f"t={t}")
        return fig

    grid = viz.settings_grid(render, [{"t": 0}, {"t": 5}, {"t": 9}])
    assert len(grid.axes) == 3 and all(ax.images for ax in grid.axes)
    with pytest.raises(ValueError, match="at least one setting"):
        viz.settings_grid(render, [])
    with pytest.raises(ValueError, match="not among the controls"):
        viz.explore(render, static=[{"step": 1}], t=(0, 9))


def test_live_controls_update_on_release_and_start_at_the_defaults():
    ipywidgets = pytest.importorskip("ipywidgets")

    def render(t=250, eta=0.0, schedule="cosine", prompt="a red circle"):
        return Figure()

    widgets = viz.live_controls(
        render, t=(0, 999, 1), eta=(0.0, 1.0, 0.1), schedule=["linear", "cosine"], prompt="a red circle"
    )
    assert isinstance(widgets["t"], ipywidgets.IntSlider) and isinstance(widgets["eta"], ipywidgets.FloatSlider)
    assert isinstance(widgets["schedule"], ipywidgets.Dropdown) and isinstance(widgets["prompt"], ipywidgets.Text)
    for name in ("t", "eta", "prompt"):
        assert widgets[name].continuous_update is False, f"{name} would redraw at every tick of a drag"
    assert (widgets["t"].value, widgets["schedule"].value) == (250, "cosine")
    ready_made = ipywidgets.IntSlider(min=0, max=9)  # continuous_update=True by default
    assert viz.live_controls(render, t=ready_made)["t"].continuous_update is False
    with pytest.raises(ValueError, match="cannot be made into a widget"):
        viz.live_controls(render, t=object())


def test_explore_builds_its_sliders_with_continuous_update_false(monkeypatch):
    ipywidgets = pytest.importorskip("ipywidgets")
    import IPython.display

    shown, interacted = [], {}
    monkeypatch.setattr(IPython.display, "display", shown.append)
    monkeypatch.setattr(ipywidgets, "interact", lambda render, **widgets: interacted.update(widgets))

    def render(t=0, eta=0.0):
        fig = Figure()
        fig.add_subplot().set_title(f"t={t}, eta={eta}")
        return fig

    viz.explore(render, static=[{"t": 0}], t=(0, 9), eta=(0.0, 1.0, 0.5))
    assert len(shown) == 1 and isinstance(shown[0], Figure)  # the static grid comes first
    assert set(interacted) == {"t", "eta"}
    assert isinstance(interacted["t"], ipywidgets.IntSlider) and isinstance(interacted["eta"], ipywidgets.FloatSlider)
    assert all(w.continuous_update is False for w in interacted.values())


def test_denoising_strip_lays_out_steps_by_images():
    frames = [(t, torch.full((5, 3, 4, 4), t / 999 * 2 - 1)) for t in (999, 500, 0)]
    fig = viz.denoising_strip(frames, max_images=2)
    assert len(fig.axes) == 6 and fig.axes[0].get_title() == "t=999"
    assert float(fig.axes[2].images[0].get_array().max()) == pytest.approx(0.0)  # t=0 frame shows -1 as black
    with pytest.raises(ValueError, match="at least one"):
        viz.denoising_strip([])
