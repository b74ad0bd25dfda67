"""Reliability: failures stay contained, nothing is lost, bad input is refused, runs repeat.

Deliberately broken models live in tests/data/broken_plugins.py; malformed suite files in
tests/data/bad_suites/. Everything trains tiny MLPs on 8x8 digits for one epoch or a few. No
assertion depends on the machine's speed: the interrupt test's subprocess waits mid-run for its
signal (tests/data/held_bench.py), and time limits stop runs that would never end by themselves.
"""

from __future__ import annotations

import ast
import json
import multiprocessing
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import bench_plugins.executors.processes
import pytest
import torch
from bench_plugins.procedures.pruning.study import _checkpoint_path
from click.testing import CliRunner

import harness.planning.overrides
import harness.training.loop
from harness.cli import cli
from harness.devices import resolve_device
from harness.errors import BenchError, OptionError
from harness.execution.rerun import comparable, differences
from harness.execution.runner import RunPolicy, default_out_dir, run_suite
from harness.options import Option, resolve_options
from harness.planning.protocol import RunContext
from harness.planning.suite_files import Run, parse_suite
from harness.registry.loading import load_plugins
from harness.results.store import atomic_write, atomic_write_json, load_results

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
BROKEN = DATA / "broken_plugins.py"
SLOW_IMPORT = "bench_test_slow_import"  # the module the slow-import model imports
UNIMPORTABLE = DATA / "import_error_plugin.py"
TINY = ["--dataset", "digits", "--dataset-opt", "size=8", "--epochs", "1", "--threads", "1"]
DIGITS8 = {"datasets": ["digits"], "dataset_options": {"digits": {"size": 8}}}
MLP16 = {"name": "mlp", "options": {"hidden": 16}}


