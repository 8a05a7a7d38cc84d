"""dlcourse.pretrained_flow: notebook 10's flow model has notebook 03's U-Net recipe and trains once; the reflowed
model trains on pairs drawn once from its base's weights, then loads."""

import pytest
import torch

from dlcourse.modes import settings
from dlcourse.pretrained import ddpm_unet_config
from dlcourse.pretrained_flow import shapes_flow, shapes_reflow, train_reflow
from dlcourse.sampling import flow_euler_sample

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("mode", ["gpu", "cpu", "smoke"])
def test_the_flow_recipe_is_notebook_03s_unet_and_budget(mode):
    flow, ddpm = settings("flow_shapes", mode), settings("ddpm_shapes", mode)
    assert ddpm_unet_config(flow) == ddpm_unet_config(ddpm)
    for name in ("steps", "batch_size", "lr", "betas", "warmup_steps", "lr_decay", "ema_decay", "n_train", "seed"):
        assert flow[name] == ddpm[name], name
    assert "schedule" not in flow and "prediction_type" not in flow


def test_shapes_flow_trains_once_then_loads(data_dir):
    first = shapes_flow("smoke", "cpu", progress=False)
    recipe = settings("flow_shapes", "smoke")
    assert first.result.start_step == 0 and first.result.steps == recipe.steps
    second = shapes_flow("smoke", "cpu", progress=False)
    assert second.result.start_step == recipe.steps  # loaded
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    other = shapes_flow("smoke", "cpu", progress=False, t_distribution="uniform")
    assert other.result.start_step == 0  # another t distribution is another model
    x = flow_euler_sample(first.model, torch.randn(2, 3, recipe.resolution, recipe.resolution), num_steps=2,
                          progress=False)
    assert x.shape == (2, 3, recipe.resolution, recipe.resolution) and torch.isfinite(x).all()


def test_reflow_draws_its_pairs_once_per_base_weights_and_trains_once(data_dir):
    reflowed = shapes_reflow("smoke", "cpu", progress=False)
    recipe = settings("reflow_shapes", "smoke")
    assert reflowed.result.start_step == 0 and reflowed.result.steps == recipe.steps
    pairs = sorted((data_dir / "checkpoints").glob("reflow_pairs-*.pt"))
    assert len(pairs) == 1
    again = shapes_reflow("smoke", "cpu", progress=False)
    assert again.result.start_step == recipe.steps  # loaded, the same pairs
    assert sorted((data_dir / "checkpoints").glob("reflow_pairs-*.pt")) == pairs

    base = shapes_flow("smoke", "cpu", progress=False)
    with torch.no_grad():
        for p in base.model.parameters():
            p.add_(0.01)  # other weights, the same recipe: other pairs, another run
    moved = train_reflow(recipe, base, "cpu", progress=False)
    assert moved.result.start_step == 0
    assert len(sorted((data_dir / "checkpoints").glob("reflow_pairs-*.pt"))) == 2
