"""dlcourse.report: figures are printed, appended under `make course`, and broken figures are refused."""

import json
import math

import pytest

from dlcourse.report import REPORT_ENV, record, record_settings


def test_record_prints_and_appends(monkeypatch, tmp_path, capsys):
    path = tmp_path / "figures.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(path))
    assert record("fid", 12.5, "", note="1000 samples") == 12.5
    record("params", 1234567)
    out = capsys.readouterr().out
    assert "[measured] fid = 12.5" in out and "1,234,567" in out
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["name"] for r in rows] == ["fid", "params"] and rows[0]["note"] == "1000 samples"


def test_record_without_runner_only_prints(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv(REPORT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    record("x", 1.0)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_record_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="not finite"):
        record("loss", bad)


def test_record_refuses_tensors_and_bools():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"\.item\(\)"):
        record("loss", torch.tensor(1.0))
    with pytest.raises(TypeError):
        record("flag", True)


def test_record_settings_appends_table_and_overrides_and_prints_only_overrides(monkeypatch, tmp_path, capsys):
    path = tmp_path / "figures.jsonl"
    monkeypatch.setenv(REPORT_ENV, str(path))
    record_settings("nb", "cpu", {"n": 10, "steps": (1, 2)}, {})
    assert capsys.readouterr().out == ""
    record_settings("nb", "cpu", {"n": 10, "steps": (1, 2)}, {"n": 20})
    assert "[settings] nb, cpu mode: n=20 (table: 10)" in capsys.readouterr().out
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == [
        {"settings": "nb", "mode": "cpu", "table": {"n": 10, "steps": [1, 2]}, "overrides": {}},
        {"settings": "nb", "mode": "cpu", "table": {"n": 10, "steps": [1, 2]}, "overrides": {"n": 20}},
    ]
