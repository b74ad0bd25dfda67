"""The course lab by lab: the first labs on the manual's data points, hand-written backprop
against autograd, and the course suite's one-row-per-lab report."""

import numpy as np
import pytest
import torch
from bench_plugins.procedures.course import labs as course_labs
from bench_plugins.procedures.course import study as course
from bench_plugins.procedures.course.manual_backprop import (
    MLPConfig,
    autograd_gradients,
    forward,
    gradient_check,
    init_params,
    manual_gradients,
    train_mlp,
)
from test_ondisk_datasets import write_cifar

from harness.data import DataContext
from harness.errors import BenchError
from harness.execution.runner import run_suite
from harness.planning.overrides import Overrides, load_suite_with
from harness.planning.protocol import RunContext
from harness.planning.suite_files import parse_suite
from harness.results.store import load_results

CPU = torch.device("cpu")


@pytest.fixture
def ctx(registry, tmp_path):
    return RunContext(registry=registry, device=CPU, out_dir=tmp_path)


def test_linear_regression_is_the_manual_s_gradient_descent(ctx):
    result = course_labs.linear_regression(ctx, 0, False)
    x, y = np.array(course_labs.LINEAR_X), np.array(course_labs.LINEAR_Y)
    w = b = 1.0
    assert result["curve"][0] == pytest.approx(np.mean((x + 1 - y) ** 2))
    for _ in range(100):  # the same 100 steps, derived by hand
        error = w * x + b - y
        w, b = w - 0.001 * np.mean(2 * error * x), b - 0.001 * np.mean(2 * error)
    assert result["figures"]["w"] == pytest.approx(w, rel=1e-4)
    assert result["figures"]["b"] == pytest.approx(b, rel=1e-4)
    assert len(result["curve"]) == 100 and result["curve"][-1] < result["curve"][0] / 10


def test_multiple_and_logistic_regression_reach_what_the_data_allow(ctx):
    multiple = course_labs.multiple_regression(ctx, 0, False)["figures"]
    assert multiple["y_3_2"] == pytest.approx(multiple["ls_y_3_2"], abs=0.01)
    logistic = course_labs.logistic_regression(ctx, 0, True)["figures"]
    assert logistic["accuracy"] == 1.0 and 25 < logistic["boundary"] < 50


def test_xor_converges_to_the_truth_table(ctx):
    result = course_labs.xor(ctx, 0, False)
    assert result["figures"]["params"] == 9
    assert result["figures"]["solved"]
    assert np.allclose(result["figures"]["outputs"], course_labs.XOR_Y, atol=0.1)


def test_hand_written_backprop_gives_autograd_s_gradients():
    config = MLPConfig(init_std=0.05)  # larger weights than training starts with: a harder check
    params = init_params(48, 10, config, seed=0)
    x, labels = torch.randn(20, 48), torch.randint(0, 10, (20,))
    onehot = torch.nn.functional.one_hot(labels, 10).float()
    assert max(gradient_check(params, x, onehot).values()) < 1e-5
    manual, auto = manual_gradients(params, x, onehot), autograd_gradients(params, x, onehot)
    assert all(manual[k].shape == params[k].shape for k in params)
    # a backprop without the sigmoid's derivative is caught
    hidden, _ = forward(params, x)
    wrong = x.T @ ((forward(params, x)[1] - onehot) @ params["w2"].T)
    assert (wrong - auto["w1"]).abs().max() > 10 * (manual["w1"] - auto["w1"]).abs().max()
    assert hidden.shape == (20, config.hidden)


def test_both_trainings_follow_the_same_path():
    config = MLPConfig(epochs=2, init_std=0.01, lr=1e-2)
    x, y = torch.randn(200, 48), torch.randint(0, 10, (200,))
    params = init_params(48, 10, config, seed=0)
    manual, history = train_mlp(params, x, y, 10, config, manual_gradients, seed=0)
    auto, auto_history = train_mlp(params, x, y, 10, config, autograd_gradients, seed=0)
    assert all(torch.allclose(manual[k], auto[k], atol=1e-5) for k in manual)
    assert not torch.equal(manual["w1"], params["w1"])
    assert history[0]["train_loss"] == pytest.approx(auto_history[0]["train_loss"], rel=1e-5)


def test_cifar_backprop_uses_cifar_from_disk_else_synthetic(registry, tmp_path):
    synthetic = course_labs.cifar_backprop(
        RunContext(registry=registry, device=CPU, out_dir=tmp_path), 0, True
    )
    assert synthetic["figures"]["data"].startswith("synthetic 3x32x32")
    assert synthetic["figures"]["weight_difference"] < 1e-4
    write_cifar(tmp_path, per_batch=40, n_test=20)
    data = DataContext(data_root=tmp_path)
    real = course_labs.cifar_backprop(
        RunContext(registry=registry, device=CPU, out_dir=tmp_path, data=data), 0, True
    )
    assert real["figures"]["data"] == "CIFAR-10 (180 training images)"
    assert max(real["figures"]["gradient_difference"].values()) < 1e-4


def test_unknown_labs_are_refused_listing_the_labs(registry):
    suite = parse_suite(
        {"procedure": "course", "course": {"labs": ["xor", "lstn"]}}, registry, source="t.toml"
    )
    with pytest.raises(BenchError, match=r"unknown lab 'lstn'; labs: linear-regression, "):
        registry.procedures.get("course").plan(suite, registry)


def test_course_quick_runs_every_lab_in_order_with_one_row_each(registry, tmp_path, monkeypatch):
    broken = course.Lab("xor", 4, "x", "y", lambda ctx, seed, quick: 1 / 0)
    monkeypatch.setitem(course.BY_NAME, "xor", broken)  # a failing lab: the others go on
    suite = load_suite_with("course", registry, Overrides(settings={"quick": "true"}))
    outcome = run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True)
    runs = load_results(tmp_path)["runs"]
    assert [r["config"]["lab"] for r in runs] == [lab.name for lab in course.LABS]
    assert {r["config"]["lab"]: r["status"] for r in runs if r["status"] != "ok"} == {
        "xor": "failed"
    }
    (table,) = outcome.report.tables
    assert [row["name"] for row in table.rows] == [lab.name for lab in course.LABS]
    assert [row["lab"] for row in table.rows] == sorted(row["lab"] for row in table.rows)
    rows = {row["name"]: row for row in table.rows}
    assert "weights identical" in rows["checkpoint"]["result"]
    assert "fine-tune" in rows["transfer"]["result"] and "scratch" in rows["transfer"]["result"]
    assert "43.37%" in rows["cifar-backprop"]["course's reference"]
    assert (
        "test RMSE" in rows["lstm"]["result"] and "persistence baseline" in rows["lstm"]["result"]
    )
    assert "linear probe of its code" in rows["autoencoder"]["result"]
    assert (tmp_path / "course-loss-curves.png").is_file()
    assert (tmp_path / "labs" / "transfer" / "checkpoints").is_dir()
