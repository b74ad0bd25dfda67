"""The throughput procedure, its suite file, and the bench time / bench profile commands."""

import json

import pytest
import torch
from bench_plugins.procedures.throughput.study import summary_row
from click.testing import CliRunner
from torch import nn

from harness.cli import cli
from harness.devices import available_devices
from harness.errors import BenchError, SuiteError
from harness.execution.runner import run_suite
from harness.measuring.timer import Cap, Timing
from harness.measuring.workload import timing_suite
from harness.planning.overrides import Overrides, load_suite_with
from harness.planning.suite_files import find_suite, parse_suite
from harness.registry.loading import load_plugins
from harness.registry.specs import ModelSpec
from harness.results.store import load_results

# One thread: two threads on a busy 2-core machine can wait on each other for a long time.
TINY = {"devices": ["cpu"], "quick": True, "threads": 1}


def tiny_suite(registry, models=("mlp", "lenet5"), samples=16, **settings):
    return parse_suite(
        {
            "procedure": "throughput",
            "models": list(models),
            "datasets": ["synthetic"],
            "dataset_options": {"synthetic": {"samples": samples}},
            "throughput": {"batch_sizes": [1, 4], **TINY, **settings},
        },
        registry,
        source="test",
        default_name="tiny",
    )


def run(registry, suite, tmp_path):
    return run_suite(suite, registry, out_dir=tmp_path / "out", quiet=True)


def test_suite_runs_on_cpu_and_renders_its_table(registry, tmp_path):
    threads = torch.get_num_threads()
    outcome = run(registry, tiny_suite(registry), tmp_path)
    assert torch.get_num_threads() == threads  # the threads setting holds for the runs only
    runs = outcome.store.runs
    assert [r["status"] for r in runs] == ["ok"] * 4
    assert [r["config"]["name"] for r in runs] == [
        "mlp-synthetic-cpu-b1",
        "mlp-synthetic-cpu-b4",
        "lenet5-synthetic-cpu-b1",
        "lenet5-synthetic-cpu-b4",
    ]
    metrics = runs[3]["metrics"]
    assert metrics["input_shape"] == [1, 28, 28] and metrics["batch_size"] == 4
    assert metrics["params"] == 61_706 and metrics["flops_per_sample"]["forward"] == 833_040
    assert metrics["threads"] == runs[3]["config"]["threads"] == 1  # the suite's threads setting
    assert metrics["dtype"] == "float32"
    for mode in ("forward", "forward_backward", "train_step", "epoch"):
        assert metrics[mode]["samples"] and metrics[mode]["samples_per_s"] > 0
    header, rule, *rows = outcome.report.markdown.split("\n\n")[2].splitlines()
    for column in (
        "model",
        "device",
        "batch",
        "params",
        "FLOPs/sample",
        "forward (IQR)",
        "train step (IQR)",
        "train samples/s",
        "epoch samples/s",
        "peak mem",
        "flags",
    ):
        assert column in header
    assert len(rows) == 4 and "| lenet5" in rows[3] and "| 61,706 " in rows[3]
    stored = load_results(outcome.store.path)
    assert stored["suite"]["procedure"] == "throughput" and len(stored["runs"]) == 4


def test_builtin_suite_gives_each_model_its_own_geometry(registry):
    suite = load_suite_with("throughput", registry, Overrides())
    runs = registry.procedures.get("throughput").plan(suite, registry)
    shapes = {r.config["model"]: r.config["dataset_options"]["shape"] for r in runs}
    assert shapes["resnet18"] == shapes["alexnet"] == "3x224x224"
    assert shapes["lenet5"] == shapes["mlp"] == "1x28x28"
    assert {r.config["batch_size"] for r in runs} == {1, 32, 128}
    assert {r.config["device"] for r in runs} == set(available_devices())
    assert len(runs) == 7 * 3 * len(available_devices())
    assert find_suite("throughput", registry).name == "throughput.toml"


def oom_registry():
    """The built-ins plus a model that runs out of CUDA memory from batch size 4 up."""

    class Greedy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x):
            if len(x) >= 4:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 8 GiB")
            return self.fc(x.flatten(1))

    registry = load_plugins().registry
    registry.models.add(ModelSpec("greedy", "runs out of memory", lambda s, n: Greedy()), "test")
    return registry


def test_out_of_memory_is_recorded_for_that_batch_size_only(tmp_path):
    registry = oom_registry()
    outcome = run(registry, tiny_suite(registry, models=["greedy"]), tmp_path)
    statuses = {r["config"]["batch_size"]: r["status"] for r in outcome.store.runs}
    assert statuses == {1: "ok", 4: "oom"}
    assert "out of memory" in outcome.store.runs[1]["error"]
    assert "| oom" in outcome.report.markdown


