"""dlcourse.releases and the released weights in dlcourse/weights/: every shipped file loads, matches its manifest's
hash and its recipe, has the architecture the release recipe trains; pretrained loads a release exactly where one
stands in for the recipe asked for, and a changed file or recipe is an error, never other weights."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from dlcourse import releases
from dlcourse.checkpoints import CheckpointError
from dlcourse.modes import settings
from dlcourse.pretrained import shapes_ddpm, shapes_text2img, shapes_vae, train_ddpm, train_text2img, train_vae
from dlcourse.pretrained_flow import train_flow, train_reflow
from dlcourse.recipes import RECIPES, RELEASES
from dlcourse.releases import (
    load_release,
    matching_release,
    read_manifest,
    recipe_hash,
    release_recipe,
    save_release,
    shipped,
    starting_recipe,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SHIPPED = sorted(read_manifest())


@pytest.fixture
def data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DLCOURSE_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def weights_dir(monkeypatch, tmp_path):
    """An empty weights folder in place of dlcourse/weights/."""
    folder = tmp_path / "weights"
    monkeypatch.setattr(releases, "WEIGHTS_DIR", folder)
    return folder


def _trained_two_steps(name):
    """What the release recipe of ``name`` trains, stopped after 2 steps (the architecture and the keys)."""
    recipe = release_recipe(name)
    kind = RELEASES[name]["recipe"]
    if kind == "ddpm_shapes":
        trained = train_ddpm(recipe, "cpu", progress=False, until=2)
        return trained.model.state_dict(), trained.raw_model.state_dict(), trained.result
    if kind == "vae_shapes":
        trained = train_vae(recipe, "cpu", progress=False, until=2)
        return trained.vae.state_dict(), trained.result.model.state_dict(), trained.result
    if kind == "flow_shapes":
        trained = train_flow(recipe, "cpu", progress=False, until=2)
        return trained.model.state_dict(), trained.raw_model.state_dict(), trained.result
    if kind == "reflow_shapes":  # a few pairs of few steps: the architecture does not depend on them
        base = train_flow(release_recipe("flow_shapes"), "cpu", progress=False, until=1)
        few = settings("reflow_shapes", "cpu", n_pairs=32, pair_steps=1)  # one batch of pairs
        trained = train_reflow(few, base, "cpu", progress=False, until=2)
        return trained.model.state_dict(), trained.raw_model.state_dict(), trained.result
    base = train_ddpm(release_recipe("ddpm_shapes"), "cpu", progress=False, until=1)
    trained = train_text2img(recipe, base, "cpu", progress=False, until=2)
    return trained.model.state_dict(), trained.raw_model.state_dict(), trained.result


# ----------------------------------------------------------------------------------------------------------
# The shipped files.
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_release_loads_matches_its_hash_and_its_recipe(name):
    entry = read_manifest()[name]
    assert name in RELEASES, f"{name} is shipped but has no recipe in dlcourse.recipes.RELEASES"
    assert shipped(name), f"{name} was made by another recipe than RELEASES has now: run make release-models"
    assert entry["recipe_hash"] == recipe_hash(entry["recipe"])
    release = load_release(name)  # checks the sha256
    assert release.ema and len(release.loss_history) == entry["steps"] == release_recipe(name).steps
    assert bool(release.raw) == bool(RELEASES[name].get("ship_raw")), "raw weights shipped exactly where asked for"
    assert all(v.dtype == torch.float16 for v in release.ema.values() if v.is_floating_point())
    for key in ("seed", "wall_s", "machine", "commit", "torch", "figures", "curve"):
        assert key in entry, f"the manifest entry of {name} lacks {key!r}"


@pytest.mark.parametrize("name", SHIPPED)
def test_the_release_recipe_trains_the_architecture_that_was_shipped(name, data_dir):
    ema, raw, _ = _trained_two_steps(name)
    release = load_release(name)
    for shipped_weights in (release.ema, release.raw or release.ema):
        assert shipped_weights.keys() == ema.keys() == raw.keys()
        assert all(shipped_weights[k].shape == ema[k].shape for k in ema)


def test_every_release_is_a_cpu_recipe_changed_only_in_its_variant_and_length():
    allowed = {"steps", "lr_decay", "ema_decay"}
    for name, spec in RELEASES.items():
        assert spec["recipe"] in RECIPES
        assert set(spec["training"]) <= allowed, f"{name} changes more than the training length"
        assert release_recipe(name).mode == "cpu"
        assert matching_release(spec["recipe"], starting_recipe(name)) == name


# ----------------------------------------------------------------------------------------------------------
# Which recipe gets a release.
# ----------------------------------------------------------------------------------------------------------


def test_a_release_stands_in_only_for_its_own_cpu_recipe():
    assert matching_release("ddpm_shapes", settings("ddpm_shapes", "cpu")) == "ddpm_shapes"
    eps = settings("ddpm_shapes", "cpu", schedule="linear", prediction_type="eps")
    assert matching_release("ddpm_shapes", eps) == "ddpm_shapes_eps_linear"
    assert matching_release("ddpm_shapes", settings("ddpm_shapes", "cpu", steps=1600)) is None  # asked for another run
    assert matching_release("ddpm_shapes", settings("ddpm_shapes", "smoke")) is None
    assert matching_release("ddpm_shapes", settings("ddpm_shapes", "gpu")) is None
    assert matching_release("vae_shapes", settings("vae_shapes", "cpu")) == "vae_shapes"
    assert matching_release("vae_shapes", settings("vae_shapes", "cpu", kl_weight=1e-2)) is None


def test_released_true_where_none_fits_is_a_clear_error():
    with pytest.raises(ValueError, match="no release stands in"):
        shapes_ddpm("smoke", "cpu", progress=False, released=True)


def test_a_release_not_shipped_trains_as_before(weights_dir, data_dir):
    trained = shapes_ddpm("smoke", "cpu", progress=False)  # smoke: never a release
    assert trained.result.start_step == 0
    assert not shipped("ddpm_shapes")  # an empty weights folder
    with pytest.raises(ValueError, match="not shipped"):
        shapes_ddpm("cpu", "cpu", progress=False, released=True)


# ----------------------------------------------------------------------------------------------------------
# Save, load, refuse.
# ----------------------------------------------------------------------------------------------------------


def _ship(name, weights_dir):
    ema, raw, result = _trained_two_steps(name)
    entry = {"steps": release_recipe(name).steps, "seed": 0, "wall_s": 1.0, "machine": "test", "commit": "test",
             "torch": torch.__version__, "figures": {}, "curve": []}
    if name == "text_shapes":
        entry["base_release"] = "ddpm_shapes"
    history = result.loss_history + [0.0] * (entry["steps"] - len(result.loss_history))
    raw = raw if RELEASES[name].get("ship_raw") else {}
    return save_release(name, ema, raw, history, entry), ema, raw


def test_pretrained_loads_a_shipped_release_in_cpu_mode(weights_dir, data_dir):
    entry, ema, raw = _ship("ddpm_shapes", weights_dir)
    assert (weights_dir / entry["file"]).is_file() and read_manifest()["ddpm_shapes"]["sha256"] == entry["sha256"]
    loaded = shapes_ddpm("cpu", "cpu", progress=False)
    for key, value in loaded.model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, ema[key].half().float()), key
    assert any(not torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(),
                                                      loaded.raw_model.state_dict().values(), strict=True))
    assert not loaded.model.training and loaded.recipe.steps == RELEASES["ddpm_shapes"]["training"]["steps"]
    assert loaded.result.start_step == loaded.result.steps == loaded.recipe.steps  # nothing trained here
    assert not list((data_dir / "checkpoints").glob("ddpm_shapes-*.pt"))[1:]  # only _ship's own training run
    own = shapes_ddpm("cpu", "cpu", progress=False, released=False, steps=2)  # asked for training: trained
    assert own.result.start_step == 0 and own.recipe.steps == 2


def test_the_text_and_vae_releases_load(weights_dir, data_dir):
    _ship("ddpm_shapes", weights_dir)
    _, text_ema, _ = _ship("text_shapes", weights_dir)
    text = shapes_text2img("cpu", "cpu", progress=False)
    assert all(torch.equal(v, text_ema[k].half().float()) for k, v in text.model.state_dict().items())
    assert text.raw_model is None and text.result.model is None  # the text release ships its EMA weights only
    assert text.recipe.steps == RELEASES["text_shapes"]["training"]["steps"]
    _, vae_ema, _ = _ship("vae_shapes", weights_dir)
    vae = shapes_vae("cpu", "cpu", progress=False)
    assert all(torch.equal(v, vae_ema[k].half().float()) for k, v in vae.vae.state_dict().items())


def test_a_changed_file_is_refused(weights_dir, data_dir):
    entry, _, _ = _ship("ddpm_shapes", weights_dir)
    path = weights_dir / entry["file"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one byte of the weights
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its manifest"):
        shapes_ddpm("cpu", "cpu", progress=False)


def test_a_release_of_another_recipe_is_stale_and_refused(weights_dir, data_dir, monkeypatch):
    _ship("ddpm_shapes", weights_dir)
    manifest = json.loads((weights_dir / "manifest.json").read_text())
    manifest["ddpm_shapes"]["recipe"]["lr"] = 1.0  # as if the recipe had changed since the weights were made
    (weights_dir / "manifest.json").write_text(json.dumps(manifest))
    assert not shipped("ddpm_shapes")
    with pytest.raises(CheckpointError, match="lr: 1.0 then, 0.002 now"):
        load_release("ddpm_shapes")


def test_the_repository_ships_every_release_it_names():
    folder = releases.WEIGHTS_DIR
    files = sorted(p.name for p in folder.glob("*.safetensors"))
    assert files == sorted(read_manifest()[name]["file"] for name in SHIPPED), "a weights file without an entry"
    for name in SHIPPED:
        tensors = load_file(str(folder / read_manifest()[name]["file"]))
        assert "loss_history" in tensors


def test_save_release_writes_nothing_half_done(weights_dir, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("dlcourse.checkpoints.os.replace", broken)
    with pytest.raises(OSError, match="disk full"):
        save_release("vae_shapes", {"w": torch.ones(2)}, {"w": torch.ones(2)}, [0.1], {"steps": 1})
    assert not any(weights_dir.iterdir()) if weights_dir.exists() else True
    shutil.rmtree(weights_dir, ignore_errors=True)
