"""Executors: the same numbers whichever runs them, needs and artifacts without a shared disk,
timings alone, lost workers retried only as asked, Ctrl-C and --resume across executors, and a
real Dask cluster of two workers on 127.0.0.1 with one of them killed mid-suite."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import pytest
import torch
from bench_processes import (
    FAULTS,
    TINY,
    bench,
    bench_process,
    faulty_suite,
    finish,
    numbers,
    poll,
)

from harness.errors import BenchError
from harness.execution import executor as executor_module
from harness.execution.executor import (
    ExecutorRequest,
    default_threads,
    sequential_threads,
    share_of_cores,
)
from harness.execution.forkserver import _uses_worker_processes
from harness.execution.jobs import Job, Outcome, relocate
from harness.execution.outcome import make_record
from harness.execution.rerun import comparable, differences
from harness.execution.runner import run_suite
from harness.execution.scheduler import _inside, run_all
from harness.planning.suite_files import Run, parse_suite
from harness.reporting.run_figures import plot_runs
from harness.results.store import ResultsStore, load_results

# One model's quick pruning study: 17 runs that need one another, one of them timed alone.
PRUNING_QUICK = [
    "run", "--suite", "cnn-pruning", "--quick", "--models", "lenet5", "--threads", "1", "-q",
]  # fmt: skip


# --- the same numbers from every executor ------------------------------------------------------


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("sequential") / "out"
    code, output = finish(bench_process(*PRUNING_QUICK, "--out", out))
    assert code == 0, output
    return load_results(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "executor"),
    [
        (["--jobs", "2"], "processes"),
        (["--isolate", "--jobs", "2"], "processes"),
        (["--executor", "dask", "--jobs", "2"], "dask"),
    ],
    ids=["jobs-2", "isolate-jobs-2", "dask"],
)
def test_cnn_pruning_quick_gives_the_same_numbers_on_every_executor(
    sequential, tmp_path, flags, executor
):
    code, output = finish(bench_process(*PRUNING_QUICK, *flags, "--out", tmp_path))
    assert code == 0, output
    parallel = load_results(tmp_path)
    assert parallel["execution"]["executor"]["name"] == executor
    assert parallel["execution"]["threads"] == sequential["execution"]["threads"] == 1
    # in plan order, whatever order they finished in
    assert [r["id"] for r in parallel["runs"]] == [r["id"] for r in sequential["runs"]]
    assert numbers(parallel) == numbers(sequential)
    for mine, theirs in zip(parallel["runs"], sequential["runs"], strict=True):
        assert differences(comparable(mine["metrics"]), comparable(theirs["metrics"])) == []
        assert mine["placement"]["host"] == socket.gethostname()
        assert mine["placement"]["threads"] == 1
    workers = {r["placement"]["worker"] for r in parallel["runs"]}
    if executor == "processes":  # two workers that each run one after another, or one per run
        isolate = "--isolate" in flags
        assert parallel["execution"]["executor"] == {
            "name": "processes",
            "workers": 2,
            "isolate": isolate,
        }
        assert len(workers) == (len(parallel["runs"]) if isolate else 2)
    assert len(workers) >= 2  # it did run in parallel
    latency = [r for r in parallel["runs"] if r["config"]["kind"] == "latency"]
    assert len(latency) == 1 and all(r["placement"]["alone"] for r in latency)
    assert not all(r["placement"]["alone"] for r in parallel["runs"])
    # the dense checkpoints came back to this directory, named as in the records
    for record in parallel["runs"]:
        for name in record["artifacts"]:
            assert (tmp_path / name).is_file()
    assert (tmp_path / "checkpoints" / "lenet5-digits-s0.pt").is_file()


# --- scheduling rules, on an executor the test controls ----------------------------------------


class Recording:
    """Two slots; jobs finish when the test says, so what is in flight can be checked."""

    slots, threads = 2, 1

    def __init__(self, fail=()):
        self.flying: dict[int, Future] = {}
        self.started: list[tuple[int, set[int]]] = []  # (run, runs in flight beside it)
        self.fail = set(fail)

    def submit(self, job, progress=None) -> Future:
        future: Future = Future()
        self.started.append((job.index, set(self.flying)))
        self.flying[job.index] = future
        status = "failed" if job.index in self.fail else "ok"
        record = make_record(job.run, status=status, started_at="now", wall_time_s=0.0)
        record = {**record, "artifacts": [f"out/{job.index}.txt"] if status == "ok" else []}
        future.set_result(Outcome(record, {f"out/{job.index}.txt": str(job.inputs).encode()}))
        del self.flying[job.index]
        return future

    def describe(self):
        return {"name": "recording"}

    def close(self):
        pass


def store_for(tmp_path: Path) -> ResultsStore:
    header = {"name": "s", "procedure": "p"}
    return ResultsStore.create(
        tmp_path / "results.json", command=[], suite=header, environment={}, execution={}
    )


def make_job_of(tmp_path):
    def make(run, inputs):
        return Job(run.index, run.procedure, run.config, "cpu", 1, str(tmp_path), inputs=inputs)

    return make


def test_needs_get_their_artifacts_and_failures_skip_dependants(tmp_path):
    runs = [
        Run(0, "p", {"name": "a"}),
        Run(1, "p", {"name": "b"}, needs=(0,)),
        Run(2, "p", {"name": "c"}),
        Run(3, "p", {"name": "d"}, needs=(2,)),
    ]
    store = store_for(tmp_path)
    run_all(runs, store, Recording(fail={2}), make_job_of(tmp_path))
    statuses = [(r["id"], r["status"]) for r in store.runs]
    assert statuses == [("000-a", "ok"), ("001-b", "ok"), ("002-c", "failed"), ("003-d", "skipped")]
    assert "needs run 002-c, which is failed" in store.runs[3]["error"]
    # b received a's file, and wrote its own into the output directory
    assert (tmp_path / "out" / "1.txt").read_text() == str({"out/0.txt": b"{}"})
    assert store.runs[1]["needs"] == [0]


def test_skips_follow_a_chain_of_needs_and_a_run_that_cannot_start_is_recorded(tmp_path):
    runs = [
        Run(0, "p", {"name": "a"}),
        Run(1, "p", {"name": "b"}, needs=(0,)),
        Run(2, "p", {"name": "c"}, needs=(1,)),
        Run(3, "p", {"name": "d"}),
        Run(4, "p", {"name": "e"}),
    ]
    make = make_job_of(tmp_path)

    def refusing(run, inputs):
        if run.index == 3:
            raise ValueError("no job for d")
        return make(run, inputs)

    store = store_for(tmp_path)
    run_all(runs, store, Recording(fail={0}), refusing)
    statuses = {r["id"]: r["status"] for r in store.runs}
    assert statuses == {
        "000-a": "failed", "001-b": "skipped", "002-c": "skipped", "003-d": "failed", "004-e": "ok",
    }  # fmt: skip
    assert "needs run 001-b, which is skipped" in store.runs[2]["error"]
    assert store.runs[3]["error"] == "executor error: ValueError: no job for d"


def test_exclusive_runs_start_alone_and_after_the_others(tmp_path):
    runs = [
        Run(0, "p", {"name": "timed"}, exclusive=True),
        Run(1, "p", {"name": "a"}),
        Run(2, "p", {"name": "b"}),
        Run(3, "p", {"name": "timed-too"}, exclusive=True),
    ]

    class Slow(Recording):
        """Finishes nothing until two are in flight, so that overlap is possible."""

        def submit(self, job, progress=None):
            future: Future = Future()
            self.started.append((job.index, set(self.flying)))
            self.flying[job.index] = future
            return future

    executor = Slow()
    store = store_for(tmp_path)

    def finish_all():
        for index, future in list(executor.flying.items()):
            del executor.flying[index]
            run = runs[index]
            record = make_record(run, status="ok", started_at="now", wall_time_s=0.0)
            future.set_result(Outcome({**record, "artifacts": []}))

    stop = threading.Event()

    def finisher():
        while not stop.is_set():
            if executor.flying and (len(executor.flying) == 2 or len(executor.started) >= 3):
                finish_all()
            time.sleep(0.01)

    thread = threading.Thread(target=finisher)
    thread.start()
    try:
        run_all(runs, store, executor, make_job_of(tmp_path))
    finally:
        stop.set()
        thread.join()
    order = [index for index, _ in executor.started]
    assert order[:2] == [1, 2] and set(order[2:]) == {0, 3}  # shared runs first
    beside = dict(executor.started)
    assert beside[0] == set() and beside[3] == set()  # each timed run started alone
    assert [r["id"] for r in store.runs] == ["000-timed", "001-a", "002-b", "003-timed-too"]
    alone = {r["id"]: r["placement"]["alone"] for r in store.runs}
    assert alone == {"000-timed": True, "001-a": False, "002-b": False, "003-timed-too": True}


def test_the_progress_bar_names_the_runs_in_flight(tmp_path, capsys):
    runs = [Run(i, "p", {"name": name}) for i, name in enumerate(["first", "second", "third"])]

    class Pairs(Recording):
        """Finishes runs a second after a pair (or the last one) is in flight."""

        def submit(self, job, progress=None):
            future: Future = Future()
            self.flying[job.index] = future
            if len(self.flying) == 2 or job.index == 2:
                held, self.flying = dict(self.flying), {}
                threading.Timer(1.0, finish, [held]).start()
            return future

    def finish(held):
        for index, future in held.items():
            record = make_record(runs[index], status="ok", started_at="n", wall_time_s=0)
            future.set_result(Outcome({**record, "artifacts": []}))

    run_all(runs, store_for(tmp_path), Pairs(), make_job_of(tmp_path), show=True)
    assert "2 in flight: first, second" in capsys.readouterr().err


def test_threads_per_run_share_the_cores_unless_told():
    request = ExecutorRequest(registry=None)
    assert share_of_cores(request, 2, cores=8) == 4
    assert share_of_cores(ExecutorRequest(registry=None, suite_threads=1), 2, cores=8) == 1
    assert share_of_cores(ExecutorRequest(registry=None, suite_threads=6), 2, cores=8) == 4
    assert share_of_cores(ExecutorRequest(registry=None, threads=6), 2, cores=8) == 6
    assert share_of_cores(request, 4, cores=2) == 1


def test_a_run_alone_leaves_a_core_free_unless_told(monkeypatch, registry, tmp_path):
    """Default threads: torch's (a thread per core) less one core, never below one; --threads
    and the suite's threads key win; the results record what ran."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    assert [default_threads(cores) for cores in (1, 2, 4, 8, 16)] == [1, 1, 3, 7, 8]
    monkeypatch.setattr(executor_module, "usable_cores", lambda: 2)
    assert sequential_threads(ExecutorRequest(registry=None)) == 1
    assert sequential_threads(ExecutorRequest(registry=None, suite_threads=2)) == 2
    assert sequential_threads(ExecutorRequest(registry=None, threads=3, suite_threads=2)) == 3
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # keep this process's count
    suite = parse_suite(
        {"models": ["mlp"], "datasets": [{"name": "digits", "options": {"size": 8}}],
         "train": {"epochs": 1}}, registry, source="t",
    )  # fmt: skip
    outcome = run_suite(suite, registry, out_dir=tmp_path / "o", device="cpu", quiet=True)
    assert outcome.store.data["execution"]["threads"] == 1