def bench(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def broken_registry():
    return load_plugins([str(BROKEN)]).registry


def tiny_suite(registry, models):
    data = {"models": models, **DIGITS8, "train": {"epochs": 1}}
    return parse_suite(data, registry, source="test")


def run_tiny(suite, registry, out_dir, policy=None):
    """One thread: two busy threads on a small machine make tiny runs a hundred times slower."""
    return run_suite(suite, registry, out_dir=out_dir, quiet=True, threads=1, policy=policy)


# --- failures stay contained -------------------------------------------------------------------


def test_broken_plugins_are_recorded_and_the_suite_goes_on(tmp_path):
    models = ["raises-forward", "nan-output", "wrong-shape", "missing-import", "cuda-oom", "mlp"]
    result = bench(
        "--plugin", BROKEN, "--plugin", UNIMPORTABLE,
        "run", *(a for m in models for a in ("--model", m)), *TINY, "--out", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "import_error_plugin" in result.stderr and "failed to load" in result.stderr
    data = load_results(tmp_path)
    assert data["status"] == "complete"
    runs = {r["config"]["model"]: r for r in data["runs"]}
    statuses = [runs[m]["status"] for m in models]
    assert statuses == ["failed", "diverged", "failed", "failed", "oom", "ok"]
    assert "boom in forward" in runs["raises-forward"]["error"]
    assert "nan" in runs["nan-output"]["error"]
    shape_error = runs["wrong-shape"]["error"]
    assert "(3,)" in shape_error and "(10,)" in shape_error and "(1, 8, 8)" in shape_error
    assert "No module named 'bench_module_that_does_not_exist'" in runs["missing-import"]["error"]
    assert "CUDA out of memory" in runs["cuda-oom"]["error"]
    assert "5 of 6 runs did not succeed" in result.stderr
    for model in models[:5]:
        assert runs[model]["id"] in result.stderr


def test_geometry_mismatch_names_both_shapes_before_training(tmp_path, monkeypatch):
    epochs = []
    monkeypatch.setattr(harness.training.loop, "train_epoch", lambda *a, **k: epochs.append(a))
    result = bench("run", "--model", "lenet5", "--dataset", "mnist1d", "--out", tmp_path)
    assert result.exit_code == 1
    (run,) = load_results(tmp_path)["runs"]
    assert run["status"] == "failed" and epochs == []  # refused before any training step
    assert "(1, 28, 28)" in run["error"] and "(1, 40)" in run["error"]


def test_run_timeout_stops_a_run_in_process(broken_registry, tmp_path):
    """``stuck`` never finishes by itself; the tiny MLP after it needs a fraction of the limit."""
    suite = tiny_suite(broken_registry, ["stuck", MLP16])
    outcome = run_tiny(suite, broken_registry, tmp_path, RunPolicy(run_timeout=3.0))
    stuck, mlp = load_results(tmp_path)["runs"]
    assert stuck["status"] == "timeout" and "--run-timeout 3 s" in stuck["error"]
    assert stuck["metrics"] == {}
    assert mlp["status"] == "ok"
    assert outcome.store.data["execution"]["run_timeout"] == 3.0


def test_run_timeout_waits_for_an_import_to_finish(broken_registry, tmp_path, monkeypatch):
    """An import cut short would leave a half-initialised module behind for every later run."""
    monkeypatch.delitem(sys.modules, SLOW_IMPORT, raising=False)
    suite = tiny_suite(broken_registry, ["slow-import"])
    outcome = run_tiny(suite, broken_registry, tmp_path, RunPolicy(run_timeout=0.3))
    (run,) = outcome.store.runs
    assert run["status"] == "timeout"
    assert sys.modules[SLOW_IMPORT].FINISHED  # the import ran to its end before the stop


@pytest.mark.parametrize("isolate", [False, True], ids=["reused-worker", "isolated"])
def test_worker_processes_survive_segfault_and_exit(
    broken_registry, tmp_path, monkeypatch, isolate
):
    """A crash fails only its run and the next run gets a new worker, as does the run after one
    that failed; the crashed run's record holds what its worker printed during that run only
    (``chatty`` prints in every step). No worker and none of their scratch directories outlive
    the suite."""
    mlp8 = {"name": "mlp", "label": "mlp8", "options": {"hidden": 8}}
    models = ["chatty", "segfault", "exits", MLP16, "raises-forward", mlp8]
    suite = tiny_suite(broken_registry, models)
    policy = RunPolicy.of(jobs=1, isolate=isolate, plugins=(str(BROKEN),))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "scratch"))
    (tmp_path / "scratch").mkdir()
    outcome = run_tiny(suite, broken_registry, tmp_path / "out", policy)
    assert list((tmp_path / "scratch").glob("bench-*")) == []  # (pymp-*: multiprocessing's)
    assert [p for p in multiprocessing.active_children() if p.name == "bench worker"] == []
    chatty, segfault, exits, mlp, raises, small = load_results(tmp_path / "out")["runs"]
    assert chatty["status"] == "ok"
    assert segfault["status"] == "failed" and "SIGSEGV" in segfault["error"]
    assert "Fatal Python error: Segmentation fault" in segfault["traceback"]
    assert "chatty" not in segfault["traceback"]
    assert exits["status"] == "failed" and "exited with code 3" in exits["error"]
    assert mlp["status"] == "ok" and mlp["metrics"]["params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert raises["status"] == "failed" and small["status"] == "ok"
    assert outcome.store.data["status"] == "complete"
    workers = [run["placement"]["worker"] for run in (chatty, mlp, raises, small)]
    assert workers[0] != workers[1]  # chatty's worker died with the segfault
    assert (workers[1] != workers[2]) if isolate else (workers[1] == workers[2])  # reused
    assert workers[2] != workers[3]  # a worker whose run failed is not trusted with another
    assert outcome.store.data["execution"]["executor"]["isolate"] is isolate


@pytest.mark.parametrize("policy", [RunPolicy(), RunPolicy.of(jobs=1, plugins=(str(BROKEN),))])
def test_metrics_json_cannot_hold_fail_only_their_run(broken_registry, tmp_path, policy):
    """Found before the results file is written, on every executor, so the suite goes on."""
    data = {"procedure": "unwritable", "models": ["mlp"], **DIGITS8}
    suite = parse_suite(data, broken_registry, source="test")
    outcome = run_tiny(suite, broken_registry, tmp_path, policy)
    bad, fine = load_results(tmp_path)["runs"]
    assert bad["status"] == "failed" and bad["metrics"] == {}
    assert "metrics of procedure 'unwritable' cannot be written to the results file" in bad["error"]
    assert fine["status"] == "ok" and fine["metrics"] == {"answer": 42}
    assert outcome.store.data["status"] == "complete"


def test_a_worker_its_time_limit_cannot_stop_is_killed(broken_registry, tmp_path, monkeypatch):
    """``hangs`` blocks SIGALRM, as a long native call would: the parent kills the worker."""
    monkeypatch.setattr(bench_plugins.executors.processes, "KILL_GRACE", 0.5)
    suite = tiny_suite(broken_registry, ["hangs"])
    policy = RunPolicy.of(jobs=1, run_timeout=3.0, plugins=(str(BROKEN),))
    run_tiny(suite, broken_registry, tmp_path, policy)
    (hangs,) = load_results(tmp_path)["runs"]
    assert hangs["status"] == "timeout" and "worker killed" in hangs["error"]


def test_isolated_pruning_shares_its_checkpoint_and_reruns_exactly(registry, tmp_path):
    """Workers hand the dense checkpoint on through the output directory; the numbers are the
    same as in-process, and ``bench rerun`` of the pruned run reproduces them."""
    data = {
        "procedure": "pruning",
        "models": [MLP16],
        **DIGITS8,
        "train": {"epochs": 1},
        "pruning": {"methods": ["layer-magnitude"], "targets": [50], "latency_batch": 8},
    }
    suite = parse_suite(data, registry, source="test")
    isolated = run_tiny(suite, registry, tmp_path / "iso", RunPolicy.of(isolate=True))
    inline = run_tiny(suite, registry, tmp_path / "inline")
    assert [r["status"] for r in isolated.store.runs] == ["ok", "ok", "ok"]  # dense, 50%, latency
    for a, b in zip(isolated.store.runs, inline.store.runs, strict=True):
        assert differences(comparable(a["metrics"]), comparable(b["metrics"])) == []
    pruned = isolated.store.runs[1]["id"]
    result = bench("rerun", tmp_path / "iso", pruned, "--out", tmp_path / "again")
    assert result.exit_code == 0, result.output
    assert "reproduced" in result.output and "accuracy_after" in result.output
    # the dense checkpoint reached the rerun as the files its needed run wrote
    assert isolated.store.runs[1]["needs"] == [0]
    assert isolated.store.runs[0]["artifacts"] == ["checkpoints/mlp-digits-s0.pt"]

    # Labels name the plots; a results file edited since cannot put them elsewhere.
    tampered = load_results(tmp_path / "iso")
    for record in tampered["runs"]:
        record["config"]["model_label"] = "../../../escaped"
    atomic_write_json(tmp_path / "tampered" / "results.json", tampered)
    plots = tmp_path / "plots" / "a" / "b"
    result = bench("report", tmp_path / "tampered", "--plots", plots)
    assert result.exit_code == 0, result.output
    written = [p for p in tmp_path.rglob("*.png") if "escaped" in p.name]
    assert len(written) == 1 and written[0].parent == plots


def test_fail_fast_stops_at_the_first_failure(tmp_path):
    models = ["--model", "raises-forward", "--model", "mlp"]
    result = bench("--plugin", BROKEN, "run", *models, *TINY, "--fail-fast", "--out", tmp_path)
    assert result.exit_code == 1
    data = load_results(tmp_path)
    assert data["status"] == "stopped" and [r["status"] for r in data["runs"]] == ["failed"]
    assert "--fail-fast" in data["note"] and "1 of 2 runs not started" in data["note"]
    assert "stopped by --fail-fast" in result.stderr


def test_ctrl_c_outside_the_runs_exits_130_without_a_traceback(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.planning.overrides, "find_suite", interrupted)  # Ctrl-C reading it
    result = bench("run", "--suite", "quickstart")
    assert result.exit_code == 130 and "interrupted" in result.output
    assert "Traceback" not in result.output


def test_policy_flags_reach_bench_time(tmp_path):
    for command in ("time", "profile"):
        help_text = bench(command, "--help").output
        for flag in ("--run-timeout", "--fail-fast", "--isolate", "--deterministic"):
            assert flag in help_text
    result = bench(
        "time", "--model", "mlp", "--batch-size", "1", "--mode", "forward", "--quick",
        "--run-timeout", "60", "--out", tmp_path,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load_results(tmp_path)["execution"]["run_timeout"] == 60.0


# --- nothing is lost: interrupts and --resume ----------------------------------------------------


EPOCHS = 3


def suite(seeds: int = 6, epochs: int = EPOCHS) -> list[str]:
    """A few tiny runs of exactly ``epochs`` epochs each (no early stopping)."""
    seed_args = [a for seed in range(seeds) for a in ("--seed", str(seed))]
    model = ["--model", "mlp", "--model-opt", "hidden=16", "--dataset", "digits"]
    options = ["--dataset-opt", "size=8", "--epochs", str(epochs), "--threads", "1", "--quiet"]
    return ["run", *model, *options, *seed_args, "--stack", "off"]  # one run after another


SUITE = suite()


def bench_process(*args, hold: tuple[int, Path] | None = None) -> subprocess.Popen:
    """``bench ARGS`` in a subprocess. With ``hold=(N, FLAG)`` it creates FLAG in its Nth
    training epoch (counted over all runs) and waits there (see tests/data/held_bench.py)."""
    head, env = ["-m", "harness"], None
    if hold:
        head = [str(DATA / "held_bench.py")]
        env = {**os.environ, "BENCH_TEST_HOLD": f"{hold[0]}:{hold[1]}"}
    command = [sys.executable, *head, *map(str, args)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finish(process: subprocess.Popen) -> tuple[int, str]:
    _, stderr = process.communicate(timeout=300)
    return process.returncode, stderr


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The suite run once, uninterrupted, in this process."""
    out = tmp_path_factory.mktemp("clean") / "out"
    threads = torch.get_num_threads()
    result = bench(*SUITE, "--out", out)
    torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


def wait_for(flag: Path, process: subprocess.Popen) -> None:
    """Until ``flag`` exists. The deadline only keeps a broken test from hanging: the process
    waits at the flag for as long as it takes, so no machine is too slow for this test."""
    deadline = time.monotonic() + 600
    while not flag.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"bench never reached the held epoch: {process.communicate()[1]}")
        time.sleep(0.02)


def report_without_timings(out: Path) -> list[str]:
    """The report's table rows, without the context line and the train-seconds column."""
    rows = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("|")]
    return [line.rsplit("|", 3)[0] + line.rsplit("|", 2)[-1] for line in rows]


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_interrupted_suite_resumes_to_the_clean_result(tmp_path, clean_run, signum, code):
    """The signal comes in the second epoch of the third run: two runs are saved, the third is
    not recorded at all, and --resume finishes the suite with the clean run's numbers."""
    out, flag = tmp_path / "out", tmp_path / "holding"
    process = bench_process(*SUITE, "--out", out, hold=(2 * EPOCHS + 2, flag))
    try:
        wait_for(flag, process)
        process.send_signal(signum)
        returncode, stderr = finish(process)
    finally:
        process.kill()  # a no-op unless the test failed with it still running
    assert returncode == code, stderr
    data, clean = load_results(out), load_results(clean_run)
    assert data["status"] == "interrupted" and signal.Signals(signum).name in data["note"]
    assert "2 of 6 runs recorded (2 ok)" in data["note"]
    assert [r["id"] for r in data["runs"]] == [r["id"] for r in clean["runs"][:2]]
    assert f"--resume {out}" in stderr

    refused = bench(*suite(epochs=EPOCHS + 1), "--resume", out)  # not the same suite
    assert refused.exit_code == 2 and "not in this suite's plan" in refused.output
    assert refused.output.rstrip().endswith(f"--resume {out}")  # the command it suggests works
    assert load_results(out) == data  # and left as it was

    result = bench(*SUITE, "--resume", out)
    assert result.exit_code == 0, result.output
    resumed = load_results(out)
    assert resumed["status"] == "complete" and len(resumed["resumed"]) == 1
    assert [(r["id"], r["hash"], r["status"]) for r in resumed["runs"]] == [
        (r["id"], r["hash"], r["status"]) for r in clean["runs"]
    ]
    assert resumed["runs"][:2] == data["runs"]  # finished runs are kept, not repeated
    for mine, theirs in zip(resumed["runs"], clean["runs"], strict=True):
        assert differences(comparable(mine["metrics"]), comparable(theirs["metrics"])) == []
    assert report_without_timings(out) == report_without_timings(clean_run)


def bench_as_typed(monkeypatch, command: list[str]):
    """``command`` (``bench run ...``) as a shell would start it: it records ``sys.argv``."""
    monkeypatch.setattr(sys, "argv", command)
    return bench(*command[1:])


def test_an_out_directory_with_results_is_refused_with_commands_that_work(tmp_path, monkeypatch):
    """The refusal names two commands, resuming the results there or writing elsewhere: each
    works exactly as printed."""
    out = tmp_path / "out"
    command = ["bench", "run", "--model", "mlp", *TINY, "--quiet", "--out", str(out)]
    assert bench_as_typed(monkeypatch, command).exit_code == 0
    refused = bench_as_typed(monkeypatch, command)
    assert refused.exit_code == 2 and f"{out / 'results.json'} already exists" in refused.output
    resume, elsewhere = re.findall(r"`([^`]+)`", refused.output)
    assert shlex.split(resume)[-2:] == ["--resume", str(out)]
    assert shlex.split(elsewhere)[-2:] == ["--out", f"{out}-2"]
    for suggested in (resume, elsewhere):
        result = bench_as_typed(monkeypatch, shlex.split(suggested))
        assert result.exit_code == 0, result.output
    assert load_results(out)["status"] == load_results(f"{out}-2")["status"] == "complete"
    assert len(load_results(out)["resumed"]) == 1


def test_same_seed_gives_the_same_numbers_in_another_process(tmp_path, clean_run):
    returncode, stderr = finish(bench_process(*suite(seeds=2), "--out", tmp_path))
    assert returncode == 0, stderr
    again = load_results(tmp_path)["runs"]
    first = load_results(clean_run)["runs"][:2]
    for a, b in zip(again, first, strict=True):
        assert a["hash"] == b["hash"]
        for key in ("test_accuracy", "test_loss", "val_loss", "train_loss"):
            assert abs(a["metrics"][key] - b["metrics"][key]) <= 1e-6
        losses = [(h["train_loss"], h["val_loss"]) for h in a["metrics"]["history"]]
        assert losses == [(h["train_loss"], h["val_loss"]) for h in b["metrics"]["history"]]


HEADER_ONLY = json.dumps({"tool": "bench", "schema_version": 1, "runs": []})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"tool": "bench", "runs": [{"id": "0', "not valid JSON"),
        ('{"x": 1}', "not a bench results file"),
        ("[1, 2]", "not a bench results file"),
        (HEADER_ONLY, "damaged, not a complete bench results file: status is missing"),
    ],
    ids=["truncated", "foreign", "not-a-table", "header-only"],
)
@pytest.mark.parametrize(
    "command",
    [
        ["run", "--model", "mlp", *TINY, "--resume", "{dir}"],
        ["report", "{dir}"],
        ["report", "{dir}", "--plots", "{dir}"],
        ["compare", "{dir}", "{dir}/results.json"],
        ["rerun", "{dir}", "0", "--out", "{dir}/again"],
    ],
    ids=["resume", "report", "report-plots", "compare", "rerun"],
)
def test_truncated_or_foreign_results_are_refused_and_left_alone(tmp_path, command, text, message):
    (tmp_path / "results.json").write_text(text)
    result = bench(*(arg.format(dir=tmp_path) for arg in command))
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "results.json").read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_results_files_get_the_usual_permissions(tmp_path):
    """Not the 0600 of the temporary file they are written through: others may read them."""
    umask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "results.json", {"a": 1})
    finally:
        os.umask(umask)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644


