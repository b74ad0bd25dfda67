"""``bench new-plugin``: the skeleton it writes installs, is discovered, and passes its own tests.

Packages are installed offline with ``pip install --target`` into a temporary directory, which
then goes on ``PYTHONPATH`` of a subprocess, so the test venv itself is never modified.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner
from plugin_repos import install_offline, site_env

from harness.cli import cli
from harness.errors import BenchError
from harness.registry.skeleton import write_plugin

BENCH = Path(sys.executable).with_name("bench")


def run_with_site(
    site: Path, *command: str | Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with ``site`` first on PYTHONPATH and no BENCH_PLUGINS."""
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, env=site_env(site), cwd=cwd
    )


def listed_models(site: Path) -> dict[str, dict]:
    """``bench list models --json`` with the packages installed in ``site``, by model name."""
    result = run_with_site(site, BENCH, "list", "models", "--json")
    assert result.returncode == 0, result.stderr
    return {row["name"]: row for row in json.loads(result.stdout)}


def test_write_plugin_writes_an_installable_package(tmp_path: Path):
    files = write_plugin("my-models", tmp_path / "pkg")
    relative = {p.relative_to(tmp_path / "pkg").as_posix() for p in files}
    assert relative == {
        "pyproject.toml",
        "README.md",
        "bench_my_models/__init__.py",
        "bench_my_models/models.py",
        "bench_my_models/datasets.py",
        "tests/test_bench_my_models.py",
        ".github/workflows/bench.yml",
    }
    project = tomllib.loads((tmp_path / "pkg" / "pyproject.toml").read_text())["project"]
    assert (project["name"], project["dependencies"]) == ("bench-my-models", ["bench-harness"])
    assert project["entry-points"]["bench"] == {
        "my-models-models": "bench_my_models.models",
        "my-models-datasets": "bench_my_models.datasets",
    }
    assert project["readme"] == "README.md"
    for path in files:
        if path.suffix == ".py":
            compile(path.read_text(), str(path), "exec")


def test_the_skeleton_depends_on_this_bench_not_a_namesake(tmp_path: Path):
    """Its dependency is the installed bench-harness: pip, offline, has nothing more to install
    (the package index's unrelated 'bench' would be resolved for a dependency on 'bench')."""
    write_plugin("my-models", tmp_path / "pkg")
    pip = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index"]
    pip += ["--no-build-isolation", "--report", "-", "--quiet", str(tmp_path / "pkg")]
    report = subprocess.run(pip, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    installs = [item["metadata"]["name"] for item in json.loads(report.stdout)["install"]]
    assert installs == ["bench-my-models"]


@pytest.mark.parametrize("name", ["", "My Plugin", "1st", "a--b", "x/y", "-a", "b_", "Caps"])
def test_invalid_names_are_refused(tmp_path: Path, name: str):
    with pytest.raises(BenchError, match="is not valid"):
        write_plugin(name, tmp_path / "pkg")
    assert not (tmp_path / "pkg").exists()


def test_existing_directory_is_not_overwritten(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(BenchError, match="already exists"):
        write_plugin("fine", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_an_empty_directory_is_used(tmp_path: Path):
    assert (tmp_path / "pyproject.toml") in write_plugin("fine", tmp_path)


def test_cli_writes_the_package_and_prints_next_steps(tmp_path: Path):
    directory = tmp_path / "out"
    result = CliRunner().invoke(cli, ["new-plugin", "tiny", "--dir", str(directory)])
    assert result.exit_code == 0, result.output
    assert f"wrote {directory / 'pyproject.toml'}" in result.output
    steps = (f"pip install -e '{directory}[test]'", f"pytest {directory}", "bench list models")
    for step in steps:
        assert step in result.output
    assert "[test] extra (pytest)" in result.output
    assert (directory / "bench_tiny" / "models.py").is_file()


def test_cli_defaults_to_bench_name_in_the_current_directory(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(cli, ["new-plugin", "tiny"]).exit_code == 0
    assert (tmp_path / "bench-tiny" / "pyproject.toml").is_file()


def test_cli_reports_a_bad_name_with_exit_code_2(tmp_path: Path):
    result = CliRunner().invoke(cli, ["new-plugin", "Bad Name", "--dir", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: plugin name 'Bad Name' is not valid")


def test_generated_plugin_installs_is_discovered_and_passes_its_tests(tmp_path: Path):
    package = tmp_path / "bench-scaffolded"
    write_plugin("scaffolded", package)
    install_offline(package, tmp_path / "site")

    models = listed_models(tmp_path / "site")
    assert models["scaffolded-mlp"]["source"] == (
        "plugin 'scaffolded-models' (entry point bench_scaffolded.models (bench-scaffolded))"
    )

    tests = run_with_site(
        tmp_path / "site",
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        package / "tests",
        cwd=tmp_path,
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


def test_skeleton_readme_says_to_install_the_test_extra_it_defines(tmp_path: Path):
    """The tests need pytest: the README installs the [test] extra, which pyproject defines."""
    write_plugin("extra", tmp_path)
    project = tomllib.loads((tmp_path / "pyproject.toml").read_text())["project"]
    assert project["optional-dependencies"]["test"] == ["pytest"]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# bench-extra\n")
    assert "pip install -e '.[test]'" in readme and "\npytest " in readme
    for name in ("extra-mlp", "extra-blobs", "bench_extra/models.py", "tests/test_bench_extra.py"):
        assert name in readme