def test_artifacts_cannot_leave_the_output_directory(tmp_path):
    assert _inside(tmp_path, "checkpoints/a.pt") == tmp_path / "checkpoints" / "a.pt"
    for name in ("../escape.pt", "/etc/passwd", "a/../../b"):
        with pytest.raises(BenchError, match="outside its output directory"):
            _inside(tmp_path, name)


def test_paths_into_a_scratch_directory_read_as_the_output_directory():
    metrics = {"checkpoint": "/tmp/s1/checkpoints/a.pt", "other": "/tmp/s10/x", "n": 3}
    moved = relocate(metrics, "/tmp/s1", "results/run")
    assert moved == {"checkpoint": "results/run/checkpoints/a.pt", "other": "/tmp/s10/x", "n": 3}


# --- faults --------------------------------------------------------------------------------------


def test_a_lost_worker_is_retried_as_asked_and_a_failing_run_never(tmp_path):
    marker = tmp_path / "died"
    suite = faulty_suite(tmp_path, "dies-once", marker)
    result = bench(*suite, "--jobs", "2", "--out", tmp_path / "none")
    assert result.exit_code == 1, result.output
    dies, mlp = load_results(tmp_path / "none")["runs"]
    assert dies["status"] == "failed" and "killed by SIGKILL" in dies["error"]
    assert dies["placement"]["attempts"] == 1 and mlp["status"] == "ok"

    marker.unlink()
    result = bench(*suite, "--jobs", "2", "--retries", "1", "--out", tmp_path / "retried")
    assert result.exit_code == 0, result.output
    dies, mlp = load_results(tmp_path / "retried")["runs"]
    assert dies["status"] == "ok" and dies["placement"]["attempts"] == 2
    assert mlp["placement"]["attempts"] == 1

    broken = FAULTS.with_name("broken_plugins.py")
    result = bench(
        "--plugin", broken, "run", "--model", "raises-forward", *TINY,
        "--jobs", "2", "--retries", "3", "--out", tmp_path / "raises",
    )  # fmt: skip
    (raises,) = load_results(tmp_path / "raises")["runs"]
    assert raises["status"] == "failed" and raises["placement"]["attempts"] == 1


