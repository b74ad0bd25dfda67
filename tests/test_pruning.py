"""Pruning methods, the nonzero-aware FLOP counter and the pruning procedure, on tiny settings."""

import copy

import bench_plugins.procedures.pruning.methods
import pytest
import torch
from bench_plugins.procedures.pruning import study as pruning_procedure
from bench_plugins.procedures.pruning.methods import PruningContext, classifier, make_permanent
from bench_plugins.procedures.pruning.study import width_for_target
from bench_plugins.tasks.supervised import CLASSIFICATION
from torch import nn
from torch.nn.utils import prune

from harness.data import DataContext
from harness.errors import BenchError
from harness.execution.runner import run_suite
from harness.measuring.flops import (
    count_nonzero_params,
    count_params,
    effective_flops,
    forward_flops,
)
from harness.planning.overrides import Overrides, load_suite_with
from harness.planning.suite_files import parse_suite
from harness.reporting.run_figures import run_plots_note
from harness.results.store import load_results
from harness.training.loop import TrainConfig, train

MNIST = (1, 28, 28)
UNSTRUCTURED = ["random", "layer-magnitude", "global-magnitude"]


@pytest.fixture
def lenet(registry):
    torch.manual_seed(0)
    return registry.models.get("lenet5").create(MNIST, 10)


def prune_with(registry, model, method, target):
    return registry.pruning_methods.get(method).prune(model, target, PruningContext(MNIST))


@pytest.mark.parametrize("method", [*UNSTRUCTURED, "structured"])
@pytest.mark.parametrize("target", [0.5, 0.875, 0.96875])
def test_each_method_reaches_its_target_within_one_point(registry, lenet, method, target):
    dense = count_params(lenet)
    head = copy.deepcopy(classifier(lenet).state_dict())
    pruned = make_permanent(prune_with(registry, lenet, method, target))
    achieved = 1 - count_nonzero_params(pruned) / dense
    assert abs(achieved - target) <= 0.01
    assert pruned(torch.randn(2, *MNIST)).shape == (2, 10)
    if method != "structured":  # the classifier keeps every weight
        for key, value in classifier(pruned).state_dict().items():
            assert torch.equal(value, head[key])


def test_masks_stay_permanent_through_fine_tuning(registry, lenet):
    splits = registry.datasets.get("digits").open({}, DataContext(seed=0))
    model = prune_with(registry, lenet, "global-magnitude", 0.75)
    zero_before = [(m.weight == 0) for m in model.modules() if hasattr(m, "weight_mask")]
    config = TrainConfig.from_options({"epochs": 1})
    train(model, splits, config, task=CLASSIFICATION, device=torch.device("cpu"), seed=0)
    make_permanent(model)
    pruned_layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][:-1]
    assert not any(hasattr(m, "weight_mask") for m in model.modules())
    for layer, zeros in zip(pruned_layers, zero_before, strict=True):
        assert torch.all(layer.weight[zeros] == 0)
    assert 1 - count_nonzero_params(model) / 61_706 >= 0.74


def test_structured_pruning_shrinks_layers_and_runs_faster_in_flops(registry, lenet):
    pruned = prune_with(registry, copy.deepcopy(lenet), "structured", 0.75)
    convs = [m for m in pruned.modules() if isinstance(m, nn.Conv2d)]
    assert convs[1].out_channels < 16 and convs[1].in_channels == convs[0].out_channels
    assert classifier(pruned).out_features == 10
    assert count_params(pruned) == count_nonzero_params(pruned) < 61_706 * 0.26
    assert forward_flops(pruned, MNIST) < forward_flops(lenet, MNIST) / 2


