"""The built-in tasks on hand-computed cases: losses, metrics in their units, output checks,
packing, and a results file's task deciding bench compare's direction."""

import json
import math

import pytest
import torch
from bench_plugins.tasks.supervised import (
    CLASSIFICATION,
    LANGUAGE_MODEL,
    REGRESSION,
    SEQUENCE_CLASSIFICATION,
    pack,
)
from torch.nn.utils.rnn import PackedSequence

from harness.comparing.matching import compare_files, metric_kind
from harness.comparing.verdicts import ACCURACY, SCORE, Rules
from harness.comparing.verdicts import REGRESSION as REGRESSED
from harness.tasks import DataInfo


def measured(task, info, batches, train=False):
    meter = task.meter(info, train)
    for outputs, targets in batches:
        meter.update(outputs, targets)
    return meter.compute()


def test_classification_accuracy_balanced_accuracy_and_confusion_matrix():
    # 4 samples of class 0 (3 right), 1 sample of class 1 (wrong), none of class 2
    logits = torch.tensor([[5.0, 0, 0], [5, 0, 0], [5, 0, 0], [0, 5, 0], [5, 0, 0]])
    targets = torch.tensor([0, 0, 0, 0, 1])
    result = measured(CLASSIFICATION, DataInfo(num_outputs=3), [(logits, targets)])
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["balanced_accuracy"] == pytest.approx((3 / 4 + 0 / 1) / 2)  # classes present
    assert result["confusion_matrix"] == [[3, 1, 0], [1, 0, 0], [0, 0, 0]]
    expected = torch.nn.functional.cross_entropy(logits, targets).item()
    assert result["loss"] == pytest.approx(expected)
    assert "confusion_matrix" not in measured(
        CLASSIFICATION, DataInfo(num_outputs=3), [(logits, targets)], train=True
    )


def test_regression_errors_are_reported_in_the_datas_units():
    # errors 1, -1, -1, 1 in normalised units; the targets' std is 2 units
    info = DataInfo(task="regression", num_outputs=1, target_scale=(10.0, 2.0))
    outputs = torch.tensor([[1.0], [-1.0], [0.0], [0.0]])
    targets = torch.tensor([[0.0], [0.0], [1.0], [-1.0]])
    result = measured(REGRESSION, info, [(outputs[:2], targets[:2]), (outputs[2:], targets[2:])])
    # MSE 1 (normalised), RMSE 1 x 2 units, MAE 1 x 2 units
    assert result["loss"] == pytest.approx(1.0)
    assert result["rmse"] == pytest.approx(2.0)
    assert result["mae"] == pytest.approx(2.0)
    # R² = 1 - SSE/SST: SSE 4, SST of targets (0, 0, 1, -1) around 0 = 2
    assert result["r2"] == pytest.approx(1 - 4 / 2)


def test_language_model_of_uniform_logits_costs_log_vocabulary():
    vocabulary = 8
    outputs = torch.zeros(2, 5, vocabulary)
    targets = torch.randint(0, vocabulary, (2, 5))
    result = measured(LANGUAGE_MODEL, DataInfo(num_outputs=vocabulary), [(outputs, targets)])
    assert result["loss"] == pytest.approx(math.log(vocabulary))
    assert result["bits_per_token"] == pytest.approx(3.0)  # log2(8)
    assert result["perplexity"] == pytest.approx(vocabulary)
    assert LANGUAGE_MODEL.loss(outputs, targets).item() == pytest.approx(math.log(vocabulary))


@pytest.mark.parametrize(
    ("task", "outputs", "targets", "message"),
    [
        (
            CLASSIFICATION,
            torch.zeros(2, 3),
            torch.zeros(2).long(),
            "returns (3,) per sample; expected (10,) logits",
        ),
        (REGRESSION, torch.zeros(2), torch.zeros(2, 1), "returns () per sample; expected (1,)"),
        (LANGUAGE_MODEL, torch.zeros(2, 4), torch.zeros(2, 4).long(), "expected (4, 10) logits"),
        (CLASSIFICATION, (torch.zeros(2, 10), torch.zeros(2)), torch.zeros(2).long(), "a tuple of"),
    ],
)
def test_each_task_checks_the_models_output(task, outputs, targets, message):
    problem = task.check(outputs, targets, DataInfo(num_outputs=10))
    assert problem and message in problem


