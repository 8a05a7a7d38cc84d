"""dlcourse.modes: the run mode rules, the per-notebook settings table, and overrides of its values."""

import json
import re
from pathlib import Path

import pytest
import torch

from dlcourse import modes
from dlcourse.report import REPORT_ENV

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("DLCOURSE_SMOKE", raising=False)
    monkeypatch.delenv("DLCOURSE_MODE", raising=False)
    return monkeypatch


def test_mode_follows_the_hardware(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    assert modes.run_mode() == "cpu"
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    assert modes.run_mode() == "gpu"


def test_smoke_variable_wins(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: True)
    clean_env.setenv("DLCOURSE_SMOKE", "1")
    clean_env.setenv("DLCOURSE_MODE", "gpu")
    assert modes.run_mode() == "smoke"
    clean_env.setenv("DLCOURSE_SMOKE", "0")
    assert modes.run_mode() == "gpu"


def test_forced_mode_is_checked(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    clean_env.setenv("DLCOURSE_MODE", "cpu")
    assert modes.run_mode() == "cpu"
    clean_env.setenv("DLCOURSE_MODE", "fast")
    with pytest.raises(ValueError, match="not a run mode"):
        modes.run_mode()
    clean_env.setenv("DLCOURSE_MODE", "gpu")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        modes.run_mode()


def test_every_notebook_has_settings_for_every_mode_with_the_same_keys():
    notebooks = {p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")}
    assert notebooks, "no notebooks found"
    assert notebooks == set(modes.NOTEBOOK_SETTINGS), "settings table and notebooks/ disagree"
    assert not notebooks & set(modes.RECIPES), "a recipe must not share a notebook's name"
    for name, table in (modes.NOTEBOOK_SETTINGS | modes.RECIPES).items():
        assert set(table) == set(modes.MODES), name
        keys = {mode: set(values) for mode, values in table.items()}
        assert keys["gpu"] == keys["cpu"] == keys["smoke"], f"{name}: modes define different sizes {keys}"


def test_settings_read_as_attributes_and_are_read_only():
    cfg = modes.settings("01_forward_process", mode="smoke")
    assert cfg.mode == "smoke" and cfg["resolution"] == cfg.resolution
    assert cfg.n_chain < modes.settings("01_forward_process", mode="gpu").n_chain
    with pytest.raises(AttributeError, match="has no setting 'n_epochs'"):
        _ = cfg.n_epochs
    with pytest.raises(AttributeError, match=r"read-only.*settings\('01_forward_process', n_chain=5\)"):
        cfg.n_chain = 5  # the message says how to change it: an override, not an edit of modes.py
    assert modes.settings("ddpm_shapes", mode="cpu").steps > modes.settings("ddpm_shapes", mode="smoke").steps
    with pytest.raises(ValueError, match="known notebooks"):
        modes.settings("99_nope")


def test_overrides_replace_values_and_show_in_the_repr():
    table = dict(modes.NOTEBOOK_SETTINGS["03_ddpm_training"]["cpu"])
    cfg = modes.settings("03_ddpm_training", mode="cpu", n_eval=500)
    assert cfg.n_eval == cfg["n_eval"] == 500 and cfg.sample_steps == table["sample_steps"]
    assert f"n_eval=500 (overridden; table: {table['n_eval']})" in repr(cfg)
    assert "sample_steps" in repr(cfg) and repr(cfg).count("overridden") == 1
    assert modes.NOTEBOOK_SETTINGS["03_ddpm_training"]["cpu"] == table  # the table itself is untouched
    assert modes.settings("03_ddpm_training", mode="cpu").n_eval == table["n_eval"]
    assert "overridden" not in repr(modes.settings("03_ddpm_training", mode="cpu"))


def test_recipes_take_overrides_in_the_tables_types():
    recipe = modes.settings("ddpm_shapes", mode="cpu", steps=1600, lr=1, channel_mults=[1, 2], schedule="linear")
    assert recipe.steps == 1600 and recipe.schedule == "linear"
    assert recipe.lr == 1.0 and isinstance(recipe.lr, float)  # a float setting stores a float
    assert recipe.channel_mults == (1, 2)  # a list becomes a tuple, like the table's
    assert modes.settings("ddpm_shapes", mode="cpu").steps == modes.RECIPES["ddpm_shapes"]["cpu"]["steps"]


def test_unknown_override_lists_the_settings():
    known = sorted(modes.NOTEBOOK_SETTINGS["03_ddpm_training"]["cpu"])
    with pytest.raises(ValueError, match=rf"no setting 'n_evals' to override.*{re.escape(str(known))}"):
        modes.settings("03_ddpm_training", mode="cpu", n_evals=500)
    with pytest.raises(ValueError, match=r"no setting 'batch', 'n_evals' to override; the settings of ddpm_shapes"):
        modes.settings("ddpm_shapes", mode="cpu", n_evals=500, batch=3)


@pytest.mark.parametrize(
    "notebook, override, message",
    [
        ("03_ddpm_training", {"n_eval": "500"}, r"n_eval is an int setting, got '500' of type str; pass an int"),
        ("03_ddpm_training", {"n_eval": 500.0}, r"n_eval is an int setting, got 500.0 of type float"),
        ("03_ddpm_training", {"n_eval": True}, r"n_eval is an int setting, got True of type bool"),
        ("ddpm_shapes", {"lr": "1e-3"}, r"lr is a number setting, got '1e-3'"),
        ("ddpm_shapes", {"schedule": 1}, r"schedule is a str setting, got 1 of type int"),
        ("04_ddim_sampling", {"steps": 50}, r"steps is a tuple setting, got 50 of type int"),
        ("04_ddim_sampling", {"steps": (10, "50")}, r"steps\[1\] is an int setting, got '50'"),
    ],
)
def test_override_of_the_wrong_type_is_refused(notebook, override, message):
    with pytest.raises(TypeError, match=rf"settings\('{notebook}'\): {message}"):
        modes.settings(notebook, mode="cpu", **override)


def test_settings_and_overrides_are_recorded_for_the_report(monkeypatch, tmp_path, capsys):
    path = tmp_path / "report.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(path))
    modes.settings("01_forward_process", mode="smoke")
    assert capsys.readouterr().out == ""  # the table's values need no comment
    modes.settings("04_ddim_sampling", mode="smoke", n_eval=32, steps=[2, 8])
    assert "[settings] 04_ddim_sampling, smoke mode: n_eval=32 (table: 16), steps=(2, 8)" in capsys.readouterr().out
    first, second = (json.loads(line) for line in path.read_text().splitlines())
    assert first == {"settings": "01_forward_process", "mode": "smoke", "overrides": {},
                     "table": json.loads(json.dumps(modes.NOTEBOOK_SETTINGS["01_forward_process"]["smoke"]))}
    assert second["settings"] == "04_ddim_sampling" and second["overrides"] == {"n_eval": 32, "steps": [2, 8]}
    assert second["table"]["n_eval"] == 16