@pytest.fixture
def sigint_as_at_a_terminal():
    """Ctrl-C raises KeyboardInterrupt, even when the tests were started in the background,
    where the shell makes SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_results_writes_are_fsynced_and_hold_signals_back(
    tmp_path, monkeypatch, sigint_as_at_a_terminal
):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    path = tmp_path / "r.json"

    def write(handle):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the write
        handle.write(b'{"a": 1}')

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, write)
    assert json.loads(path.read_text()) == {"a": 1}  # written whole, then interrupted
    assert len(synced) == 2  # the file and its directory


# --- reproducibility: --deterministic and bench rerun --------------------------------------------


def test_rerun_compares_every_seed_determined_number_and_no_timing():
    metrics = {
        "test_accuracy": 0.9,
        "gap": 0.3,
        "best_epoch": 7,
        "epochs": 9,
        "weights": {"weight_l1": 12.5, "weight_l2": 3.0, "near_zero_fraction": 0.01},
        "history": [{"epoch": 1, "val_loss": 0.5, "seconds": 0.2}],
        "train_seconds": 1.5,
        "latency": {"median": 0.001},
    }
    assert set(comparable(metrics)) == {
        "test_accuracy",
        "gap",
        "best_epoch",
        "epochs",
        "weights.weight_l1",
        "weights.weight_l2",
        "weights.near_zero_fraction",
        "history.0.epoch",
        "history.0.val_loss",
    }


def test_deterministic_flag_is_recorded_restored_and_changes_nothing_on_cpu(tmp_path):
    common = ["run", "--model", "mlp", "--model-opt", "hidden=16", *TINY, "--quiet"]
    assert bench(*common, "--out", tmp_path / "plain").exit_code == 0
    assert bench(*common, "--deterministic", "--out", tmp_path / "det").exit_code == 0
    assert not torch.are_deterministic_algorithms_enabled()
    plain, det = load_results(tmp_path / "plain"), load_results(tmp_path / "det")
    assert det["execution"]["deterministic"] and not plain["execution"]["deterministic"]
    assert comparable(plain["runs"][0]["metrics"]) == comparable(det["runs"][0]["metrics"])

    result = bench("rerun", tmp_path / "det", "0", "--out", tmp_path / "again")
    assert result.exit_code == 0 and "reproduced" in result.output
    rerun = load_results(tmp_path / "again")
    assert rerun["execution"]["deterministic"] and rerun["rerun_of"]["run"] == "000-mlp-digits-s0"

    tampered = json.loads((tmp_path / "det" / "results.json").read_text())
    tampered["runs"][0]["metrics"]["test_accuracy"] += 0.01
    atomic_write_json(tmp_path / "det" / "results.json", tampered)
    result = bench("rerun", tmp_path / "det", "000-mlp-digits-s0", "--out", tmp_path / "third")
    assert result.exit_code == 1 and "NOT reproduced" in result.output
    assert "test_accuracy" in result.output

    unknown = bench("rerun", tmp_path / "det", "000-mlp-digit-s0")
    assert unknown.exit_code == 2 and "Did you mean '000-mlp-digits-s0'" in unknown.output


def test_run_suite_takes_the_suite_s_threads_unless_given(registry, tmp_path):
    data = {"models": [MLP16], **DIGITS8, "train": {"epochs": 1}, "threads": 1}
    suite = parse_suite(data, registry, source="test")
    outcome = run_suite(suite, registry, out_dir=tmp_path, quiet=True, command=[])
    assert outcome.store.data["execution"]["threads"] == torch.get_num_threads() == 1


# --- bad input gets a clear error ----------------------------------------------------------------

BAD_SUITES = sorted((DATA / "bad_suites").glob("*.toml"))


def expectations(path: Path) -> dict[str, str]:
    """The ``# key:`` and ``# message:`` comments at the top of a malformed suite file."""
    lines = path.read_text(errors="replace").splitlines()  # one file is not UTF-8 on purpose
    return dict(line[2:].split(": ", 1) for line in lines if line.startswith("# "))