def test_outputs_of_the_right_shape_pass_the_check():
    info = DataInfo(num_outputs=10)
    assert CLASSIFICATION.check(torch.zeros(2, 10), torch.zeros(2).long(), info) is None
    assert REGRESSION.check(torch.zeros(2, 1), torch.zeros(2, 1), info) is None
    assert LANGUAGE_MODEL.check(torch.zeros(2, 4, 10), torch.zeros(2, 4).long(), info) is None


@pytest.mark.parametrize(
    ("task", "targets", "message"),
    [
        (
            CLASSIFICATION,
            torch.tensor([0, 3]),
            "class labels run from 0 to 3, outside the dataset's 3",
        ),
        (
            CLASSIFICATION,
            torch.zeros(2, 1).long(),
            "targets are a torch.int64 tensor of shape (2, 1)",
        ),
        (LANGUAGE_MODEL, torch.tensor([[1, -1]]), "token ids run from -1 to 1, outside"),
        (REGRESSION, torch.tensor([[1], [2]]), "targets are a torch.int64 tensor; regression"),
    ],
)
def test_each_task_refuses_targets_it_cannot_train_on(task, targets, message):
    assert message in task.check_targets(targets, DataInfo(num_outputs=3))


def test_targets_each_task_trains_on_pass_its_check():
    info = DataInfo(num_outputs=3)
    assert CLASSIFICATION.check_targets(torch.tensor([0, 2, 1]), info) is None
    assert LANGUAGE_MODEL.check_targets(torch.tensor([[0, 2], [1, 1]]), info) is None
    assert REGRESSION.check_targets(torch.randn(4, 1), info) is None


def test_sequence_classification_packs_padded_ids_by_their_lengths():
    padded = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0], [7, 8, 0, 0]])
    packed = SEQUENCE_CLASSIFICATION.prepare(padded)
    assert isinstance(packed, PackedSequence) and packed is not padded
    assert sorted(packed.batch_sizes.tolist(), reverse=True) == [3, 2, 1]  # lengths 3, 1, 2
    assert pack(padded).data.numel() == 6  # no padding is fed to the model
    assert CLASSIFICATION.prepare(padded) is padded


def test_every_task_records_each_metrics_direction_and_unit():
    described = REGRESSION.describe()
    assert described["headline"] == "rmse"
    assert described["metrics"]["rmse"] == {"direction": "lower", "unit": "target", "label": "RMSE"}
    assert described["metrics"]["r2"]["direction"] == "higher"
    assert LANGUAGE_MODEL.describe()["metrics"]["perplexity"]["direction"] == "lower"
    assert metric_kind("test_rmse", 1.2, described) == (SCORE, False)
    assert metric_kind("val_r2", 0.9, described) == (SCORE, True)
    assert metric_kind("test_loss", 0.3, described) is None  # the task's metrics are judged
    classification = CLASSIFICATION.describe()
    assert metric_kind("test_balanced_accuracy", 0.5, classification) == (ACCURACY, True)


def test_compare_takes_the_direction_from_the_recorded_task(tmp_path):
    """The same rise of a number is a regression for RMSE and an improvement for R²."""

    def results(path, rmse, r2):
        runs = [
            {
                "id": f"00{seed}-rnn-wti-s{seed}",
                "index": seed,
                "hash": f"h{seed}",
                "procedure": "accuracy",
                "config": {
                    "name": f"rnn-wti-s{seed}",
                    "model": "rnn",
                    "dataset": "wti",
                    "seed": seed,
                },
                "status": "ok",
                "metrics": {
                    "test_rmse": rmse + seed / 100,
                    "test_r2": r2 + seed / 1000,
                    "task": REGRESSION.describe(),
                },
            }
            for seed in range(3)
        ]
        document = {
            "schema_version": 1,
            "tool": "bench",
            "status": "complete",
            "command": [],
            "suite": {"name": "s", "procedure": "accuracy"},
            "environment": {},
            "runs": runs,
        }
        path.write_text(json.dumps(document))
        return path

    base = results(tmp_path / "base.json", rmse=1.0, r2=0.80)
    cand = results(tmp_path / "cand.json", rmse=1.5, r2=0.90)
    rows = {row.metric: row for row in compare_files(base, cand, Rules()).rows}
    assert rows["test_rmse"].verdict == REGRESSED and rows["test_rmse"].change == pytest.approx(
        0.5, rel=0.02
    )
    assert rows["test_r2"].verdict == "improved"
