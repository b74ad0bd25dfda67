"""Stacking in a suite: runs that may stack train as groups with exactly the numbers they have
alone, whatever the executor; the others train alone and say why; a group that cannot train
trains its members alone; ``bench rerun`` of a stacked run gives the same numbers alone."""

from __future__ import annotations

import json
import textwrap
from concurrent.futures import Future

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.execution import stack_groups
from harness.execution.jobs import WorkerLost, perform_in_scratch
from harness.execution.scheduler import run_all
from harness.execution.stacking import Stacking, plan_stacking
from harness.planning.suite_files import Run, parse_suite
from harness.results.store import ResultsStore

TIME_FIELDS = ("train_seconds", "wall_seconds")
REGULARIZATION = ["run", "--suite", "regularization", "--quick", "--epochs", "3", "-q"]
DIGITS = ["--dataset", "digits", "--dataset-opt", "size=8", "--epochs", "1", "--threads", "1"]


def bench(*args, out):
    result = CliRunner().invoke(cli, [*map(str, args), "--out", str(out)])
    return result, json.loads((out / "results.json").read_text())["runs"]


def numbers(record: dict) -> dict:
    """A run's metrics without what depends on the clock."""
    metrics = {k: v for k, v in record["metrics"].items() if k not in TIME_FIELDS}
    metrics["history"] = [
        {k: v for k, v in epoch.items() if k != "seconds"} for epoch in metrics.get("history", [])
    ]
    return metrics


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    out = tmp_path_factory.mktemp("alone") / "out"
    result, runs = bench(*REGULARIZATION, "--stack", "off", out=out)
    assert result.exit_code == 0, result.output
    return runs


@pytest.mark.parametrize("executor", [[], ["--jobs", "2"]], ids=["in-process", "jobs-2"])
def test_the_regularization_suite_is_identical_stacked_and_alone(alone, tmp_path, executor):
    result, runs = bench(*REGULARIZATION, *executor, out=tmp_path / "on")
    assert result.exit_code == 0, result.output
    assert [r["id"] for r in runs] == [r["id"] for r in alone]
    for stacked, lone in zip(runs, alone, strict=True):
        assert stacked["status"] == lone["status"] == "ok"
        assert numbers(stacked) == numbers(lone), stacked["id"]
        assert "stacking" not in lone
    groups = {r["stacking"]["group"]: r["stacking"]["size"] for r in runs}
    assert len(groups) == (2 if executor else 1)  # split over two workers, or one group
    assert sum(groups.values()) == len(runs)
    for run in runs:
        stacking = run["stacking"]
        assert run["id"] in stacking["members"] and len(stacking["members"]) == stacking["size"]
        assert stacking["train_seconds_share"] == pytest.approx(
            stacking["train_seconds"] / stacking["size"]
        )
    compared = CliRunner().invoke(cli, ["compare", str(tmp_path / "on"), str(tmp_path / "on")])
    assert compared.exit_code == 0, compared.output


def test_bench_rerun_of_a_stacked_run_gives_its_numbers_alone(tmp_path):
    result, runs = bench("run", "--model", "mlp", *DIGITS, "--seed", "0", "--seed", "1",
                         out=tmp_path / "on")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert runs[1]["stacking"]["size"] == 2
    again = CliRunner().invoke(
        cli, ["rerun", str(tmp_path / "on"), "1", "--out", str(tmp_path / "again")]
    )
    assert again.exit_code == 0, again.output
    (rerun,) = json.loads((tmp_path / "again" / "results.json").read_text())["runs"]
    assert "group" not in rerun.get("stacking", {})  # alone
    assert numbers(rerun) == numbers(runs[1])


PLUGIN = """
    from torch import nn
    from harness import ModelSpec, hookimpl

    def gelu_mlp(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 37), nn.GELU(), nn.Dropout(0.2),
                             nn.Linear(37, num_classes))

    def batchnorm_mlp(input_shape, num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(),
                             nn.Linear(16, num_classes))

    @hookimpl
    def register_models(register):
        register(ModelSpec("gelu-mlp", "a plugin's MLP", gelu_mlp, input_shape=(1, 8, 8)))
        register(ModelSpec("bn-mlp", "with BatchNorm", batchnorm_mlp, input_shape=(1, 8, 8)))
"""


def test_a_plugin_mlp_stacks_exactly_and_a_batchnorm_model_says_why_it_did_not(
    tmp_path, monkeypatch
):
    (tmp_path / "stack_plugin.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["--plugin", "stack_plugin", "run", "--model", "gelu-mlp", "--model", "bn-mlp", *DIGITS,
            "--seed", "0", "--seed", "1"]  # fmt: skip
    result, on = bench(*args, out=tmp_path / "on")
    assert result.exit_code == 0, result.output
    _, off = bench(*args, "--stack", "off", out=tmp_path / "off")
    for stacked, lone in zip(on, off, strict=True):
        assert numbers(stacked) == numbers(lone), stacked["id"]
    by_model = {r["config"]["model"]: r["stacking"] for r in on}
    assert by_model["gelu-mlp"]["size"] == 2
    assert by_model["bn-mlp"] == {"reason": "BatchNorm1d is not supported"}