@pytest.mark.slow
def test_ctrl_c_keeps_what_finished_and_resume_completes_with_another_executor(tmp_path):
    marker, out = tmp_path / "waiting", tmp_path / "out"
    args = faulty_suite(tmp_path, "waits-once", marker)
    process = bench_process(*args, "--jobs", "2", "-q", "--out", out)
    results = out / "results.json"

    def others_recorded() -> bool:
        text = results.read_text() if results.is_file() else "{}"
        return marker.exists() and len(json.loads(text or "{}").get("runs", [])) >= 1

    try:
        poll(others_recorded, "the mlp recorded beside the waiting run", process)
        process.send_signal(signal.SIGINT)
        code, output = finish(process, timeout=60)
    finally:
        process.kill()
    assert code == 130, output
    interrupted = load_results(out)
    assert interrupted["status"] == "interrupted"
    assert "1 of 2 runs recorded (1 ok)" in interrupted["note"]
    assert [r["config"]["model"] for r in interrupted["runs"]] == ["mlp"]
    pid = int(marker.read_text())
    poll(lambda: not _alive(pid), "the waiting worker gone", deadline=30)

    result = bench(*args, "--executor", "dask", "--jobs", "2", "--resume", out)
    assert result.exit_code == 0, result.output
    resumed = load_results(out)
    assert resumed["status"] == "complete" and len(resumed["runs"]) == 2
    kept = {r["id"]: r for r in interrupted["runs"]}
    assert all(resumed_run == kept[i] for i, resumed_run in _by_id(resumed).items() if i in kept)
    clean = bench(*args, "--out", tmp_path / "clean")  # the marker is there: no waiting now
    assert clean.exit_code == 0, clean.output
    assert numbers(resumed) == numbers(load_results(tmp_path / "clean"))


