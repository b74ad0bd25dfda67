"""Regularization: the training options it adds, the dropout layers, and the regularization
procedure on tiny settings."""

import copy

import pytest
import torch
from bench_plugins.procedures.regularization.grid_cells import cell_label
from bench_plugins.procedures.regularization.report import best_cell
from bench_plugins.procedures.regularization.study import weight_stats
from bench_plugins.tasks.supervised import CLASSIFICATION
from torch import nn

from harness.data import DataContext, Splits, TensorSplit
from harness.errors import BenchError, DivergedError
from harness.execution.runner import run_suite
from harness.planning.overrides import Overrides, load_suite_with
from harness.planning.suite_files import parse_suite
from harness.reporting.run_figures import run_plots_note
from harness.results.store import load_results
from harness.tasks import DataInfo
from harness.training.layers import BernoulliDropout
from harness.training.loop import TrainConfig, evaluate, make_optimizer, train, train_epoch

CPU = torch.device("cpu")
TINY = {
    "procedure": "regularization",
    "models": [{"name": "mlp", "options": {"hidden": [16]}}],
    "datasets": [{"name": "digits", "options": {"size": 8}}],
    "seeds": [0],
    "train": {"epochs": 2, "batch_size": 64, "lr": 0.05},
    "regularization": {
        "dropouts": [0, 0.5],
        "weight_decays": [0, 1e-2],
        "l1": [0, 1e-4],
        "l2": 1e-3,
        "compare_dropout": 0.5,
        "patience": 1,
    },
}


def plan(registry, document):
    suite = parse_suite(document, registry, source="test.toml")
    return suite, registry.procedures.get("regularization").plan(suite, registry)


@pytest.fixture(scope="module")
def digits(registry):
    return registry.datasets.get("digits").open({"size": 8}, DataContext(seed=0))


def mlp(registry, splits, **options):
    torch.manual_seed(0)
    return registry.models.get("mlp").create(
        splits.input_shape, splits.num_classes, {"hidden": (32,), **options}
    )


def trained(registry, splits, **train_options):
    model = mlp(registry, splits)
    config = TrainConfig.from_options({"epochs": 4, "batch_size": 128, "lr": 0.1, **train_options})
    train(model, splits, config, task=CLASSIFICATION, device=CPU, seed=0)
    return model


# ---- the plan ----


def test_grid_and_studies_expand_to_the_right_cells(registry):
    document = {**TINY, "seeds": [0, 1]}
    document["regularization"] = {**TINY["regularization"], "weight_decays": [0, 1e-3, 1e-2]}
    _, runs = plan(registry, document)
    cells = {cell_label(r.config["cell"]): r.config for r in runs}
    grid = {
        (c["cell"]["dropout"], c["cell"]["weight_decay"])
        for c in cells.values()
        if "grid" in c["studies"]
    }
    assert grid == {(d, w) for d in (0, 0.5) for w in (0, 1e-3, 1e-2)}
    # cells shared by studies run once: the coupled L2 cell is the grid's (0, 1e-3)
    assert set(cells) - {
        cell_label(c["cell"]) for c in cells.values() if "grid" in c["studies"]
    } == {
        "l1=0.0001",
        "l2_loss=0.001",
        "wd=0.001,decoupled",
        "dropout=0.5,bernoulli",
        "patience=1",
    }
    assert cells["none"]["studies"] == ["grid", "l1", "early_stopping"]
    assert cells["wd=0.001"]["studies"] == ["grid", "l2"]
    assert len(runs) == 11 * 2 and len({r.hash for r in runs}) == len(runs)
    # each run trains with its cell's regularization and the suite's budget
    bernoulli = cells["dropout=0.5,bernoulli"]
    assert bernoulli["model_options"] == {
        "hidden": [16],
        "dropout": 0.5,
        "dropout_impl": "bernoulli",
    }
    assert cells["patience=1"]["train"] == {
        **TINY["train"],
        "weight_decay": 0.0,
        "weight_decay_mode": "coupled",
        "l1": 0.0,
        "l2_loss": 0.0,
        "patience": 1,
        "augment": "none",
    }


def test_the_builtin_suite_runs_the_issue_s_plan(registry):
    """mlp (100, 100) on mnist1d, 3 seeds, one thread: 20 grid cells and 7 more, 81 runs;
    --quick: 10 runs of at most 30 epochs."""
    suite = load_suite_with("regularization", registry, Overrides())
    assert (suite.models[0].name, suite.models[0].options) == ("mlp", {"hidden": [100, 100]})
    assert [d.name for d in suite.datasets] == ["mnist1d"]
    assert (suite.seeds, suite.threads) == ([0, 1, 2], 1)
    runs = registry.procedures.get("regularization").plan(suite, registry)
    assert len(runs) == 81 and {r.config["train"]["epochs"] for r in runs} == {60}
    quick = load_suite_with("regularization", registry, Overrides(settings={"quick": "true"}))
    runs = registry.procedures.get("regularization").plan(quick, registry)
    assert len(runs) == 10 and {r.config["train"]["epochs"] for r in runs} == {30}


