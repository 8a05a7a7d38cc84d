"""dlcourse.modes: the run mode rules and the per-notebook settings table."""

from pathlib import Path

import pytest
import torch

from dlcourse import modes

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
    with pytest.raises(AttributeError, match="read-only"):
        cfg.n_chain = 5
    assert modes.settings("ddpm_shapes", mode="cpu").steps > modes.settings("ddpm_shapes", mode="smoke").steps
    with pytest.raises(ValueError, match="known notebooks"):
        modes.settings("99_nope")