@pytest.mark.parametrize("path", BAD_SUITES, ids=[p.stem for p in BAD_SUITES])
def test_malformed_suite_files_name_file_and_key_with_exit_2(path):
    expected = expectations(path)
    result = bench("run", "--suite", path)
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and expected["message"] in result.output
    if "key" in expected:
        assert f"key '{expected['key']}'" in result.output
    assert "Traceback" not in result.output


SEVERAL_MISTAKES = """\
models = ["mlp", "lenet6"]
seeds = [0, 0]
[model_options.lenet6]  # of the misspelt model: no second error about it
hidden = 3
[train]
epochs = 0
lr = 0
"""


def test_every_mistake_of_a_suite_file_is_reported_at_once(tmp_path):
    """One error, exit 2, a line per mistake naming the file and the key, and nothing else
    (no line about what depends on a mistake)."""
    path = tmp_path / "mistakes.toml"
    path.write_text(SEVERAL_MISTAKES)
    result = bench("run", "--suite", path)
    assert result.exit_code == 2, result.output
    lines = result.output.removeprefix("error: ").strip().splitlines()
    keys = [
        re.match(rf"suite file {re.escape(str(path))}: key '([^']+)': ", line) for line in lines
    ]
    assert all(keys), result.output
    assert [key[1] for key in keys] == ["models[1].name", "seeds", "train.epochs", "train.lr"]
    assert "Did you mean 'lenet5'" in lines[0] and "epochs=0: must be >= 1" in lines[2]


