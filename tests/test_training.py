"""Training: history, test evaluated once, reproducibility, divergence, optimizers."""

import json
import math

import pytest
import torch
from bench_plugins.tasks.supervised import CLASSIFICATION
from click.testing import CliRunner

from harness.cli import cli
from harness.data import DataContext, Splits, TensorSplit
from harness.errors import BenchError, DivergedError
from harness.tasks import DataInfo
from harness.training.loop import TrainConfig, evaluate, train
from harness.training.steps import train_and_test

RUN = {
    "model": "mlp",
    "model_options": {"hidden": "32"},
    "dataset": "digits",
    "dataset_options": {"size": "8"},
    "train": {"epochs": 3},
    "seed": 0,
}


def test_train_records_history_and_learns(cpu_context):
    _, metrics = train_and_test(cpu_context, RUN)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert metrics["test_accuracy"] > 0.8
    assert metrics["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert metrics["split_sizes"]["test"] == 360


def test_same_seed_same_numbers_on_cpu(cpu_context):
    a = train_and_test(cpu_context, RUN)[1]
    b = train_and_test(cpu_context, RUN)[1]
    assert a["test_accuracy"] == b["test_accuracy"]
    for ha, hb in zip(a["history"], b["history"], strict=True):
        assert math.isclose(ha["train_loss"], hb["train_loss"], abs_tol=1e-6)
        assert math.isclose(ha["val_loss"], hb["val_loss"], abs_tol=1e-6)
    c = train_and_test(cpu_context, {**RUN, "seed": 1})[1]
    assert c["history"][0]["train_loss"] != a["history"][0]["train_loss"]


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "adadelta"])
def test_every_optimizer_trains(cpu_context, optimizer):
    lr = 1.0 if optimizer == "adadelta" else 0.01
    metrics = train_and_test(
        cpu_context, {**RUN, "train": {"epochs": 2, "optimizer": optimizer, "lr": lr}}
    )[1]
    assert metrics["history"][-1]["val_accuracy"] > 0.5


def test_test_split_is_evaluated_once(cpu_context, monkeypatch):
    import harness.training.steps as experiment

    seen = []
    real = experiment.evaluate
    monkeypatch.setattr(
        experiment,
        "evaluate",
        lambda model, split, **kw: seen.append(len(split)) or real(model, split, **kw),
    )
    train_and_test(cpu_context, RUN)
    assert seen == [360]


def test_nan_loss_is_reported_as_diverged():
    x = torch.randn(8, 4)
    split = TensorSplit(x, torch.zeros(8, dtype=torch.long))
    splits = Splits(split, split, split, input_shape=(4,), num_classes=2)
    model = torch.nn.Linear(4, 2)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    config = TrainConfig.from_options({"epochs": 1})
    with pytest.raises(DivergedError, match="nan"):
        train(model, splits, config, task=CLASSIFICATION, device=torch.device("cpu"), seed=0)


def test_evaluate_restores_training_mode():
    model = torch.nn.Sequential(torch.nn.Linear(4, 2))
    split = TensorSplit(torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 0]))
    model.train()
    info = DataInfo(num_outputs=2)
    result = evaluate(model, split, task=CLASSIFICATION, info=info, device=torch.device("cpu"))
    assert model.training and 0.0 <= result["accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "epochs=0: must be >= 1"),
        ({"lr": -1}, "lr=-1: must be >="),
        ({"weight_decay": -0.1}, "weight_decay=-0.1: must be >= 0"),
        ({"optimizer": "lbfgs"}, "expected one of sgd"),
        ({"batch_size": 2.5}, "expected int"),
    ],
)
def test_training_options_are_range_checked(options, message):
    with pytest.raises(BenchError, match=message):
        TrainConfig.from_options(options)


def test_geometry_mismatch_is_caught_before_training(cpu_context):
    with pytest.raises(BenchError, match=r"input shape \(1, 40\)"):
        train_and_test(
            cpu_context,
            {
                **RUN,
                "model": "lenet5",
                "model_options": {},
                "dataset": "mnist1d",
                "dataset_options": {},
            },
        )


def test_without_a_validation_split_the_last_epoch_is_kept(registry, tmp_path):
    """val_fraction=0: epochs record no validation metrics, the run tests its final weights."""
    result = CliRunner().invoke(
        cli,
        ["run", "--model", "mlp", "--dataset", "mnist1d", "--dataset-opt", "val_fraction=0",
         "--epochs", "2", "--threads", "1", "--quiet", "--out", str(tmp_path / "o")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (record,) = json.loads((tmp_path / "o" / "results.json").read_text())["runs"]
    metrics = record["metrics"]
    assert record["status"] == "ok" and metrics["split_sizes"]["val"] == 0
    assert metrics["best_epoch"] == 2 and "test_accuracy" in metrics
    assert not [key for epoch in metrics["history"] for key in epoch if key.startswith("val_")]
    assert not [key for key in metrics if key.startswith("val_")]


@pytest.mark.parametrize(
    "args, what",
    [
        (
            ["--model", "mlp", "--dataset", "mnist1d", "--patience", "3"],
            "early stopping (patience 3)",
        ),
        (["--suite", "regularization", "--quick"], "the regularization procedure"),
    ],
)
def test_val_fraction_zero_is_refused_where_validation_is_needed(tmp_path, args, what):
    result = CliRunner().invoke(
        cli, ["run", *args, "--dataset-opt", "val_fraction=0", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.output
    assert f"error: {what}" in result.output and "dataset 'mnist1d' has none" in result.output
    assert not (tmp_path / "o").exists()


def test_early_stopping_without_validation_is_refused_from_python(cpu_context, registry):
    splits = registry.datasets.get("mnist1d").open({"val_fraction": 0}, DataContext(seed=0))
    model = registry.models.get("mlp").create(splits.input_shape, splits.num_classes)
    config = TrainConfig.from_options({"epochs": 1, "patience": 2})
    with pytest.raises(BenchError, match=r"early stopping \(patience 2\) needs a validation"):
        train(model, splits, config, task=CLASSIFICATION, device=torch.device("cpu"), seed=0)