def test_compile_failure_is_recorded_as_a_failed_run(registry, tmp_path, monkeypatch):
    def broken(model, *args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    outcome = run(registry, tiny_suite(registry, models=["mlp"], compile=True), tmp_path)
    assert {r["status"] for r in outcome.store.runs} == {"failed"}
    assert "torch.compile cannot run here" in outcome.store.runs[0]["error"]


def test_profile_setting_saves_trace_and_top_operators(registry, tmp_path):
    suite = tiny_suite(
        registry,
        models=["mlp"],
        batch_sizes=[2],
        modes=["forward"],
        profile=True,
        profile_mode="forward",
    )
    outcome = run(registry, suite, tmp_path)
    profile = outcome.store.runs[0]["metrics"]["profile"]
    assert profile["mode"] == "forward" and profile["top_ops"]
    trace_dir = tmp_path / "out" / "traces" / "mlp-synthetic-cpu-b2"
    assert profile["trace_dir"] == str(trace_dir) and list(trace_dir.glob("*.pt.trace.json"))
    assert "### Top operators: 000-mlp-synthetic-cpu-b2 (forward" in outcome.report.markdown


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"amp": "fp16"}, "fp16 autocast is not supported on CPU"),
        ({"batch_sizes": [64]}, "batch size 64 is larger than the training split"),
    ],
)
def test_impossible_settings_stop_before_any_run(registry, tmp_path, settings, message):
    with pytest.raises(BenchError, match=message):
        run(registry, tiny_suite(registry, **settings), tmp_path)
    assert not (tmp_path / "out").exists()


def test_train_batch_size_is_refused_with_a_pointer(registry):
    suite = load_suite_with("throughput", registry, Overrides(train={"batch_size": 64}))
    with pytest.raises(SuiteError, match="batch_sizes"):
        registry.procedures.get("throughput").plan(suite, registry)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_suite_runs_on_cuda(registry, tmp_path):
    outcome = run(registry, tiny_suite(registry, models=["lenet5"], devices=["cuda"]), tmp_path)
    assert {r["status"] for r in outcome.store.runs} == {"ok"}
    assert outcome.store.runs[0]["metrics"]["train_step"]["memory"]["peak_allocated_bytes"] > 0


