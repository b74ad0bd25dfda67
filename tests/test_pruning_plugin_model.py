"""The pruning suite on a user's own model, as docs/studies/cnn-pruning.md promises: a plugin's
1-D CNN whose final classifier holds most of its parameters and which has no ``width`` option."""

import importlib.util
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_pruning import markdown_rows

from harness.cli import cli
from harness.measuring.flops import count_params

CNN1D = """
from torch import nn
from harness import ModelSpec, hookimpl


def build(input_shape, num_classes):
    channels, length = input_shape
    return nn.Sequential(
        nn.Conv1d(channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Flatten(), nn.Linear(32 * (length // 4), num_classes),
    )


@hookimpl
def register_models(register):
    register(ModelSpec("cnn1d", "two Conv1d blocks and a big classifier", build,
                       input_shape=(1, 40)))
"""
# the user's command, made cheap: one dense epoch in big batches, no fine-tuning
QUICK = ["--dataset", "mnist1d", "--quick", "--epochs", "1", "--batch-size", "256", "--quiet"]
UNSTRUCTURED = ("random", "layer-magnitude", "global-magnitude")


@pytest.fixture
def plugin(tmp_path: Path) -> Path:
    path = tmp_path / "pruning_cnn1d_plugin.py"
    path.write_text(CNN1D)
    return path


def run_cnn1d(plugin: Path, out: Path, *settings: str):
    args = ["--plugin", plugin, "run", "--suite", "cnn-pruning", "--models", "cnn1d", *QUICK]
    for setting in ("finetune_epochs=0", *settings):
        args += ["--set", setting]
    return CliRunner().invoke(cli, [*map(str, args), "--out", str(out)])


def cnn1d_counts(plugin: Path) -> tuple[int, int]:
    """The model's parameters, and the weights outside its classifier."""
    spec = importlib.util.spec_from_file_location("cnn1d_counts", plugin)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build((1, 40), 10)
    return count_params(model), model[0].weight.numel() + model[3].weight.numel()


def test_the_pruning_suite_runs_on_a_model_with_a_big_classifier_and_no_width(plugin, tmp_path):
    out = tmp_path / "out"
    result = run_cnn1d(plugin, out, "targets=50,96.875")
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert {r["status"] for r in runs} == {"ok"}
    report = (out / "report.md").read_text()
    rows = {(r["method"], r["target %"]): r for r in markdown_rows(report)}
    assert {r["seeds"] for r in rows.values()} == {"0", "1"}
    assert "nan" not in {cell for row in rows.values() for cell in row.values()}
    total, prunable = cnn1d_counts(plugin)
    assert prunable < 0.5 * total  # so every target is beyond what the model can lose
    for target in (50, 96.875):
        assert rows["scratch", f"{target:g}"]["acc after FT %"] == "n/a"
        assert rows["scratch", f"{target:g}"]["seeds"] == "0"
        assert rows["structured", f"{target:g}"]["target of"] == "all parameters"
        achieved = f"{100 * round(target / 100 * prunable) / total:.1f}"
        for method in UNSTRUCTURED:
            row = rows[method, f"{target:g}"]
            assert (row["target of"], row["achieved %"], row["seeds"]) == (
                "prunable weights",
                achieved,
                "1",
            )
    assert f"cnn1d: {prunable:,} of {total:,}" in report
    assert "**n/a**: not applicable, model 'cnn1d' has no 'width' option" in report
    assert (out / "pruning-cnn1d-mnist1d.png").is_file()


def test_prune_classifier_lets_the_target_be_of_the_whole_model(plugin, tmp_path):
    out = tmp_path / "out"
    settings = ("targets=50", "methods=global-magnitude", "prune_classifier=true")
    result = run_cnn1d(plugin, out, *settings)
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    (pruned,) = [r for r in runs if r["config"]["kind"] == "prune"]
    assert "target_of" not in pruned["metrics"]
    assert abs(pruned["metrics"]["achieved_drop"] - 0.5) < 0.01
    assert "target of" not in (out / "report.md").read_text()