def test_resolve_options_reports_every_bad_option_of_a_table():
    declared = {"hidden": Option(8, "width"), "dropout": Option(0.0, "p", "float", below=1.0)}
    with pytest.raises(OptionError) as caught:
        resolve_options("model 'm'", declared, {"dropout": 2, "hiden": 3, "hidden": 0.5})
    assert [key for key, _ in caught.value.problems] == ["hiden", "dropout", "hidden"]
    assert caught.value.key == "hiden" and "Did you mean 'hidden'" in str(caught.value)
    assert "dropout=2: must be < 1" in str(caught.value)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "epochs=0: must be >= 1"),
        (["--batch-size", "0"], "batch_size=0: must be >= 1"),
        (["--lr", "0"], "lr=0.0: must be >="),
        (["--lr", "nan"], "expected a finite number"),
        (["--weight-decay", "-0.5"], "weight_decay=-0.5: must be >= 0"),
        (["--momentum", "1"], "momentum=1.0: must be < 1"),
        (["--model-opt", "dropout=1"], "dropout='1': must be < 1"),
        (["--model-opt", "dropout=-0.1"], "must be >= 0"),
        (["--model-opt", "hiden=3"], "Did you mean 'hidden'"),
        (["--dataset-opt", "sise=8"], "Did you mean 'size'"),
        (["--suite", "cnn-pruning", "--set", "targets=100"], "must be < 100"),
        (["--suite", "cnn-pruning", "--set", "targets=-1"], "must be >= 0"),
        (["--suite", "cnn-pruning", "--set", "targetz=50"], "Did you mean 'targets'"),
        (["--suite", "cnn-pruning", "--set", "methods=magnitud"], "Did you mean"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_out_of_range_and_unknown_options_are_refused(args, message):
    base = [] if "--suite" in args else ["--model", "mlp", "--dataset", "digits"]
    result = bench("run", *base, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only errors")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["time", "--model", "mlp", "--amp", "fp16"], "fp16 autocast is not supported on CPU"),
        (["time", "--model", "mlp", "--device", "cuda"], "CUDA is not available"),
        (["profile", "--model", "mlp", "--device", "cuda:1"], "CUDA is not available"),
        (["run", "--model", "mlp", "--dataset", "digits", "--device", "cuda"], "CUDA is not"),
    ],
)
def test_devices_and_amp_that_do_not_exist_here_are_errors(args, message):
    result = bench(*args)
    assert result.exit_code == 2 and message in result.output