def _by_id(results: dict) -> dict:
    return {r["id"]: r for r in results["runs"]}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.is_file() and "zombie" in status.read_text())


# --- errors ------------------------------------------------------------------------------------


def test_executor_errors_are_clear(tmp_path, monkeypatch):
    unknown = bench("run", "--model", "mlp", *TINY, "--executor", "ray")
    assert unknown.exit_code == 2 and "unknown executor 'ray'" in unknown.output
    assert "dask" in unknown.output and "processes" in unknown.output
    local = bench("run", "--model", "mlp", *TINY, "--executor", "local", "--jobs", "2")
    assert local.exit_code == 2 and "runs 1 run at a time" in local.output
    jobs = bench("run", "--model", "mlp", *TINY, "--jobs", "0")
    assert jobs.exit_code == 2 and "or 'auto'" in jobs.output
    timeout = bench("run", "--model", "mlp", *TINY, "--executor", "dask", "--run-timeout", "9")
    assert timeout.exit_code == 2 and "cannot stop a run on a Dask worker" in timeout.output
    address = bench("run", "--model", "mlp", *TINY, "--executor", "processes://x:1")
    assert address.exit_code == 2 and "takes no address" in address.output

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were not installed
    missing = bench("run", "--model", "mlp", *TINY, "--executor", "dask")
    assert missing.exit_code == 2 and "pip install 'bench-harness[dask]'" in missing.output


