"""dlcourse.pretrained: the first call trains and caches, the next one loads the same weights without training."""

import pytest
import torch

from dlcourse.checkpoints import CheckpointError
from dlcourse.modes import settings
from dlcourse.pretrained import ddpm_checkpoint_path, shapes_ddpm


@pytest.fixture
def data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path))
    return tmp_path


def test_shapes_ddpm_trains_once_then_loads(data_dir):
    first = shapes_ddpm(mode="smoke", device="cpu", progress=False)
    recipe = settings("ddpm_shapes", "smoke")
    assert first.result.start_step == 0 and first.result.steps == recipe.steps
    assert len(first.result.loss_history) == recipe.steps
    path = ddpm_checkpoint_path("ddpm_shapes", recipe)
    assert path.is_file() and path.parent == data_dir / "checkpoints"

    second = shapes_ddpm(mode="smoke", device="cpu", progress=False)
    assert second.result.start_step == recipe.steps  # loaded: no step trained again
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert second.result.loss_history == first.result.loss_history
    assert not second.model.training and second.schedule.num_timesteps == recipe.num_timesteps
    ema, raw = first.model.state_dict(), first.raw_model.state_dict()
    assert any(not torch.equal(ema[k], raw[k]) for k in ema), "EMA and raw weights should differ"


def test_corrupt_cache_is_an_error_not_a_silent_retrain(data_dir):
    path = ddpm_checkpoint_path("ddpm_shapes", settings("ddpm_shapes", "smoke"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="Delete it"):
        shapes_ddpm(mode="smoke", device="cpu", progress=False)