def test_structured_searches_its_ratio_once_per_architecture_and_target(registry, monkeypatch):
    """Another seed's dense model prunes once, to the structure and weights a search gives."""
    calls = []
    real = bench_plugins.procedures.pruning.methods._prune_channels
    monkeypatch.setattr(
        bench_plugins.procedures.pruning.methods,
        "_prune_channels",
        lambda *a: calls.append(1) or real(*a),
    )
    monkeypatch.setattr(bench_plugins.procedures.pruning.methods, "_RATIOS", {})
    first, second = (registry.models.get("lenet5").create(MNIST, 10) for _ in range(2))
    prune_with(registry, first, "structured", 0.75)
    searched = len(calls)
    remembered = prune_with(registry, second, "structured", 0.75)
    assert searched > 1 and len(calls) == searched + 1
    monkeypatch.setattr(bench_plugins.procedures.pruning.methods, "_RATIOS", {})
    fresh = prune_with(registry, second, "structured", 0.75)
    assert remembered.state_dict().keys() == fresh.state_dict().keys()
    for key, value in fresh.state_dict().items():
        assert torch.equal(remembered.state_dict()[key], value)


def big_head():
    """8 prunable weights, then a classifier of 200 weights and 100 biases (310 parameters)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 100))


@pytest.mark.parametrize("method", UNSTRUCTURED)
def test_a_target_the_model_cannot_reach_is_a_share_of_the_prunable_weights(registry, method):
    """90% of 310 parameters is more than the 8 weights outside the classifier: 90% of those 8
    go instead, the classifier keeps all of its, and the method says what it measured against."""
    model, context = big_head(), PruningContext((4,))
    pruned = make_permanent(registry.pruning_methods.get(method).prune(model, 0.9, context))
    assert (pruned[1].weight == 0).sum() == round(0.9 * 8)
    assert torch.count_nonzero(pruned[3].weight) == 200
    assert context.notes == {"target_of": "prunable weights", "prunable_weights": 8}


@pytest.mark.parametrize("method", UNSTRUCTURED)
def test_prune_classifier_lets_unstructured_methods_prune_the_classifier(registry, method):
    model, context = big_head(), PruningContext((4,), prune_classifier=True)
    pruned = make_permanent(registry.pruning_methods.get(method).prune(model, 0.5, context))
    assert count_params(pruned) - count_nonzero_params(pruned) == 155  # 50% of all 310
    assert torch.count_nonzero(pruned[3].weight) < 200
    assert context.notes == {}  # the whole model reached the target


def test_a_model_whose_classifier_holds_every_weight_says_how_to_prune_it(registry):
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 10))
    with pytest.raises(BenchError, match="no prunable weights.*prune_classifier = true"):
        prune_with(registry, model, "global-magnitude", 0.5)


@pytest.mark.parametrize("target", [0.5, 0.75, 0.875, 0.9375, 0.96875])
def test_scratch_width_hits_parameter_target(registry, target):
    spec = registry.models.get("cnn-small")
    width = width_for_target(spec, MNIST, 10, {}, target)
    params = count_params(spec.create(MNIST, 10, {"width": width}))
    assert abs((1 - params / 47_658) - target) <= 0.01


def test_scratch_width_is_searched_once_per_model_and_target(registry, monkeypatch):
    spec = registry.models.get("lenet5")
    builds = []
    monkeypatch.setattr(pruning_procedure, "_WIDTHS", {})
    monkeypatch.setattr(pruning_procedure, "count_params", lambda m: builds.append(1) or 1)
    width = width_for_target(spec, MNIST, 10, {}, 0.6)
    searched = len(builds)
    assert searched > 10 and width_for_target(spec, MNIST, 10, {}, 0.6) == width
    assert len(builds) == searched  # the second answer built no model
    width_for_target(spec, MNIST, 10, {"dropout": 0.1}, 0.6)
    assert len(builds) > searched  # other options are another search


def test_scratch_needs_a_width_option(registry):
    with pytest.raises(BenchError, match="no 'width' option"):
        width_for_target(registry.models.get("resnet18"), (3, 32, 32), 10, {}, 0.5)


def test_effective_flops_on_a_hand_computed_case():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.Flatten(), nn.Linear(32, 3))
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0, 0, 0] = 1.0  # 1 of 18 conv weights left
        model[2].weight[:, :16] = 0.0  # half the linear weights left
    # dense: conv 2 ch x 16 positions x 9 MACs = 288; linear 32 x 3 = 96 -> (288 + 96) x 2
    assert forward_flops(model, (1, 6, 6)) == 768
    # nonzero: conv 1 weight x 16 positions = 16 MACs; linear 16 x 3 = 48 MACs -> 64 x 2
    assert effective_flops(model, (1, 6, 6)) == 128
    assert effective_flops(model, (1, 6, 6), batch_size=4) == 512


def tiny_suite(registry, **pruning):
    data = {
        "procedure": "pruning",
        "models": ["lenet5"],
        "seeds": [0, 1],
        "train": {"epochs": 1},
        "pruning": {"targets": [50, 87.5], "finetune_epochs": 1, "latency_batch": 8, **pruning},
    }
    return parse_suite(data, registry, source="test")


def test_plan_has_dense_control_then_every_method_and_target(registry):
    suite = tiny_suite(registry)
    runs = registry.procedures.get("pruning").plan(suite, registry)
    per_seed = 1 + 5 * 2
    assert len(runs) == 2 * per_seed + 1  # and one latency run for both seeds, last
    assert runs[0].config["kind"] == "dense"
    assert {(r.config.get("method"), r.config.get("target")) for r in runs[1:per_seed]} == {
        (m, t) for m in [*UNSTRUCTURED, "structured", "scratch"] for t in (50.0, 87.5)
    }
    latency = runs[-1]
    assert latency.config["kind"] == "latency" and latency.config["seeds"] == [0, 1]
    assert latency.exclusive and not any(r.exclusive for r in runs[:-1])


def test_scratch_without_a_width_option_is_planned_not_applicable(registry, cpu_context):
    """Not a failure: the run records why, and the latency run does not try to make it."""
    data = {
        "procedure": "pruning",
        "models": ["resnet18", "lenet5"],
        "pruning": {"methods": ["global-magnitude", "scratch"], "targets": [50]},
    }
    procedure = registry.procedures.get("pruning")
    runs = procedure.plan(parse_suite(data, registry, source="test"), registry)
    scratch = {r.config["model"]: r for r in runs if r.config["kind"] == "scratch"}
    reason = "model 'resnet18' has no 'width' option, which scratch variants need"
    assert scratch["resnet18"].config["not_applicable"] == reason
    assert "not_applicable" not in scratch["lenet5"].config
    assert procedure.execute(scratch["resnet18"], cpu_context) == {"not_applicable": reason}
    latency = {r.config["model"]: r.config for r in runs if r.config["kind"] == "latency"}
    assert latency["resnet18"]["methods"] == ["global-magnitude"]
    assert latency["lenet5"]["methods"] == ["global-magnitude", "scratch"]
    assert not any("prune_classifier" in r.config for r in runs)  # the default: hashes as before


def test_prune_classifier_reaches_the_runs_that_prune(registry):
    runs = registry.procedures.get("pruning").plan(
        tiny_suite(registry, prune_classifier=True), registry
    )
    flagged = {r.config["kind"] for r in runs if r.config.get("prune_classifier")}
    assert flagged == {"prune", "latency"}


def test_pruned_variants_need_their_dense_run_and_scratch_needs_none(registry):
    runs = registry.procedures.get("pruning").plan(tiny_suite(registry), registry)
    dense = {r.config["seed"]: r.index for r in runs if r.config["kind"] == "dense"}
    for run in runs:
        kind, seed = run.config["kind"], run.config["seed"]
        needs = {"prune": (dense[seed],), "latency": (dense[0], dense[1])}.get(kind, ())
        assert run.needs == needs, run.id


def test_a_failed_dense_run_skips_its_pruned_variants_with_the_reason(registry, tmp_path):
    data = {
        "procedure": "pruning",
        "models": [{"name": "mlp", "options": {"hidden": [16]}, "train": {"lr": 1e6}}],
        "datasets": [{"name": "digits", "options": {"size": 8}}],
        "train": {"epochs": 1},
        "pruning": {"methods": ["random", "scratch"], "targets": [50], "finetune_epochs": 0},
    }
    suite = parse_suite(data, registry, source="test")
    outcome = run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True)
    records = load_results(tmp_path)["runs"]
    runs = {r["config"].get("method", r["config"]["kind"]): r for r in records}
    assert runs["dense"]["status"] == "diverged"
    assert runs["latency"]["status"] == "skipped"
    assert runs["random"]["status"] == "skipped"
    assert runs["random"]["error"].startswith(
        f"not run: it needs run {runs['dense']['id']}, which is diverged"
    )
    assert runs["scratch"]["status"] == "ok"  # it ran (and survived): it needs no dense run
    # the rows without numbers say why, and no cell of theirs is missing
    table = {row["method"]: row for row in markdown_rows(outcome.report.markdown)}
    assert table["random"]["acc after FT %"] == "skipped (1 runs)"
    assert table["random"]["achieved %"] == table["random"]["structure"] == "—"
    assert table["dense"]["acc after FT %"] == "diverged (1 runs)"
    assert (table["dense"]["seeds"], table["random"]["seeds"], table["scratch"]["seeds"]) == (
        "0",
        "0",
        "1",
    )
    assert "nan" not in {cell for row in table.values() for cell in row.values()}
    from click.testing import CliRunner

    from harness.cli import cli

    rerun = CliRunner().invoke(cli, ["rerun", str(tmp_path), runs["random"]["id"]])
    assert rerun.exit_code == 2 and "was not run (not run: it needs run" in rerun.output


def markdown_rows(text: str) -> list[dict[str, str]]:
    """The rows of the first markdown table in ``text``, by column name."""
    lines = text.split("\n|", 1)[1].split("\n\n", 1)[0].split("\n")
    header, _, *rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]
    return [dict(zip(header, row, strict=True)) for row in rows]


def test_quick_uses_one_seed_and_fewer_targets(registry):
    suite = load_suite_with("cnn-pruning", registry, Overrides(settings={"quick": "true"}))
    runs = registry.procedures.get("pruning").plan(suite, registry)
    assert {r.config["seed"] for r in runs} == {0}
    assert {r.config.get("target") for r in runs} == {None, 50.0, 87.5, 96.875}


def test_unknown_method_lists_known(registry):
    suite = tiny_suite(registry, methods=["magnitud"])
    with pytest.raises(BenchError, match="Did you mean 'layer-magnitude'|Known pruning methods"):
        registry.procedures.get("pruning").plan(suite, registry)


def latency_cell(report):
    """The latency cell of the structured 87.5% row of a pruning report's table."""
    rows = report.tables[0].rows
    timed = next(r for r in rows if r["method"] == "structured" and r["target %"] == "87.5")
    return next(v for k, v in timed.items() if k.startswith("latency ms"))


