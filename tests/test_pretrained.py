"""dlcourse.pretrained: the first call trains and caches, the next one loads the same weights without training."""

import pytest
import torch

from dlcourse.checkpoints import CheckpointError, load_checkpoint
from dlcourse.modes import settings
from dlcourse.pretrained import ddpm_checkpoint_path, shapes_ddpm
from dlcourse.schedules import NoiseSchedule


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


def test_overrides_train_and_cache_their_own_model(data_dir):
    eps = shapes_ddpm(mode="smoke", device="cpu", progress=False, prediction_type="eps", schedule="linear")
    assert eps.prediction_type == "eps" and eps.recipe.schedule == "linear"
    linear = NoiseSchedule.from_name("linear", eps.recipe.num_timesteps)
    assert torch.equal(eps.schedule.alpha_bar, linear.alpha_bar)
    path = ddpm_checkpoint_path("ddpm_shapes", eps.recipe)
    assert path.is_file() and load_checkpoint(path)["config"]["prediction_type"] == "eps"
    default = ddpm_checkpoint_path("ddpm_shapes", settings("ddpm_shapes", "smoke"))
    assert path != default and not default.exists()  # the default recipe was not touched
    same = settings("ddpm_shapes", "smoke", prediction_type=settings("ddpm_shapes", "smoke").prediction_type)
    assert ddpm_checkpoint_path("ddpm_shapes", same) == default  # an override equal to the table: the same model
    again = shapes_ddpm(mode="smoke", device="cpu", progress=False, schedule="linear", prediction_type="eps")
    assert again.result.start_step == eps.result.steps  # loaded, whatever the order of the overrides


def test_an_unknown_override_is_refused(data_dir):
    with pytest.raises(ValueError, match="nonsense"):
        shapes_ddpm(mode="smoke", device="cpu", progress=False, nonsense=1)


def test_shapes_vae_trains_once_then_loads_and_fits_its_recipe(data_dir):
    from dlcourse.pretrained import shapes_vae

    first = shapes_vae(mode="smoke", device="cpu", progress=False)
    recipe = settings("vae_shapes", "smoke")
    assert first.result.start_step == 0 and len(first.result.loss_history) == recipe.steps
    config = first.vae.config
    assert config.resolution == recipe.resolution and config.latent_channels == recipe.latent_channels
    second = shapes_vae(mode="smoke", device="cpu", progress=False)
    assert second.result.start_step == recipe.steps  # loaded: no step trained again
    for a, b in zip(first.vae.state_dict().values(), second.vae.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not second.vae.training
    assert ddpm_checkpoint_path("vae_shapes", recipe).is_file()


def test_shapes_text2img_starts_from_the_cached_ddpm_trains_once_then_loads(data_dir):
    from dlcourse.pretrained import shapes_text2img

    first = shapes_text2img(mode="smoke", device="cpu", progress=False)
    recipe = settings("text_shapes", "smoke")
    assert ddpm_checkpoint_path("ddpm_shapes", settings("ddpm_shapes", "smoke")).is_file()  # the base, cached too
    assert first.result.start_step == 0 and len(first.result.loss_history) == recipe.steps
    assert first.holdout[0] == {"colour": "red", "shape": "triangle"} and not first.model.training
    second = shapes_text2img(mode="smoke", device="cpu", progress=False)
    assert second.result.start_step == recipe.steps  # loaded: no step trained again
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    ids, mask = second.tokenizer.encode(["a small red circle at the top left", ""])
    x = torch.randn(2, 3, second.model.config.resolution, second.model.config.resolution)
    with torch.no_grad():
        assert second.model(x, torch.tensor([10, 900]), ids, mask).shape == x.shape
