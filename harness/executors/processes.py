"""The ``processes`` executor (``--jobs N``, ``--isolate``): each run in a fresh worker process,
N at a time, so that a crash fails only that run.

Workers are forked by :mod:`harness.worker_server` from a server that has imported torch and
bench's own modules once, so a worker costs milliseconds instead of seconds of imports.

A worker loads the same plugins, performs the job exactly as the in-process executor does
(:func:`harness.jobs.perform`, including the ``--run-timeout`` alarm) and writes the run's record
as JSON beside the artifacts it wrote. A worker that dies instead (segmentation fault, the
kernel's out-of-memory killer, ``os._exit``) leaves no record: that is
:class:`harness.jobs.WorkerLost`, with the exit code or signal and the end of the worker's output
(its stdout and stderr, with a Python stack from :mod:`faulthandler` after a crash). A worker
whose run its own alarm cannot stop (stuck in native code) is killed :data:`KILL_GRACE` seconds
after the limit and recorded as ``timeout``.

Each worker leaves the terminal's process group, so Ctrl-C reaches only the parent, which then
kills the workers (:meth:`Processes.close`): an interrupt never shows up as a failed run.
"""

from __future__ import annotations

import faulthandler
import json
import multiprocessing
import os
import signal
import tempfile
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from harness.execution import make_record
from harness.executors import ExecutorRequest, Progress, sequential_threads, share_of_cores
from harness.jobs import (
    Job,
    Outcome,
    WorkerLost,
    collect,
    failed_record,
    perform,
    registry_for,
    usable_cores,
)
from harness.results import atomic_write_json, now
from harness.worker_server import worker_context

KILL_GRACE = 5.0  # seconds past the time limit before a worker is killed
LOG_TAIL = 60  # lines of a crashed worker's output kept in the record
LINE_LIMIT = 300  # characters per line (faulthandler lists every extension module on one)
_STARTED, _RECORD, _LOG, _OUT = "started", "record.json", "worker.log", "out"


class Processes:
    """Up to ``slots`` worker processes at once, each started for one run and gone after it."""

    def __init__(self, request: ExecutorRequest):
        self.slots = request.jobs or usable_cores()
        self.threads = share_of_cores(request, self.slots)
        self.threads_alone = sequential_threads(request)
        self._context = worker_context()
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="bench-worker")
        self._live: set[multiprocessing.Process] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Job, progress: Progress | None = None) -> Future[Outcome]:
        return self._pool.submit(self._execute, job)

    def describe(self) -> dict[str, Any]:
        return {"name": "processes", "workers": self.slots}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for process in self._live:
                _kill(process)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _execute(self, job: Job) -> Outcome:
        """One job in a fresh process; its outcome, or :class:`WorkerLost` if the process died."""
        started_at, start = now(), time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-worker-") as tmp:
            work = Path(tmp)
            process = self._context.Process(
                target=_work, args=(job, str(work)), name=f"bench {job.run.id}"
            )
            with self._lock:
                if self._closed:
                    raise WorkerLost("cancelled before it started")
                process.start()
                self._live.add(process)
            try:
                overran = _wait(process, work / _STARTED, job.timeout)
            finally:
                if process.is_alive():
                    _kill(process)
                process.join()
                with self._lock:
                    self._live.discard(process)
            if (work / _RECORD).is_file():
                record = json.loads((work / _RECORD).read_text(encoding="utf-8"))
                return Outcome(record, collect(work / _OUT, record["artifacts"]))
            log = _log_tail(work / _LOG)
            if overran is None:
                raise WorkerLost(f"worker process {_exit_reason(process.exitcode)}", log)
            record = make_record(
                job.run,
                status="timeout",
                error=f"run exceeded --run-timeout {job.timeout:g} s and did not stop; "
                f"worker killed after {overran:.1f} s",
                traceback=log,
                started_at=started_at,
                wall_time_s=time.perf_counter() - start,
            )
            return Outcome(record)


def create(request: ExecutorRequest) -> Processes:
    return Processes(request)


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
            _kill(process)
            process.join()
            return time.monotonic() - began
        process.join(0.05)
    return None


def _kill(process: multiprocessing.Process) -> None:
    """Kill the worker and whatever it started (data loader processes): it leads its own
    process group (:func:`_work` calls ``setsid``)."""
    try:
        if hasattr(os, "killpg") and os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
            return
    except ProcessLookupError:
        return
    process.kill()


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"crashed: killed by {name} (exit code {code})"
    return f"exited with code {code} before recording its result"


def _log_tail(log: Path) -> str | None:
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    lines = [line[:LINE_LIMIT] for line in text.splitlines()]
    return "\n".join(lines[-LOG_TAIL:]) or None


def _work(job: Job, work_dir: str) -> None:
    """The worker process: perform the job, its artifacts and record in ``work_dir``."""
    work = Path(work_dir)
    if hasattr(os, "setsid"):
        os.setsid()  # out of the terminal's process group: Ctrl-C is the parent's to handle
    log = os.open(work / _LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    faulthandler.enable()  # a crash prints the Python stack into the log
    (work / _OUT).mkdir()
    try:
        registry = registry_for(job.plugins)  # before the clock of --run-timeout starts
        (work / _STARTED).touch()
        record = perform(job, work / _OUT, worker=f"process {os.getpid()}", registry=registry)
    except Exception as exc:  # the worker could not run it (a plugin failed to load): recorded,
        error = f"worker error: {type(exc).__name__}: {exc}"  # not retried as a lost worker
        record = failed_record(job.run, error, 1, traceback.format_exc(limit=-3))
    atomic_write_json(work / _RECORD, record)
