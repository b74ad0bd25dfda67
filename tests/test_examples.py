"""The plugin examples in examples/ work as their docstrings and the README say."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sklearn.datasets import load_diabetes
from test_scaffold import install_offline, listed_models

from harness.cli import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SINGLE_FILE = EXAMPLES / "single_file_plugin.py"
PACKAGE = EXAMPLES / "plugin-package"
REGRESSION = EXAMPLES / "regression_plugin.py"


@pytest.mark.parametrize(
    "plugin, model",
    [(str(SINGLE_FILE), "logistic"), ("bench_example_models", "tiny-cnn")],
    ids=["single-file", "package-module"],
)
def test_example_model_trains_on_digits(plugin: str, model: str, tmp_path: Path, monkeypatch):
    monkeypatch.syspath_prepend(str(PACKAGE))  # the package's module, importable by name
    out = tmp_path / "out"
    result = CliRunner().invoke(
        cli,
        [
            "--plugin",
            plugin,
            "run",
            "--model",
            model,
            "--dataset",
            "digits",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    (run,) = json.loads(result.stdout)["runs"]
    assert (run["status"], run["config"]["model"]) == ("ok", model)
    assert run["metrics"]["test_accuracy"] > 0.5  # ten classes: chance is 0.1
    assert (out / "results.json").is_file()


def test_plugin_package_example_installs_and_is_discovered(tmp_path: Path):
    package = tmp_path / "plugin-package"  # a copy: building writes build/ and *.egg-info
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    install_offline(package, tmp_path / "site")
    tiny = listed_models(tmp_path / "site")["tiny-cnn"]
    assert tiny["source"] == (
        "plugin 'example-models' (entry point bench_example_models (bench-example-models))"
    )
    assert tiny["params"] == 1370
    assert tiny["options"] == {
        "channels": {"type": "int", "default": 8, "help": "convolution channels"}
    }


def docstring_command(path: Path, start: str) -> list[str]:
    """The command in ``path``'s docstring that starts with ``start`` (continuations joined)."""
    text = path.read_text(encoding="utf-8").replace("\\\\\n", " ")
    (line,) = [line.strip() for line in text.splitlines() if line.strip().startswith(start)]
    return shlex.split(line)


def test_regression_example_trains_as_its_docstring_shows(tmp_path: Path, monkeypatch):
    """The command its docstring shows, as typed: a regression run that beats predicting the
    mean."""
    command = docstring_command(REGRESSION, "bench --plugin examples/regression_plugin.py run ")
    monkeypatch.chdir(EXAMPLES.parent)  # the command names the plugin relative to the clone
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, [*command[1:], "--seed", "0", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    runs = {
        run["config"].get("model", run["config"].get("baseline")): run
        for run in json.loads(result.stdout)["runs"]
    }
    assert set(runs) == {"diabetes-mlp", "training mean", "least squares"}
    assert all(run["status"] == "ok" for run in runs.values()), runs
    metrics = runs["diabetes-mlp"]["metrics"]
    assert metrics["task"]["name"] == "regression"
    assert metrics["target_unit"] == "disease progression"
    assert metrics["split_sizes"] == {"train": 310, "val": 44, "test": 88}
    std = float(load_diabetes().target.std())  # about 77
    assert metrics["test_rmse"] < 0.85 * std  # predicting the mean is off by about one std
    assert metrics["test_rmse"] < runs["training mean"]["metrics"]["test_rmse"] - 5
    stored = json.loads((out / "results.json").read_text())
    assert {run["metrics"]["task"]["name"] for run in stored["runs"]} == {"regression"}