def test_quick_takes_one_seed_and_the_ends_of_each_sweep(registry):
    document = {**TINY, "seeds": [0, 1, 2], "train": {"epochs": 50}}
    document["regularization"] = {
        **TINY["regularization"],
        "dropouts": [0, 0.1, 0.5],
        "quick": True,
    }
    _, runs = plan(registry, document)
    grid = {
        (r.config["cell"]["dropout"], r.config["cell"]["weight_decay"])
        for r in runs
        if "grid" in r.config["studies"]
    }
    assert grid == {(0, 0), (0, 1e-2), (0.5, 0), (0.5, 1e-2)}
    assert {r.config["seed"] for r in runs} == {0}
    assert {r.config["train"]["epochs"] for r in runs} == {30}


def test_quick_skips_an_empty_sweep_instead_of_crashing(registry):
    document = {**TINY, "regularization": {**TINY["regularization"], "l1": [], "quick": True}}
    _, runs = plan(registry, document)
    assert runs and not any("l1" in r.config["studies"] for r in runs)


def test_weight_decay_mode_switches_the_grid_but_not_the_l2_study(registry):
    document = {**TINY, "train": {**TINY["train"], "weight_decay_mode": "decoupled"}}
    document["regularization"] = {**TINY["regularization"], "weight_decays": [0, 1e-3]}
    _, runs = plan(registry, document)
    grid = [r.config for r in runs if "grid" in r.config["studies"]]
    assert {c["train"]["weight_decay_mode"] for c in grid} == {"decoupled"}
    l2 = {cell_label(r.config["cell"]): r.config for r in runs if "l2" in r.config["studies"]}
    assert set(l2) == {"wd=0.001", "l2_loss=0.001", "wd=0.001,decoupled"}
    assert l2["wd=0.001"]["train"]["weight_decay_mode"] == "coupled"
    # the grid's decoupled 1e-3 cell is the L2 study's decoupled one, trained once
    assert l2["wd=0.001,decoupled"]["studies"] == ["grid", "l2"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"train": {"weight_decay": 1e-3}}, "train.weight_decay.*per cell"),
        ({"train": {"l1": 1e-4}}, r"suite file test.toml: key 'train.l1': .*--l1 can.*--set"),
        ({"train": {"l2_loss": 1e-4}}, r"key 'train.l2_loss': .*--l2-loss can"),
        ({"train": {"patience": 2}}, r"key 'train.patience': .*--patience can"),
        ({"grid": {"lr": [0.1, 0.2]}}, "key 'grid'"),
        ({"models": ["resnet18"]}, "key 'models\\[0\\]': model 'resnet18' has no dropout"),
        (
            {"train": {"optimizer": "adamw"}},
            "key 'train.optimizer': adamw's weight decay is always decoupled",
        ),
    ],
)
def test_settings_the_studies_would_override_are_refused(registry, change, message):
    with pytest.raises(BenchError, match=message):
        plan(registry, {**TINY, **change})


# ---- the training options ----


def test_weight_decay_shrinks_the_weights_coupled_and_decoupled(registry, digits):
    plain = weight_stats(trained(registry, digits), 1e-3)["weight_l2"]
    coupled = weight_stats(trained(registry, digits, weight_decay=1e-2), 1e-3)["weight_l2"]
    decoupled = trained(registry, digits, weight_decay=1e-1, weight_decay_mode="decoupled")
    assert coupled < 0.9 * plain
    assert weight_stats(decoupled, 1e-3)["weight_l2"] < 0.9 * plain


def test_l1_makes_weights_sparser(registry, digits):
    plain = weight_stats(trained(registry, digits), 1e-3)
    sparse = weight_stats(trained(registry, digits, l1=1e-2), 1e-3)
    assert sparse["weight_l1"] < 0.8 * plain["weight_l1"]
    assert sparse["near_zero_fraction"] > 2 * plain["near_zero_fraction"]


def test_biases_are_never_penalized(registry, digits):
    model = mlp(registry, digits)
    biases = [m.bias.detach().clone() for m in model if isinstance(m, nn.Linear)]
    # lr * weight_decay = 0.5: every step halves the weights; the gradient itself barely counts
    options = {"epochs": 1, "lr": 1e-12, "momentum": 0.0, "weight_decay": 5e11}
    train(model, digits, TrainConfig.from_options(options), task=CLASSIFICATION, device=CPU, seed=0)
    for layer, before in zip([m for m in model if isinstance(m, nn.Linear)], biases, strict=True):
        assert layer.weight.abs().max() < 1e-6
        torch.testing.assert_close(layer.bias, before, atol=1e-6, rtol=0)