def bench(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_bench_time_json_writes_a_results_file(tmp_path):
    args = "--model lenet5 --dataset digits --device cpu --threads 1 --batch-size 2 --batch-size 8"
    loop = "--mode forward --mode epoch --warmup 0 --repeats 2 --min-time 0 --max-time 1"
    loop += " --min-repeats 1 --time-limit 3"
    result = bench("time", *args.split(), *loop.split(), "--json", "--out", str(tmp_path / "t"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "complete" and [r["status"] for r in data["runs"]] == ["ok", "ok"]
    metrics = [r["metrics"] for r in data["runs"]]
    assert [m["batch_size"] for m in metrics] == [2, 8] and metrics[0]["threads"] == 1
    assert set(metrics[0]) >= {"forward", "epoch"} and "train_step" not in metrics[0]
    assert (metrics[0]["forward"]["n"], metrics[0]["forward"]["warmup_iterations"]) == (2, 0)
    loop_settings = data["runs"][0]["config"]["loop"]
    assert (loop_settings["min_repeats"], loop_settings["time_limit"]) == (1, 3.0)
    assert load_results(data["results"])["suite"]["procedure"] == "throughput"


def test_bench_time_bad_input_is_one_line_and_exit_2(tmp_path):
    result = bench(
        "time",
        "--model",
        "lenet5",
        "--amp",
        "fp16",
        "--device",
        "cpu",
        "--out",
        str(tmp_path / "t"),
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: fp16 autocast is not supported on CPU; use amp bf16 or a CUDA device"
    )


def test_bench_profile_prints_top_operators_and_the_trace_location(tmp_path):
    out = tmp_path / "prof"
    result = bench(
        "profile",
        "--model",
        "mlp",
        "--dataset",
        "digits",
        "--batch-size",
        "4",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert "### Top operators" in result.stdout and "| aten::" in result.stdout
    assert f"traces:  {out / 'traces'}" in result.stdout
    assert list((out / "traces" / "mlp-digits-cpu-b4").glob("*.pt.trace.json"))


def timed_run(**records):
    """A stored throughput run whose modes hold ``records`` (timing records)."""
    config = {"model_label": "big", "device": "cpu", "batch_size": 128}
    metrics = {"params": 11_689_512, "input_shape": [3, 224, 224], **records}
    return {"status": "ok", "config": config, "metrics": metrics}


def test_the_table_says_which_cap_cut_a_measurement_short():
    capped = Timing([4.0, 4.5], 1, 4.0, Cap("time_limit", 8.0, 5, 1.0)).to_dict()
    full = Timing([0.01] * 5, 1, 0.01).to_dict()
    row = summary_row(timed_run(forward=full, train_step=capped), ["forward", "train_step"])
    assert row["train step (IQR) ms"].endswith("†") and not row["forward (IQR) ms"].endswith("†")
    assert row["flags"] == "train_step capped by time_limit=8: 2 of 5 samples"


@pytest.mark.parametrize(
    ("median", "iqr", "text"),
    [
        (0.000543, 0.0000688, "0.543 (0.069)"),
        (0.0123, 0.00041, "12.3 (0.4)"),
        (1.3, 0.052, "1,300 (52)"),
    ],
)
def test_latency_and_its_iqr_read_to_the_same_precision(median, iqr, text):
    record = {"median": median, "iqr": iqr}
    row = summary_row(timed_run(forward=record), ["forward"])
    assert row["forward (IQR) ms"] == text
    assert row["forward (IQR) ms"].numbers == {
        "forward median ms": median * 1e3,
        "forward IQR ms": iqr * 1e3,
    }


def test_parameters_read_as_bench_run_and_bench_list_print_them():
    assert summary_row(timed_run(), [])["params"] == "11,689,512"


def test_a_cap_with_every_sample_says_how_many_seconds_it_took_of_those_wanted():
    capped = Timing([0.001] * 20, 0, 0.0, Cap("max_repeats", 20, 5, 1.0)).to_dict()
    row = summary_row(timed_run(forward=capped), ["forward"])
    assert row["flags"] == "forward capped by max_repeats=20: 0.02 of 1 s"


WIDE_HEAD = """
from torch import nn

from harness import ModelSpec, hookimpl


def wide_head(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(12, num_classes))


@hookimpl
def register_models(register):
    register(ModelSpec("wide-head", "a linear layer to 1000 classes", wide_head,
                       input_shape=(3, 2, 2), num_classes=1000))
"""


def test_bench_time_times_the_model_bench_list_models_lists(tmp_path):
    plugin = tmp_path / "wide_head.py"
    plugin.write_text(WIDE_HEAD)
    listed = bench("list", "models", "--json", "--plugin", str(plugin))
    (row,) = [r for r in json.loads(listed.stdout) if r["name"] == "wide-head"]
    args = "--batch-size 2 --mode forward --quick --threads 1 --json"
    timed = bench("time", "--model", "wide-head", "--plugin", str(plugin), *args.split(),
                  "--out", str(tmp_path / "t"))  # fmt: skip
    assert timed.exit_code == 0, timed.output
    (run,) = json.loads(timed.stdout)["runs"]
    assert run["metrics"]["params"] == row["params"] == 12 * 1000 + 1000
    assert run["config"]["dataset_options"] == {"shape": "3x2x2", "classes": 1000}


def plan_synthetic(registry, models, **options):
    overrides = Overrides(
        models=models,
        dataset_options=options,
        settings={"devices": ("cpu",), "batch_sizes": (1,)},
    )
    suite = timing_suite(None, overrides, registry, "t")
    runs = registry.procedures.get("throughput").plan(suite, registry)
    return {r.config["model"]: r.config["dataset_options"] for r in runs}


def test_synthetic_takes_classes_only_for_models_listed_for_classification(registry):
    options = plan_synthetic(registry, ["mlp", "autoencoder"])
    assert options["mlp"] == {"shape": "1x28x28", "classes": 10}
    assert options["autoencoder"] == {"shape": "1x28x28"}  # reconstruction: targets are inputs


def test_a_model_listed_for_a_task_synthetic_data_cannot_give_is_refused(registry):
    """gru is listed for regression (10 steps, one output): synthetic classification data would
    time another model, so it is refused naming a dataset of its task, unless a shape is set."""
    with pytest.raises(BenchError, match=r"'gru' is listed for the regression task.*--dataset wti"):
        plan_synthetic(registry, ["gru"])
    assert plan_synthetic(registry, ["gru"], shape="1x40")["gru"] == {"shape": "1x40"}


def test_the_users_classes_and_shape_win_over_the_models(registry):
    """Dataset options without a dataset (bench time --dataset-opt) reach the default one."""
    options = plan_synthetic(registry, ["resnet18"], classes="7", shape="3x32x32")
    assert options["resnet18"] == {"shape": "3x32x32", "classes": "7"}


def test_a_classifier_listed_with_one_class_is_refused_with_the_way_out():
    registry = load_plugins().registry
    one = ModelSpec(
        "one", "one class", lambda s, n: nn.Linear(2, n), input_shape=(2,), num_classes=1
    )
    registry.models.add(one, "test")
    with pytest.raises(BenchError, match="listed with 1 class.*classes=N"):
        plan_synthetic(registry, ["one"])
    assert plan_synthetic(registry, ["one"], classes="3")["one"]["classes"] == "3"


def test_every_thread_count_in_the_results_is_the_one_the_run_used(tmp_path):
    """threads 0 ('leave it as it is') is no count: the config does not show it beside the
    count the run used."""
    args = "--model mlp --batch-size 1 --mode forward --quick --threads 1 --json"
    result = bench("time", *args.split(), "--out", str(tmp_path / "t"))
    assert result.exit_code == 0, result.output
    data = load_results(json.loads(result.stdout)["results"])
    (run,) = data["runs"]
    assert "threads" not in run["config"]
    recorded = (
        run["metrics"]["threads"],
        run["placement"]["threads"],
        data["execution"]["threads"],
        data["environment"]["threads"],
    )
    assert recorded == (1, 1, 1, 1)
