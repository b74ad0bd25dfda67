"""The bench command line, as a user calls it."""

import json
import re
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import harness.training.steps
from harness.cli import cli
from harness.cli.run import run_command, shown_default
from harness.planning.train_settings import TRAIN_OPTIONS


def bench(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_help_lists_commands():
    result = bench("--help")
    assert result.exit_code == 0
    for command in ("list", "run", "new-plugin"):
        assert command in result.output


def test_list_models_json_has_reference_counts():
    rows = json.loads(bench("list", "models", "--json").stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["lenet5"]["params"] == 61_706 and by_name["lenet5"]["flops"] == 833_040
    assert by_name["resnet18"]["input_shape"] == [3, 224, 224]
    for row in rows:
        assert {"name", "description", "input_shape", "params", "flops"} <= set(row)


def test_list_models_table():
    output = bench("list", "models").output
    assert "| cnn-small" in output and "47,658" in output


def test_list_datasets_json():
    rows = {r["name"]: r for r in json.loads(bench("list", "datasets", "--json").stdout)}
    assert rows["digits"]["input_shape"] == [1, 28, 28] and rows["digits"]["available"]
    assert rows["mnist1d"]["num_classes"] == 10
    for row in rows.values():
        assert {"name", "input_shape", "num_classes", "available"} <= set(row)
        assert row["available"] or row["reason"]


def test_list_suites_and_plugins():
    assert "quickstart" in bench("list", "suites").output
    plugins = json.loads(bench("list", "plugins", "--json").stdout)
    models = next(p for p in plugins if p["name"] == "models")
    assert models["status"] == "loaded" and "model lenet5" in models["provides"]


def test_run_json_reports_results_and_metrics(tmp_path):
    result = bench(
        "run",
        "--model",
        "mlp",
        "--dataset",
        "mnist1d",
        "--model-opt",
        "hidden=100",
        "--epochs",
        "2",
        "--json",
        "--out",
        str(tmp_path / "r"),
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["results"] == str(tmp_path / "r" / "results.json")
    (run,) = data["runs"]
    assert run["status"] == "ok" and run["config"]["model_options"] == {"hidden": "100"}
    assert run["metrics"]["params"] == 40 * 100 + 100 + 100 * 10 + 10
    stored = json.loads((tmp_path / "r" / "results.json").read_text())
    assert stored["runs"][0]["metrics"]["test_accuracy"] == run["metrics"]["test_accuracy"]


def test_run_prints_summary_table_and_paths(tmp_path):
    result = bench(
        "run", "--model", "lenet5", "--dataset", "digits", "--epochs", "1", "--out", str(tmp_path)
    )
    assert result.exit_code == 0
    assert "| lenet5" in result.output and "61,706" in result.output
    assert f"results: {tmp_path / 'results.json'}" in result.output
    assert (tmp_path / "report.md").read_text().startswith("## lenet5-digits")


def test_run_suite_file(tmp_path):
    suite = tmp_path / "my-suite.toml"
    suite.write_text(
        'models = ["mlp", {name = "mlp", label = "mlp-10", options = {hidden = 10}}]\n'
        'datasets = ["digits"]\n[train]\nepochs = 1\n'
    )
    result = bench("run", "--suite", str(suite), "--out", str(tmp_path / "o"), "--json")
    data = json.loads(result.stdout)
    assert [r["config"]["model_label"] for r in data["runs"]] == ["mlp", "mlp-10"]
    assert data["runs"][1]["metrics"]["params"] == 7_960


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["run", "--model", "lenet6", "--dataset", "digits"],
            "unknown model 'lenet6'. Did you mean",
        ),
        (["run", "--model", "mlp", "--dataset", "digitz"], "Did you mean 'digits'"),
        (["run", "--model", "mlp", "--dataset", "digits", "--model-opt", "hidden"], "key=value"),
        (["run", "--model", "mlp", "--dataset", "digits", "--model-opt", "hidden=-3"], ">= 1"),
        (["run", "--model", "mlp", "--dataset", "digits", "--epochs", "0"], "epochs=0"),
        (["run", "--suite", "quickstrt"], "Did you mean 'quickstart'"),
        (["run", "--model", "mlp"], "at least one --model and one --dataset"),
    ],
)
def test_bad_input_is_one_clear_line_with_exit_2(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_cuda_is_an_error():
    result = CliRunner().invoke(
        cli, ["run", "--model", "mlp", "--dataset", "digits", "--device", "cuda"]
    )
    assert result.exit_code == 2 and "CUDA is not available" in result.output


def test_run_training_flags_reach_the_train_config(tmp_path, monkeypatch):
    """What training receives, seen by wrapping harness.training.steps.train."""
    seen = []

    def spy(model, splits, config, **kwargs):
        seen.append(config)
        return train(model, splits, config, **kwargs)

    train = harness.training.steps.train
    monkeypatch.setattr(harness.training.steps, "train", spy)
    flags = {
        "--weight-decay": "0.001",
        "--weight-decay-mode": "decoupled",
        "--l1": "0.0001",
        "--l2-loss": "0.01",
        "--patience": "3",
    }
    args = ["--model", "mlp", "--dataset", "digits", "--epochs", "1", "--threads", "1"]
    args += ["--json", "--out", str(tmp_path)]
    result = bench("run", *args, *[arg for pair in flags.items() for arg in pair])
    assert result.exit_code == 0, result.output
    expected = {
        "weight_decay": 1e-3,
        "weight_decay_mode": "decoupled",
        "l1": 1e-4,
        "l2_loss": 1e-2,
        "patience": 3,
    }
    (config,) = seen
    assert {key: getattr(config, key) for key in expected} == expected
    stored = json.loads((tmp_path / "results.json").read_text())["runs"][0]["config"]["train"]
    assert {key: stored[key] for key in expected} == expected


def test_weight_decay_mode_switches_the_regularization_grid(tmp_path):
    tiny = ["--models", "mlp", "--dataset", "digits", "--dataset-opt", "size=8", "--epochs", "1"]
    studies = ["dropouts=0", "weight_decays=0,0.01", "l1=0", "l2=0", "compare_dropout=0"]
    settings = [arg for setting in [*studies, "patience=0"] for arg in ("--set", setting)]
    result = bench(
        "run",
        *["--suite", "regularization", *tiny, "--seed", "0", *settings],
        *["--weight-decay-mode", "decoupled", "--json", "--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    runs = json.loads(result.stdout)["runs"]
    assert [run["metrics"]["weight_decay_kind"] for run in runs] == ["decoupled"] * 2
    assert "Weight decay is decoupled (AdamW-style)" in (tmp_path / "report.md").read_text()


def test_regularization_suite_refuses_a_flag_it_sets_per_cell():
    result = CliRunner().invoke(cli, ["run", "--suite", "regularization", "--l1", "0.001"])
    assert result.exit_code == 2, result.output
    assert "--l1 can" in result.output and "--set" in result.output


@pytest.mark.parametrize(("flag", "threads"), [([], 1), (["--threads", "2"], 2)])
def test_a_suite_sets_torch_threads_and_the_flag_wins(tmp_path, flag, threads):
    suite = tmp_path / "s.toml"
    suite.write_text('models = ["mlp"]\ndatasets = ["digits"]\nthreads = 1\n[train]\nepochs = 1\n')
    result = bench("run", "--suite", str(suite), *flag, "--json", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    assert (
        json.loads((tmp_path / "o" / "results.json").read_text())["execution"]["threads"] == threads
    )


@pytest.mark.parametrize("value", ["-1", "true", '"2"'])
def test_a_suite_s_threads_must_be_a_count(tmp_path, value):
    suite = tmp_path / "s.toml"
    suite.write_text(f'models = ["mlp"]\ndatasets = ["digits"]\nthreads = {value}\n')
    result = CliRunner().invoke(cli, ["run", "--suite", str(suite)])
    assert result.exit_code == 2 and "key 'threads'" in result.output, result.output


def _one_line(text: str) -> str:
    return " ".join(text.split())


# every training option that bench run takes as a flag with a default, by flag (not the
# on/off --save-checkpoint, nor --from-checkpoint PATH, which are off unless given)
TRAIN_FLAGS = {
    f"--{key.replace('_', '-')}": key
    for key in TRAIN_OPTIONS
    if f"--{key.replace('_', '-')}" in {o for p in run_command.params for o in p.opts}
    and TRAIN_OPTIONS[key].default not in ("",)
    and TRAIN_OPTIONS[key].default is not False
}


def test_run_help_shows_every_training_default():
    assert {"--epochs", "--batch-size", "--optimizer", "--lr", "--momentum"} <= set(TRAIN_FLAGS)
    helps = {p.opts[0]: p.help for p in run_command.params}
    shown = _one_line(bench("run", "--help").output)
    for flag, key in TRAIN_FLAGS.items():
        default = shown_default(TRAIN_OPTIONS[key].default)
        assert helps[flag].endswith(f"[default: {default}]"), (flag, helps[flag])
        assert _one_line(helps[flag]) in shown, flag
    assert "Training batch size. [default: 32]" in shown and "Optimizer. [default: sgd]" in shown


def test_the_running_guide_gives_the_training_defaults():
    guide = Path(__file__).resolve().parents[1] / "docs" / "guides" / "running.md"
    table = guide.read_text(encoding="utf-8").split("## Training options", 1)[1]
    for flag in ("--epochs", "--batch-size", "--optimizer", "--lr", "--momentum", "--weight-decay"):
        default = shown_default(TRAIN_OPTIONS[TRAIN_FLAGS[flag]].default)
        assert re.search(rf"\| `{flag}[^`]*` \| `?{re.escape(default)}`? \|", table), flag


def test_list_models_shows_each_option_s_type_default_and_help(registry):
    rows = {r["name"]: r for r in json.loads(bench("list", "models", "--json").stdout)}
    assert rows["mlp"]["options"]["hidden"] == {
        "type": "ints",
        "default": [128],
        "help": "hidden layer sizes, e.g. 100 or 100,100",
    }
    assert rows["mlp"]["options"]["dropout_impl"]["choices"] == ["torch", "bernoulli"]
    for spec in registry.models:
        for key, option in spec.options.items():
            listed = rows[spec.name]["options"][key]
            assert (listed["type"], listed["help"]) == (option.kind, option.help)
    table = bench("list", "models").stdout
    assert "Options (--model-opt KEY=VALUE):" in table
    assert re.search(r"\| mlp +\| hidden +\| ints +\| 128 +\| hidden layer sizes", table)
    assert re.search(r"\| resnet18 +\| freeze +\| bool +\| false +\| train only", table)
