"""``--isolate``: each run in a fresh process, so that a crash cannot take the suite down.

Workers are started by :mod:`multiprocessing`'s ``forkserver``: a clean server process imports
torch and bench's own modules once (never a plugin's, and never running anything), and each run
gets a new process forked from it, so isolation costs milliseconds per run instead of seconds of
imports. Where there is no forkserver (Windows), each worker is spawned from scratch.

A worker loads the same plugins, executes the run exactly as the runner does in-process
(:func:`harness.execution.execute_run`, including the ``--run-timeout`` alarm) and writes the
run's record as JSON. A worker that dies instead (segmentation fault, the kernel's
out-of-memory killer, ``os._exit``) leaves no record: the run is recorded as ``failed`` with the
exit code or signal and the end of the worker's output (its stdout and stderr, with a Python
stack from :mod:`faulthandler` after a crash). A worker whose run its own alarm cannot stop (stuck
in native code) is killed :data:`KILL_GRACE` seconds after the limit and recorded as ``timeout``.

Each worker leaves the terminal's process group, so Ctrl-C reaches only the parent, which then
kills the worker: an interrupt never shows up as a failed run.
"""

from __future__ import annotations

import faulthandler
import json
import multiprocessing
import os
import signal
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch

from harness.data import DataContext
from harness.determinism import determinism
from harness.execution import execute_run, make_record
from harness.plugins import ENTRY_POINT_GROUP, load_plugins
from harness.procedure import RunContext
from harness.results import atomic_write_json, now
from harness.suites import Run

KILL_GRACE = 5.0  # seconds past the time limit before a worker is killed
LOG_TAIL = 60  # lines of a crashed worker's output kept in the record
LINE_LIMIT = 300  # characters per line (faulthandler lists every extension module on one)
_STARTED, _RECORD, _LOG = "started", "record.json", "worker.log"


def job_for(
    run: Run,
    ctx: RunContext,
    *,
    plugins: tuple[str, ...],
    deterministic: bool,
    timeout: float | None,
) -> dict[str, Any]:
    """Everything a worker needs to repeat what the runner would do in-process."""
    return {
        "plugins": list(plugins),
        "run": {"index": run.index, "procedure": run.procedure, "config": run.config},
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "deterministic": deterministic,
        "timeout": timeout,
        "out_dir": str(ctx.out_dir),
        "data_root": str(ctx.data.data_root) if ctx.data.data_root else None,
        "download": ctx.data.download,
    }


def run_in_worker(run: Run, job: dict[str, Any]) -> dict[str, Any]:
    """Execute ``job`` in a fresh process and return the run's record, whatever happened."""
    started_at, start = now(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
        work = Path(tmp)
        process = _context().Process(target=_work, args=(job, str(work)), name=f"bench {run.id}")
        process.start()
        try:
            overran = _wait(process, work / _STARTED, job["timeout"])
        finally:
            if process.is_alive():  # interrupted: the worker goes with the parent
                process.kill()
                process.join()
        if (work / _RECORD).is_file():
            return json.loads((work / _RECORD).read_text(encoding="utf-8"))
        if overran is not None:
            status = "timeout"
            error = (
                f"run exceeded --run-timeout {job['timeout']:g} s and did not stop; "
                f"worker killed after {overran:.1f} s"
            )
        else:
            status, error = "failed", f"worker process {_exit_reason(process.exitcode)}"
        log = work / _LOG
        text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
        lines = [line[:LINE_LIMIT] for line in text.splitlines()]
        return make_record(
            run,
            status=status,
            error=error,
            traceback="\n".join(lines[-LOG_TAIL:]) or None,
            started_at=started_at,
            wall_time_s=time.perf_counter() - start,
        )


def _context() -> multiprocessing.context.BaseContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    own = [
        ep.module
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.name == "bench"
    ]
    # torch._dynamo: imported lazily by the first optimizer, and it alone takes seconds
    context.set_forkserver_preload([__name__, "torch._dynamo", *own])
    return context


def _wait(process: multiprocessing.Process, started: Path, timeout: float | None) -> float | None:
    """Wait for the worker; with a time limit, kill it :data:`KILL_GRACE` seconds past the limit
    (counted from when its run started, not from its start-up). Returns the run's seconds if
    killed."""
    if timeout is None:
        process.join()
        return None
    began = None
    while process.is_alive():
        if began is None and started.exists():
            began = time.monotonic()
        if began is not None and time.monotonic() - began > timeout + KILL_GRACE:
            process.kill()
            process.join()
            return time.monotonic() - began
        process.join(0.05)
    return None


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"crashed: killed by {name} (exit code {code})"
    return f"exited with code {code} before recording its result"


def _work(job: dict[str, Any], work_dir: str) -> None:
    """The worker process: execute the run and write its record into ``work_dir``."""
    work = Path(work_dir)
    if hasattr(os, "setsid"):
        os.setsid()  # out of the terminal's process group: Ctrl-C is the parent's to handle
    log = os.open(work / _LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    faulthandler.enable()  # a crash prints the Python stack into the log
    registry = load_plugins(job["plugins"]).registry
    torch.set_num_threads(job["threads"])
    device = torch.device(job["device"])
    ctx = RunContext(
        registry=registry,
        device=device,
        data=DataContext(
            data_root=Path(job["data_root"]) if job["data_root"] else None,
            download=job["download"],
        ),
        out_dir=Path(job["out_dir"]),
    )
    spec = job["run"]
    run = Run(spec["index"], spec["procedure"], spec["config"])
    procedure = registry.procedures.get(run.procedure)
    (work / _STARTED).touch()
    with determinism(job["deterministic"], device):
        record = execute_run(procedure, run, ctx, timeout=job["timeout"])
    atomic_write_json(work / _RECORD, record)
