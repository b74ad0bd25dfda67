"""The plugin examples in examples/ work as their docstrings and the README say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_scaffold import install_offline, listed_models

from harness.cli import cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SINGLE_FILE = EXAMPLES / "single_file_plugin.py"
PACKAGE = EXAMPLES / "plugin-package"


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
    assert (tiny["params"], tiny["options"]) == (1370, {"channels": 8})
