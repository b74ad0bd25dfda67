"""Helpers of the executor tests: bench in a subprocess as a user runs it, and waiting on it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.execution.rerun import comparable

DATA = Path(__file__).parent / "data"
FAULTS = DATA / "worker_faults.py"
TINY = ["--dataset", "digits", "--dataset-opt", "size=8", "--epochs", "1", "--threads", "1"]
BENCH = [sys.executable, "-m", "harness"]  # what the installed bench script runs


def bench(*args: object):
    return CliRunner().invoke(cli, [str(a) for a in args])


def bench_process(*args: object, cwd: Path | None = None) -> subprocess.Popen:
    """``bench ARGS`` in a subprocess that takes Ctrl-C as a terminal would, even when the tests
    themselves were started in the background (where the shell makes SIGINT ignored)."""
    return subprocess.Popen(
        [*BENCH, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out + err


def numbers(results: dict) -> dict[str, dict[str, float]]:
    """Every seed-determined number of every run (accuracies, losses, counts), by run id."""
    return {r["id"]: comparable(r["metrics"]) for r in results["runs"]}


def faulty_suite(tmp_path: Path, model: str, marker: Path, seeds=(0,)) -> list[str]:
    """``bench run`` arguments for ``model`` (of tests/data/worker_faults.py) beside an mlp."""
    path = tmp_path / f"{model}.toml"
    path.write_text(
        f'models = [{{name = "{model}", options = {{marker = "{marker}"}}}}, "mlp"]\n'
        'datasets = [{name = "digits", options = {size = 8}}]\n'
        f"seeds = {list(seeds)}\nthreads = 1\n[train]\nepochs = 1\n"
    )
    return ["--plugin", str(FAULTS), "run", "--suite", str(path)]


def poll(condition, what: str, process: subprocess.Popen | None = None, deadline=300.0) -> None:
    """Until ``condition()`` holds (while ``process``, if given, still runs); the deadline only
    keeps a broken test from hanging."""
    end = time.monotonic() + deadline
    while not condition():
        if (process is not None and process.poll() is not None) or time.monotonic() > end:
            if process is not None:
                process.kill()
            pytest.fail(f"never saw {what}" + (f": {process.communicate()}" if process else ""))
        time.sleep(0.05)


def pid_in(marker: Path, process: subprocess.Popen) -> int:
    """The process id a worker_faults model wrote into ``marker`` (once it is all there)."""
    poll(lambda: marker.is_file() and marker.read_text().strip().isdigit(), "the pid", process)
    return int(marker.read_text())
