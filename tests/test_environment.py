"""The project's own files agree: environment.yml == pyproject.toml, CI runs the README's test command."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _normalise(requirement: str) -> str:
    name, _, spec = re.match(r"^([A-Za-z0-9_.\-\[\]]+)\s*(.*)$", requirement.strip()).group(1, 0, 2)
    return re.sub(r"[-_.]+", "-", name).lower() + spec.replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    expected = {_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "environment.yml should have exactly one pip: section"
    listed = [r for r in pip_sections[0] if not r.startswith("-e")]
    assert "-e ." in pip_sections[0], "environment.yml should install the package itself (-e .)"
    got = {_normalise(r) for r in listed}
    assert got == expected, (
        f"only in pyproject: {sorted(expected - got)}; only in environment.yml: {sorted(got - expected)}"
    )
    python_pin = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    minimum = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python_pin.split("=")[-1].split("."))) >= tuple(map(int, minimum.split("."))), python_pin


def test_pyproject_admits_the_torch_ci_installs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = {r.split(">=")[0]: r for r in project["dependencies"]}
    for name, version in [("torch", (2, 14, 1)), ("torchvision", (0, 29, 1))]:
        low = tuple(map(int, spec[name].split(">=")[1].split(",")[0].split(".")))
        assert low <= version and "<" not in spec[name], f"{spec[name]} must admit {version}"


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    for target in ("lab:", "test:", "course:"):
        assert re.search(rf"^{target}", makefile, re.M), f"Makefile lacks {target}"