def test_a_scheduler_that_does_not_answer_is_an_error_naming_it(tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "out"
    address = f"dask://127.0.0.1:{port}"
    result = bench("run", "--model", "mlp", *TINY, "--executor", address, "--out", out)
    assert result.exit_code == 2, result.output
    assert f"no Dask scheduler answered at 127.0.0.1:{port} within 5 s" in result.output
    assert not out.exists()  # refused before anything was written


def test_executors_are_listed_with_the_plugin_that_gives_each():
    listed = bench("--plugin", FAULTS, "list", "executors", "--json")
    assert listed.exit_code == 0, listed.output
    rows = {row["name"]: row for row in json.loads(listed.output)}
    assert set(rows) == {"local", "processes", "dask[://ADDRESS]", "one-thread"}
    assert rows["one-thread"]["source"] == f"plugin 'worker_faults' ({FAULTS})"
    assert "bench_plugins.executors" in rows["processes"]["source"]


def test_a_plan_whose_run_needs_a_later_one_is_refused():
    from harness.execution.plan import check_plan

    runs = [Run(0, "p", {"name": "a"}, needs=(1,)), Run(1, "p", {"name": "b"})]
    with pytest.raises(BenchError, match=r"run 000-a needs runs \[1\], which are not planned"):
        check_plan(runs)
    check_plan(list(reversed([Run(1, "p", {"name": "b"}, needs=(0,)), Run(0, "p", {"name": "a"})])))


# --- the work around the runs ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--suite", "s", "--jobs", "2"], True),
        (["run", "-j2"], True),
        (["run", "--jobs=auto"], True),
        (["--plugin", "p", "run", "--isolate"], True),
        (["run", "--executor", "processes"], True),
        (["run", "--executor=processes", "-j", "3"], True),
        (["run", "--executor", "dask", "--jobs", "2"], False),
        (["run", "--suite", "s"], False),
        (["time", "--jobs", "2"], False),
        (["list", "executors"], False),
    ],
)
def test_the_worker_server_starts_early_only_for_worker_processes(args, expected):
    assert _uses_worker_processes(args) is expected


def _with_figures(name: str, seed: int) -> dict:
    history = [{"epoch": e, "train_loss": 2 / e + seed, "val_loss": 2.5 / e} for e in (1, 2, 3)]
    matrix = [[5 + seed, 1], [2, 7]]
    metrics = {"confusion_matrix": matrix, "class_names": ["a", "b"], "history": history}
    return {"id": f"{name}-s{seed}", "status": "ok", "config": {"name": f"{name}-s{seed}"},
            "metrics": metrics}  # fmt: skip


def test_figures_drawn_by_two_workers_are_those_one_process_draws(tmp_path):
    results = {"runs": [_with_figures(f"cell{i}", seed) for i in range(3) for seed in (0, 1)]}
    alone = plot_runs(results, tmp_path / "alone")
    shared = plot_runs(results, tmp_path / "shared", workers=2)
    assert [p.name for p in alone] == [
        f"{kind}-cell{i}.png" for i in range(3) for kind in ("confusion", "loss")
    ]
    assert [p.name for p in shared] == [p.name for p in alone]
    for mine, theirs in zip(shared, alone, strict=True):
        assert mine.parent == tmp_path / "shared" and mine.read_bytes() == theirs.read_bytes()