def test_pruning_suite_end_to_end_renders_table_and_plot(registry, tmp_path):
    suite = tiny_suite(registry, methods=["global-magnitude", "structured", "scratch"])
    outcome = run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True, command=[])
    data = load_results(tmp_path)
    assert [r["status"] for r in data["runs"]] == ["ok"] * len(data["runs"])
    dense = data["runs"][0]["metrics"]
    assert dense["params_total"] == 61_706 and dense["achieved_drop"] == 0
    checkpoint = torch.load(dense["checkpoint"], weights_only=True)
    assert set(checkpoint) == set(registry.models.get("lenet5").create(MNIST, 10).state_dict())
    structured = next(
        r["metrics"]
        for r in data["runs"]
        if r["config"].get("method") == "structured" and r["config"]["target"] == 87.5
    )
    assert structured["params_total"] < 61_706 * 0.14
    assert "latency" not in structured  # timed apart, alone, by the latency run
    (latency,) = [r for r in data["runs"] if r["config"]["kind"] == "latency"]
    dense_runs = [r["index"] for r in data["runs"] if r["config"]["kind"] == "dense"]
    assert latency["placement"]["alone"] and latency["needs"] == dense_runs
    seeds = latency["metrics"]["seeds"]
    assert set(seeds) == {"0", "1"}
    first = seeds["0"]
    assert first["structured-87.5"]["batch_size"] == 8
    # a masked variant keeps the dense structure, so it shares the dense model's measurement
    masked = first["global-magnitude-87.5"]
    assert masked["same_structure_as"] == "s0 dense"
    assert masked["samples"] == first["dense"]["samples"]
    assert "same_structure_as" not in first["structured-87.5"]
    assert (
        set(first)
        == set(seeds["1"])
        == {"dense"}
        | {f"{m}-{t:g}" for m in ("global-magnitude", "structured", "scratch") for t in (50, 87.5)}
    )
    # the other seed prunes to the same channel counts: timed once, not twice
    again = seeds["1"]["structured-87.5"]
    assert again["same_structure_as"] == "s0 structured-87.5"
    assert again["samples"] == first["structured-87.5"]["samples"]
    timings = [seeds[seed]["structured-87.5"] for seed in ("0", "1")]
    mean = sum(t["median_ms"] for t in timings) / len(timings)  # each variant's, over seeds
    # marked when the machine was busy while it was measured (the records' contention evidence)
    busy = any(t["contention"]["contended"] for t in timings)
    assert latency_cell(outcome.report) == f"{mean:.2f}" + (" contended" if busy else "")
    # so, whatever this machine was doing: the evidence injected either way, on one seed
    for contended in (False, True):
        injected = copy.deepcopy(data)
        (run,) = [r for r in injected["runs"] if r["config"]["kind"] == "latency"]
        for seed, variants in run["metrics"]["seeds"].items():
            record = variants["structured-87.5"]
            record["contention"] = {**record["contention"], "contended": contended and seed == "1"}
        rendered = registry.procedures.get("pruning").report(injected)
        assert latency_cell(rendered) == f"{mean:.2f}" + (" contended" if contended else "")
    text = outcome.report.markdown
    header = next(line for line in text.splitlines() if line.startswith("| model"))
    for column in (
        "method",
        "structure",
        "target %",
        "achieved %",
        "params (total / nonzero)",
        "compression",
        "FLOPs dense",
        "FLOPs effective",
        "speed-up",
        "latency ms",
        "acc before FT %",
        "acc after FT %",
        "Δ vs dense pp",
        "seeds",
    ):
        assert column in header
    assert "| lenet5  | dense" in text and " ± " in text  # two seeds aggregate to mean ± std
    (plot,) = outcome.report.files
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    regenerated = registry.procedures.get("pruning").report(data, tmp_path / "again")
    note = f"\n{run_plots_note(outcome.run_plots)}\n"  # dense and scratch loss curves, in runs/
    assert regenerated.markdown.split("\n", 3)[3] + note == text.split("\n", 3)[3]


def test_plugin_pruning_method_is_used(registry, tmp_path):
    from bench_plugins.procedures.pruning.methods import PruningMethod

    def zero_first_layer(model, target, context):
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        prune.custom_from_mask(first, "weight", torch.zeros_like(first.weight))
        return model

    registry.pruning_methods.add(
        PruningMethod("zero-first", "test", "custom", zero_first_layer), "test"
    )
    try:
        suite = tiny_suite(registry, methods=["zero-first"], targets=[50])
        run_suite(suite, registry, out_dir=tmp_path, device="cpu", quiet=True, command=[])
    finally:
        registry.pruning_methods._items.pop("zero-first")
    runs = load_results(tmp_path)["runs"]
    custom = [r for r in runs if r["config"].get("method") == "zero-first"]
    assert custom and all(r["status"] == "ok" for r in custom)
    assert custom[0]["metrics"]["params_nonzero"] == 61_706 - 150
