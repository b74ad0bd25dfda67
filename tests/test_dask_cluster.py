"""A real Dask cluster started by the test: ``dask scheduler`` and two ``dask worker`` processes
on 127.0.0.1, each in a working directory of its own. A suite with needs runs on it with the
same numbers as in-process, its files come back to bench's directory, and a worker killed
mid-suite fails only its own run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from bench_processes import TINY, bench_process, faulty_suite, finish, numbers, pid_in, poll

from harness.results.store import load_results

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path):
    """The scheduler's address once both workers have joined. The scheduler lets no task
    outlive a worker (allowed-failures 0), so a death is bench's to see. Each process leads a
    session of its own, so that the end of the test kills it with the worker it started at
    once (a graceful close of the cluster took 8 s)."""
    dask = str(Path(sys.executable).with_name("dask"))
    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "0"}
    info = tmp_path / "scheduler.json"
    quiet = {
        "env": env,
        "stdout": subprocess.DEVNULL,
        "stderr": subprocess.DEVNULL,
        "start_new_session": True,
    }
    scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    processes = [subprocess.Popen([*scheduler, "--scheduler-file", info], cwd=tmp_path, **quiet)]
    try:
        poll(lambda: _address(info) is not None, "the scheduler's address", processes[0], 60)
        address = _address(info)
        for name in ("a", "b"):
            home = tmp_path / f"worker-{name}"
            home.mkdir()
            worker = [dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                      "--no-dashboard", "--local-directory", str(home), "--name", name]  # fmt: skip
            processes.append(subprocess.Popen(worker, cwd=home, **quiet))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address.removeprefix("tcp://")
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _address(info: Path) -> str | None:
    try:
        return json.loads(info.read_text())["address"]
    except (OSError, ValueError, KeyError):  # not written yet, or half written
        return None


PRUNING = [
    "run", "--suite", "cnn-pruning", "--model", "mlp", "--model-opt", "hidden=16", *TINY,
    "--set", "targets=50", "--set", "methods=layer-magnitude", "--set", "finetune_epochs=1",
    "--seed", "0", "--seed", "1", "-q",
]  # fmt: skip


def test_a_two_worker_cluster_runs_needs_and_survives_a_killed_worker(cluster, tmp_path):
    out = tmp_path / "pruning"
    code, output = finish(bench_process(*PRUNING, "--executor", f"dask://{cluster}", "--out", out))
    assert code == 0, output
    data = load_results(out)
    assert data["status"] == "complete" and data["execution"]["executor"]["workers"] == 2
    assert [r["status"] for r in data["runs"]] == ["ok"] * 5  # 2 seeds x dense, 50%; latency
    assert len({r["placement"]["worker"] for r in data["runs"]}) == 2  # both workers ran some
    assert [r["needs"] for r in data["runs"]] == [[], [0], [], [2], [0, 2]]
    for record in data["runs"]:
        for name in record["artifacts"]:  # sent back: the workers' disks are their own
            assert (out / name).is_file()
    assert (out / "checkpoints" / "mlp-digits-s1.pt").is_file()
    assert not list((tmp_path / "worker-a").rglob("*.pt"))  # scratch directories are gone
    inline = tmp_path / "inline"
    code, output = finish(bench_process(*PRUNING, "--out", inline))
    assert code == 0, output
    assert numbers(data) == numbers(load_results(inline))

    # stacked groups are jobs like any other: four seeds as two groups, one on each worker
    seeds = ["--seed", "0", "--seed", "1", "--seed", "2", "--seed", "3", "-q"]
    stacked, alone = tmp_path / "stacked", tmp_path / "alone"
    code, output = finish(bench_process(
        "run", "--model", "mlp", *TINY, *seeds, "--executor", f"dask://{cluster}", "--out", stacked
    ))  # fmt: skip
    assert code == 0, output
    code, output = finish(bench_process("run", "--model", "mlp", *TINY, *seeds, "--stack", "off",
                                        "--out", alone))  # fmt: skip
    assert code == 0, output
    runs = load_results(stacked)["runs"]
    assert sorted(r["stacking"]["size"] for r in runs) == [2, 2, 2, 2]
    assert len({r["placement"]["worker"] for r in runs}) == 2
    assert numbers(load_results(stacked)) == numbers(load_results(alone))

    marker, out = tmp_path / "waiting", tmp_path / "killed"
    suite = faulty_suite(tmp_path, "waits-once", marker)
    process = bench_process(*suite, "--executor", f"dask://{cluster}", "-q", "--out", out)
    os.kill(pid_in(marker, process), signal.SIGKILL)  # the Dask worker process running it
    code, output = finish(process)
    assert code == 1, output
    waits, mlp = load_results(out)["runs"]
    assert waits["status"] == "failed" and "Dask worker died" in waits["error"]
    assert mlp["status"] == "ok"