def test_a_gpu_that_does_not_exist_is_refused_naming_those_that_do(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    here = r"'cuda:1' does not exist; the CUDA devices here: cuda:0$"
    with pytest.raises(BenchError, match=here):
        resolve_device("cuda:1")


# --- security ------------------------------------------------------------------------------------


def test_every_torch_load_is_weights_only():
    calls = []
    for path in [*REPO.glob("harness/**/*.py"), *REPO.glob("plugins/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, keywords.get("weights_only")))
    assert calls and all(value == "True" for _, value in calls), calls


def test_names_from_suites_cannot_escape_the_output_directory(registry, tmp_path):
    config = {"model_label": "../../../x", "dataset_label": "/etc", "seed": 0}
    ctx = RunContext(registry=registry, device=torch.device("cpu"), out_dir=tmp_path)
    assert _checkpoint_path(config, ctx).parent == tmp_path / "checkpoints"
    assert default_out_dir("../../../x", tmp_path).parent == tmp_path
    run = Run(0, "throughput", {"name": "mlp-path=../../../etc/passwd"})
    assert (tmp_path / "traces" / run.name).parent == tmp_path / "traces"


def test_two_commands_in_the_same_second_get_their_own_output_folders(tmp_path, monkeypatch):
    """The default folder is named by the second a command starts; a second command started
    within it gets a suffix rather than a refusal."""
    import harness.execution.runner as runner

    class Frozen:
        @staticmethod
        def now():
            return datetime(2026, 12, 7, 3, 0, 0)

    monkeypatch.setattr(runner, "datetime", Frozen)
    first = default_out_dir("quickstart", tmp_path)
    (first / "results.json").parent.mkdir(parents=True)
    (first / "results.json").write_text("{}")
    second = default_out_dir("quickstart", tmp_path)
    assert first.name == "20261207-030000-quickstart" and second.name == f"{first.name}-2"
