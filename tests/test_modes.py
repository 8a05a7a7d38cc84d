"""dlcourse.modes: the run mode rules, the per-notebook settings table, and overrides of its values."""

import json
import math
import re
from pathlib import Path

import pytest
import torch

from dlcourse import dryrun, modes, record
from dlcourse.pretrained import ddpm_checkpoint_path
from dlcourse.report import DRY_RUN_NOTE, REPORT_ENV
from dlcourse.runtime import checkpoint_dir
from dlcourse.setting_checks import KINDS, check_value

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("DLCOURSE_SMOKE", raising=False)
    monkeypatch.delenv("DLCOURSE_MODE", raising=False)
    monkeypatch.delenv(dryrun.DRYRUN_ENV, raising=False)
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
    with pytest.raises(ValueError, match="no CUDA GPU.*DLCOURSE_DRYRUN=1"):
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


TABLES = modes.NOTEBOOK_SETTINGS | modes.RECIPES
# What a dry run must keep: the sizes that set a network's or an image's shape (dlcourse/dryrun.py).
SHAPES = {"resolution", "eval_resolution", "size", "base_channels", "channel_mults", "num_res_blocks",
          "attention_resolutions", "latent_channels", "text_dim", "text_depth", "text_heads", "max_length", "rank",
          "num_timesteps", "schedule", "prediction_type", "gradient_checkpointing", "seed"}


def test_dry_run_is_gpu_mode_without_a_gpu(clean_env):
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    clean_env.setenv("DLCOURSE_MODE", "gpu")
    clean_env.setenv(dryrun.DRYRUN_ENV, "1")
    assert modes.run_mode() == "gpu-dryrun" == dryrun.DRY_RUN_MODE
    assert modes.settings("ddpm_shapes").mode == "gpu-dryrun"
    clean_env.setenv(dryrun.DRYRUN_ENV, "0")
    with pytest.raises(ValueError, match="no CUDA GPU"):
        modes.run_mode()


@pytest.mark.parametrize("env", [{"DLCOURSE_MODE": "cpu"}, {}, {"DLCOURSE_MODE": "gpu", "DLCOURSE_SMOKE": "1"}])
def test_dry_run_needs_gpu_mode(clean_env, env):
    clean_env.setenv(dryrun.DRYRUN_ENV, "1")
    for name, value in env.items():
        clean_env.setenv(name, value)
    with pytest.raises(ValueError, match=r"DLCOURSE_DRYRUN=1 .* needs DLCOURSE_MODE=gpu"):
        modes.run_mode()


@pytest.mark.parametrize("name", sorted(TABLES))
def test_dry_run_keeps_the_gpu_shapes_and_cuts_only_the_listed_counts(name):
    gpu = TABLES[name]["gpu"]
    cut = dryrun.CUT[name]
    assert set(cut) <= set(gpu), f"{name}: CUT names settings the table lacks: {set(cut) - set(gpu)}"
    assert not set(cut) & SHAPES, f"{name}: a dry run must keep the shapes, but cuts {set(cut) & SHAPES}"
    cfg = modes.settings(name, mode="gpu-dryrun")
    for key, value in gpu.items():
        assert cfg[key] == cut.get(key, value), (name, key)
    for key in cut:
        assert f"{key}={cut[key]!r} (dry run; gpu: {gpu[key]!r})" in repr(cfg)
        if key in ("batch_size", "sample_batch", "db_batch") and gpu[key] >= 2:
            assert cfg[key] >= 2, f"{name}: {key} below 2 hides batch-dimension bugs"
        if key != "model_id":
            assert cfg[key] <= gpu[key], f"{name}: the dry run's {key} is larger than gpu mode's"
    assert set(dryrun.CUT) == set(TABLES)


def test_dry_run_img2img_runs_a_step_at_every_strength():
    cfg = modes.settings("08_stable_diffusion", mode="gpu-dryrun")
    assert all(int(cfg.num_steps * strength) >= 1 for strength in cfg.strengths)  # else sd.img2img refuses