@pytest.mark.parametrize(
    "extra, reason",
    [
        (["--model", "mlp", "--threads", "2"], "runs use 2 threads"),
        (["--model", "mlp", "--save-checkpoint"], "checkpoints are saved and continued run by run"),
        (["--model", "mlp", "--optimizer", "adadelta"], "optimizer adadelta is not stacked"),
    ],
)
def test_a_run_that_cannot_stack_trains_alone_and_its_record_says_why(tmp_path, extra, reason):
    args = ["run", *DIGITS, "--seed", "0", "--seed", "1", *extra]
    result, runs = bench(*args, out=tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert all(reason in r["stacking"]["reason"] for r in runs), runs[0]["stacking"]


def test_timing_runs_never_stack(tmp_path):
    out = tmp_path / "timed"
    result = CliRunner().invoke(
        cli, ["time", "--model", "mlp", "--dataset", "digits", "--quick", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "results.json").read_text())["runs"]
    for run in runs:
        assert run["stacking"] == {"reason": "procedure 'throughput' does not stack its runs"}


def test_a_group_whose_training_fails_trains_its_members_alone(tmp_path, monkeypatch):
    args = ["run", "--model", "mlp", *DIGITS, "--seed", "0", "--seed", "1"]
    _, off = bench(*args, "--stack", "off", out=tmp_path / "off")

    def broken(*_, **__):
        raise RuntimeError("injected")

    monkeypatch.setattr(stack_groups, "train_stacked", broken)
    result, runs = bench(*args, out=tmp_path / "on")
    assert result.exit_code == 0, result.output
    for run, lone in zip(runs, off, strict=True):
        assert run["status"] == "ok" and numbers(run) == numbers(lone)
        assert "training failed (RuntimeError: injected)" in run["stacking"]["reason"]


class LosesGroups:
    """An executor whose worker dies under every stacked group; single runs it performs."""

    slots, threads, threads_alone = 1, 1, 1

    def __init__(self, registry):
        self.registry, self.jobs = registry, []

    def submit(self, job, progress=None):
        self.jobs.append(job)
        future = Future()
        if job.group:
            future.set_exception(WorkerLost("worker process killed by SIGKILL"))
        else:
            future.set_result(perform_in_scratch(job, worker="test", registry=self.registry))
        return future


def test_a_group_whose_worker_is_lost_is_started_again_member_by_member(registry, tmp_path):
    from harness.execution.runner import RunPolicy, job_maker
    from harness.planning.protocol import RunContext

    suite = parse_suite(
        {"name": "two", "procedure": "accuracy", "models": ["mlp"], "seeds": [0, 1, 2],
         "datasets": [{"name": "digits", "options": {"size": 8}}], "train": {"epochs": 1}},
        registry,
        source="test",
    )  # fmt: skip
    runs = registry.procedures.get("accuracy").plan(suite, registry)
    store = ResultsStore.create(
        tmp_path / "results.json", command=["test"], suite=suite.header(), environment={}
    )
    executor = LosesGroups(registry)
    ctx = RunContext(registry=registry, device=__import__("torch").device("cpu"), out_dir=tmp_path)
    stacking = plan_stacking(runs, registry, "auto", threads=1, device="cpu")
    run_all(runs, store, executor, job_maker(ctx, RunPolicy(), executor), stacking=stacking)
    assert len(executor.jobs[0].group) == 3 and [len(j.group) for j in executor.jobs[1:]] == [0] * 3
    assert [r["status"] for r in store.runs] == ["ok"] * 3
    for record in store.runs:
        assert record["stacking"]["reason"].startswith(
            "its group stopped as a whole (worker process"
        )


def test_the_suite_file_turns_stacking_off_and_a_bad_value_is_named(registry):
    base = {"name": "s", "procedure": "accuracy", "models": ["mlp"], "datasets": ["digits"]}
    assert parse_suite({**base, "stack": "off"}, registry, source="s.toml").stack == "off"
    assert parse_suite(base, registry, source="s.toml").stack == "auto"
    with pytest.raises(Exception, match=r"s.toml.*stack.*'auto' or 'off'"):
        parse_suite({**base, "stack": "maybe"}, registry, source="s.toml")


@pytest.mark.parametrize(
    ("ready", "free_slots", "size"),
    [(81, 1, 21), (81, 2, 21), (24, 1, 24), (25, 1, 13), (10, 2, 5), (1, 1, 1)],
)
def test_ready_runs_of_a_kind_split_evenly_into_groups_no_larger_than_the_most(
    ready, free_slots, size
):
    runs = [Run(index, "accuracy", {"name": f"r{index}"}) for index in range(ready)]
    stacking = Stacking(kinds={run.index: "mlp" for run in runs}, most={"mlp": 24})
    assert stacking.group(runs[0], runs, free_slots) == runs[:size]