def one_step(model: nn.Module, batch: TensorSplit, **options) -> nn.Module:
    """``model`` after one training step on ``batch`` (the whole split is one batch)."""
    model = copy.deepcopy(model)
    config = TrainConfig.from_options({"batch_size": len(batch), "momentum": 0.0, **options})
    optimizer = make_optimizer(model, config)
    generator = torch.Generator().manual_seed(0)
    info = DataInfo(num_outputs=int(batch.y.max()) + 1)
    train_epoch(model, batch, optimizer, config, CPU, generator, CLASSIFICATION, info)
    return model


def test_optimizer_weight_decay_and_l2_loss_term_agree_for_plain_sgd(registry, digits):
    model = mlp(registry, digits)
    batch = TensorSplit(digits.train.x[:64], digits.train.y[:64])
    plain = one_step(model, batch, lr=0.5)
    decay = one_step(model, batch, lr=0.5, weight_decay=0.1)
    term = one_step(model, batch, lr=0.5, l2_loss=0.1)
    for d, t in zip(decay.parameters(), term.parameters(), strict=True):
        torch.testing.assert_close(d, t, atol=1e-6, rtol=0)
    assert (plain[1].weight - decay[1].weight).abs().max() > 1e-3  # the decay did something


def test_adam_with_decoupled_decay_is_torch_adamw(registry, digits):
    model = mlp(registry, digits)
    batch = TensorSplit(digits.train.x[:64], digits.train.y[:64])
    options = {"lr": 0.01, "weight_decay": 0.5}
    ours = one_step(model, batch, optimizer="adam", weight_decay_mode="decoupled", **options)
    adamw = one_step(model, batch, optimizer="adamw", **options)
    coupled = one_step(model, batch, optimizer="adam", **options)
    for a, b in zip(ours.parameters(), adamw.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    assert (ours[1].weight - coupled[1].weight).abs().max() > 1e-4


# ---- the two dropout layers ----


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_bernoulli_dropout_matches_nn_dropout(p):
    x = torch.randn(200_000) + 1.0
    torch.manual_seed(0)
    ours = BernoulliDropout(p).train()(x)
    theirs = nn.Dropout(p).train()(x)
    for out in (ours, theirs):
        assert (out == 0).float().mean().item() == pytest.approx(p, abs=0.01)
        kept = out != 0
        torch.testing.assert_close(out[kept], x[kept] / (1 - p))  # inverted scaling
    assert ours.mean().item() == pytest.approx(theirs.mean().item(), abs=0.02)
    assert ours.var().item() == pytest.approx(theirs.var().item(), rel=0.03)
    assert ours.mean().item() == pytest.approx(x.mean().item(), abs=0.02)  # unbiased
    for layer in (BernoulliDropout(p), nn.Dropout(p)):
        assert torch.equal(layer.eval()(x), x)


# ---- early stopping and divergence ----


def contradictory_splits() -> Splits:
    """Validation labels are the training labels shifted by one: fitting the training data
    raises the validation loss after the first epochs."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=generator)
    y = torch.randint(0, 4, (256,), generator=generator)
    train_split, val = TensorSplit(x, y), TensorSplit(x, (y + 1) % 4)
    return Splits(train_split, val, val, input_shape=(8,), num_classes=4)


def test_early_stopping_stops_and_restores_the_best_weights():
    splits = contradictory_splits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
    config = TrainConfig.from_options({"epochs": 30, "lr": 0.1, "patience": 3})
    result = train(model, splits, config, task=CLASSIFICATION, device=CPU, seed=0)
    losses = [record["val_loss"] for record in result.history]
    best = losses.index(min(losses)) + 1
    assert result.best_epoch == best and result.restored
    assert len(result.history) == best + 3 < 30  # stopped, three epochs without improvement
    assert losses[-1] > losses[best - 1]
    restored = evaluate(model, splits.val, task=CLASSIFICATION, info=splits.info, device=CPU)
    assert restored["loss"] == pytest.approx(losses[best - 1], abs=1e-6)
    assert result.final == result.history[best - 1]


def test_without_patience_the_full_budget_runs_and_the_last_weights_stay():
    splits = contradictory_splits()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
    config = TrainConfig.from_options({"epochs": 8, "lr": 0.1})
    result = train(model, splits, config, task=CLASSIFICATION, device=CPU, seed=0)
    assert len(result.history) == 8 and not result.restored
    final = evaluate(model, splits.val, task=CLASSIFICATION, info=splits.info, device=CPU)
    assert final["loss"] == pytest.approx(result.history[-1]["val_loss"], abs=1e-6)


class NanAt(nn.Module):
    """A linear model whose ``step``-th training forward pass returns NaN; counts its calls."""

    def __init__(self, step: int):
        super().__init__()
        self.linear, self.step, self.calls = nn.Linear(8, 4), step, 0

    def forward(self, x):
        out = self.linear(x)
        if self.training:
            self.calls += 1
            if self.calls == self.step:
                return out * float("nan")
        return out


def test_a_nan_loss_stops_training_at_that_step():
    splits = contradictory_splits()  # 256 samples: 16 steps of 16 per epoch
    model = NanAt(step=16 + 5)  # the fifth step of the second epoch
    config = TrainConfig.from_options({"epochs": 3, "batch_size": 16})
    with pytest.raises(DivergedError, match=r"nan \(first seen at step 5 of epoch 2\)") as caught:
        train(model, splits, config, task=CLASSIFICATION, device=CPU, seed=0)
    assert model.calls == 21  # not one forward pass more
    assert (caught.value.epoch, caught.value.step, len(caught.value.history)) == (2, 5, 1)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # stopped before the step


def test_a_diverging_cell_is_recorded_as_diverged(registry, tmp_path):
    document = {**TINY, "train": {"epochs": 2, "lr": 1e8}}
    document["regularization"] = {"dropouts": [0], "weight_decays": [0], "l1": [0], "l2": 0}
    document["regularization"] |= {"compare_dropout": 0, "patience": 0}
    suite = parse_suite(document, registry, source="test.toml")
    outcome = run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True, threads=1)
    (run,) = outcome.store.runs
    assert run["status"] == "diverged"
    assert "first seen at step" in run["error"] and "of epoch 1" in run["error"]
    assert "did not finish" in outcome.report.markdown


# ---- the report ----


def test_the_best_cell_is_the_grid_cell_with_the_highest_validation_accuracy():
    def cell(studies: list[str], val: float, test: float, seeds: int = 1) -> dict:
        return {"studies": studies, "seeds": seeds, "val": [val] * seeds, "test": [test] * seeds}

    best_on_test, best = cell(["grid"], 0.6, 0.9), cell(["grid", "l2"], 0.7, 0.5)
    failed, early = cell(["grid"], 0.0, 0.0, seeds=0), cell(["early_stopping"], 0.8, 0.8)
    assert best_cell([best_on_test, failed, best, early]) is best  # test and other studies ignored
    assert best_cell([early, cell(["l1"], 0.5, 0.5)]) is early  # without a grid, any cell


def test_report_renders_tables_and_plots_and_regenerates_from_json(registry, tmp_path):
    suite = parse_suite(TINY, registry, source="test.toml")
    outcome = run_suite(
        suite, registry, out_dir=tmp_path / "run", device="cpu", quiet=True, threads=1
    )
    assert all(r["status"] == "ok" for r in outcome.store.runs)
    text = outcome.report.markdown
    for title in (
        "Test accuracy %",
        "Generalization gap",
        "Weight L2 norm",
        "L1 sweep",
        "L2 two ways",
        "Dropout two ways",
        "Early stopping",
        "Every cell",
    ):
        assert f"#### {title}" in text
    assert "Weight decay is coupled L2" in text
    names = sorted(p.name for p in outcome.report.files)
    assert names == [
        f"regularization-mlp-digits-{kind}.png" for kind in ("curves", "gap", "l1", "test-accuracy")
    ]
    for path in outcome.report.files:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = registry.procedures.get("regularization").report(
        load_results(tmp_path / "run" / "results.json"), tmp_path / "again"
    )
    note = f"\n{run_plots_note(outcome.run_plots)}\n"  # each cell's confusion and loss, in runs/
    assert again.markdown + note == text.replace(str(tmp_path / "run"), str(tmp_path / "again"))
    tables = {t.name: t.rows for t in again.tables}
    grid = tables["mlp-digits-grid-test-accuracy"]
    assert [list(row) for row in grid] == [["dropout \\ weight decay", "0", "0.01"]] * 2
    cells = tables["mlp-digits-cells"]
    marked = [row for row in cells if row["cell"].endswith(" ★")]
    assert len(cells) == 10 and len(marked) == 1
    # the best cell is chosen among the grid's cells, on validation accuracy
    grid_labels = {
        cell_label(r["config"]["cell"])
        for r in outcome.store.runs
        if "grid" in r["config"]["studies"]
    }
    in_grid = [row for row in cells if row["cell"].removesuffix(" ★") in grid_labels]
    assert marked[0] in in_grid and len(in_grid) == 4
    assert float(marked[0]["val acc %"]) == max(float(row["val acc %"]) for row in in_grid)
    assert sum(value.endswith(" ★") for row in grid for value in row.values()) == 1
    metrics = outcome.store.runs[0]["metrics"]
    assert metrics["gap"] == pytest.approx(
        metrics["train_eval_accuracy"] - metrics["test_accuracy"]
    )