def test_dry_run_figures_and_checkpoints_are_marked(clean_env, tmp_path, capsys):
    clean_env.setattr(torch.cuda, "is_available", lambda: False)
    clean_env.setenv("DLCOURSE_DATA", str(tmp_path))
    clean_env.setenv(REPORT_ENV, str(tmp_path / "report.jsonl"))
    record("fid", 3.0)
    clean_env.setenv("DLCOURSE_MODE", "gpu")
    clean_env.setenv(dryrun.DRYRUN_ENV, "1")
    record("fid", 3.0, note="n=16")
    assert capsys.readouterr().out.splitlines()[-1] == f"[measured] fid = 3  (n=16)  [{DRY_RUN_NOTE}]"
    plain, dry = (json.loads(line) for line in (tmp_path / "report.jsonl").read_text().splitlines())
    assert "dry_run" not in plain and dry["dry_run"] is True
    assert checkpoint_dir() == tmp_path / "checkpoints" / "gpu-dryrun"
    dry_path = ddpm_checkpoint_path("ddpm_shapes", modes.settings("ddpm_shapes"))
    assert dry_path.parent.name == "gpu-dryrun"
    # the same values in gpu mode (only the mode differs) still hash to another file
    same_values = modes.Settings("ddpm_shapes", "gpu", dict(modes.settings("ddpm_shapes")) | {"mode": "gpu"})
    assert ddpm_checkpoint_path("ddpm_shapes", same_values).name != dry_path.name


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_setting_has_a_kind_and_every_table_value_passes_it(name):
    for mode in (*modes.MODES, "gpu-dryrun"):
        for key, value in modes.settings(name, mode=mode).items():
            if key != "mode":
                assert key in KINDS, f"{name}.{key} has no kind in dlcourse/setting_checks.py"
                check_value(f"{name} ({mode})", key, value)


@pytest.mark.parametrize(
    "name, override, message",
    [
        ("ddpm_shapes", {"steps": -10}, r"steps got -10: it needs a positive int \(>= 1\)"),
        ("ddpm_shapes", {"batch_size": 0}, r"batch_size got 0: it needs a positive int"),
        ("ddpm_shapes", {"resolution": 0}, r"resolution got 0: it needs a positive int"),
        ("ddpm_shapes", {"warmup_steps": -1}, r"warmup_steps got -1: it needs an int >= 0"),
        ("ddpm_shapes", {"lr": 0}, r"lr got 0.0: it needs a finite learning rate > 0"),
        ("ddpm_shapes", {"lr": math.nan}, r"lr got nan: it needs a finite learning rate > 0"),
        ("ddpm_shapes", {"ema_decay": 1.0}, r"ema_decay got 1.0: it needs a decay in \[0, 1\)"),
        ("ddpm_shapes", {"betas": (0.9,)}, r"betas got \(0.9,\): it needs two values"),
        ("ddpm_shapes", {"betas": (0.9, 1.5)}, r"betas\[1\] got 1.5 \(in \(0.9, 1.5\)\): it needs a decay"),
        ("ddpm_shapes", {"channel_mults": ()}, r"channel_mults got \(\): it needs at least one element"),
        ("ddpm_shapes", {"channel_mults": [1, 0]}, r"channel_mults\[1\] got 0 \(in \(1, 0\)\): it needs a pos"),
        ("ddpm_shapes", {"schedule": "cosin"},
         r"schedule got 'cosin': Unknown beta schedule 'cosin'; choose one of"),
        ("ddpm_shapes", {"prediction_type": "noise"},
         r"prediction_type got 'noise': prediction_type must be one of \('eps'"),
        ("vae_shapes", {"reconstruction": "l2"}, r"reconstruction got 'l2': .*'l1'"),
        ("vae_shapes", {"kl_weight": -1e-6}, r"kl_weight got -1e-06: it needs a finite number >= 0"),
        ("text_shapes", {"p_uncond": 1.5}, r"p_uncond got 1.5: it needs a probability in \[0, 1\]"),
        ("text_shapes", {"holdout": ["purple hexagon"]},
         r"holdout\[0\] got 'purple hexagon' \(in \('purple hexagon',\)\): parse_caption: unknown word"),
        ("04_ddim_sampling", {"steps": (10, 0)}, r"steps\[1\] got 0 \(in \(10, 0\)\): it needs a positive int"),
        ("06_classifier_free_guidance", {"scales": (1.0, -3.0)}, r"scales\[1\] got -3.0 .* a finite number >= 0"),
        ("08_stable_diffusion", {"strengths": (0.5, 1.5)}, r"strengths\[1\] got 1.5 .* a probability"),
        ("08_stable_diffusion", {"model_id": " "}, r"model_id got ' ': it needs a non-empty model id"),
        ("08_stable_diffusion", {"show_scale": 0.0}, r"show_scale got 0.0: it needs a finite number > 0"),
        ("09_common_mistakes", {"seed": -1}, r"seed got -1: it needs an int >= 0"),
    ],
)
def test_override_of_a_value_the_setting_cannot_take_is_refused(name, override, message):
    with pytest.raises(ValueError, match=rf"settings\('{name}'\): {message}"):
        modes.settings(name, mode="cpu", **override)


def test_overrides_at_the_edges_are_taken():
    assert modes.settings("text_shapes", mode="cpu", p_uncond=0, p_name=1).p_uncond == 0.0
    assert modes.settings("ddpm_shapes", mode="cpu", attention_resolutions=(), warmup_steps=0).warmup_steps == 0
    assert modes.settings("08_stable_diffusion", mode="gpu", model_id=None).model_id is None  # the toy components
