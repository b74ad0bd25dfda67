"""The ``processes`` executor (``--jobs N``, ``--isolate``): runs in worker processes, N at a
time, so that a crash fails only the run that crashed.

Workers are forked by :mod:`harness.execution.forkserver` from a server that has imported torch and
bench's own modules once, so a worker costs milliseconds instead of seconds of imports. With
``--jobs N`` each of the N workers performs one run after another, as the sequential run does in
its one process: it keeps its loaded plugins and datasets, and its first steps' page faults and
cold caches are paid once, not once per run (about 0.15 s a run on ``cnn-pruning``, whose runs
take half a second). With ``--isolate`` every run gets a fresh worker, so that not even a
plugin's global state can pass from one run to the next.

A worker performs each job exactly as the in-process executor does
(:func:`harness.execution.jobs.perform`, including the ``--run-timeout`` alarm) and sends the run's
record back over its pipe; the files the run wrote wait in the job's scratch directory. A worker
that dies instead (segmentation fault, the kernel's out-of-memory killer, ``os._exit``) leaves no
record: that is :class:`harness.execution.jobs.WorkerLost`, with the exit code or signal and what
the worker printed during that run (its stdout and stderr, with a Python stack from
:mod:`faulthandler` after a crash). The next run gets a new worker, as it does after a run that did
not end ``ok``. A worker whose run its own alarm cannot stop (stuck in native code) is killed
:data:`KILL_GRACE` seconds after the limit and recorded as ``timeout``.

Each worker leaves the terminal's process group, so Ctrl-C reaches only the parent, which then
kills the workers (:meth:`Processes.close`): an interrupt never shows up as a failed run.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from harness.execution.executor import (
    ExecutorRequest,
    Progress,
    sequential_threads,
    share_of_cores,
    usable_cores,
)
from harness.execution.forkserver import worker_context
from harness.execution.jobs import (
    Job,
    Outcome,
    WorkerLost,
    collect,
    failed_record,
    perform,
    registry_for,
)
from harness.execution.outcome import make_record
from harness.results.store import now

KILL_GRACE = 5.0  # seconds past the time limit before a worker is killed
LOG_TAIL = 60  # lines of a crashed worker's output kept in the record
LINE_LIMIT = 300  # characters per line (faulthandler lists every extension module on one)
_STARTED, _LOG, _OUT = "started", "worker.log", "out"
Record = dict[str, Any]


class Worker:
    """One worker process, the pipe its jobs go through, and the log it prints into."""

    def __init__(self, context: multiprocessing.context.BaseContext):
        self._home = tempfile.TemporaryDirectory(prefix="bench-worker-")
        self.log = Path(self._home.name) / _LOG
        ours, theirs = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(theirs, str(self.log)), name="bench worker"
        )
        self.process.start()
        theirs.close()
        self.conn: Connection = ours

    def perform(self, job: Job, work: Path) -> tuple[Record | None, float | None, str | None]:
        """Have the worker perform ``job`` in ``work``. Returns the run's record (``None`` if
        the worker died first), the run's seconds if it overran ``job.timeout`` by
        :data:`KILL_GRACE` and was killed, and what the worker printed meanwhile."""
        offset = self.log.stat().st_size if self.log.is_file() else 0
        try:
            self.conn.send((job, str(work)))
            record, overran = self._await(job.time_limit)
        except (OSError, EOFError):  # it died (or close() killed it) before it answered
            self.process.join()
            record, overran = None, None
        return record, overran, _log_tail(self.log, offset)

    def _await(self, timeout: float | None) -> tuple[Record | None, float | None]:
        """The record the worker sends, or ``None`` if it died; the time limit counts from the
        run's start (the worker says when), not from the job's arrival."""
        began = deadline = None
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([self.conn, self.process.sentinel], left)
            if self.conn in ready:
                message = self.conn.recv()  # EOFError if it died instead of answering
                if message != _STARTED:
                    return message, None
                began = time.monotonic()
                deadline = None if timeout is None else began + timeout + KILL_GRACE
            elif ready:
                self.process.join()
                return None, None
            else:
                self.kill()
                return None, time.monotonic() - began

    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        """Kill the worker and whatever it started (data loader processes): it leads its own
        process group (:func:`_serve` calls ``setsid``)."""
        if self.process.exitcode is None:  # a reaped worker's PID may belong to another by now
            try:
                if hasattr(os, "killpg") and os.getpgid(self.process.pid) == self.process.pid:
                    os.killpg(self.process.pid, signal.SIGKILL)
                else:
                    self.process.kill()
            except ProcessLookupError:
                pass
        self.process.join()

    def close(self) -> None:
        """Kill it, and remove its log: it holds nothing else (records come back at once)."""
        self.kill()
        self.conn.close()
        self._home.cleanup()


class Processes:
    """Up to ``slots`` worker processes at once; each performs one run after another, or only
    one run with ``--isolate``, and a worker that died is replaced for the next run."""

    def __init__(self, request: ExecutorRequest):
        self.slots = request.jobs or usable_cores()
        self.isolate = request.isolate
        self.threads = share_of_cores(request, self.slots)
        self.threads_alone = sequential_threads(request)
        self._context = worker_context()
        self._pool = ThreadPoolExecutor(self.slots, thread_name_prefix="bench-worker")
        self._idle: list[Worker] = []
        self._live: set[Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    def submit(self, job: Job, progress: Progress | None = None) -> Future[Outcome]:
        return self._pool.submit(self._execute, job)

    def describe(self) -> dict[str, Any]:
        return {"name": "processes", "workers": self.slots, "isolate": self.isolate}

    def close(self) -> None:
        """Kill every worker. Those performing a run are retired by the thread waiting on
        them, once it sees its worker dead; then the idle ones."""
        with self._lock:
            self._closed = True
            for worker in self._live:
                worker.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for worker in list(self._live):
                self._retire(worker)

    def _execute(self, job: Job) -> Outcome:
        """One job on a worker; its outcome, or :class:`WorkerLost` if the worker died."""
        started_at, start = now(), time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
            work = Path(tmp)
            worker = self._take()
            record, overran, log = None, None, None
            try:
                record, overran, log = worker.perform(job, work)
            finally:
                self._give_back(worker, record)
            if record is not None:
                return Outcome(record, collect(work / _OUT, record["artifacts"]))
            if overran is None:
                raise WorkerLost(f"worker process {_exit_reason(worker.process.exitcode)}", log)
            record = make_record(
                job.run,
                status="timeout",
                error=f"run exceeded --run-timeout {job.time_limit:g} s and did not stop; "
                f"worker killed after {overran:.1f} s",
                traceback=log,
                started_at=started_at,
                wall_time_s=time.perf_counter() - start,
            )
            return Outcome(record)

    def _take(self) -> Worker:
        """An idle worker that is still alive, or a new one (started outside the lock: the first
        waits seconds for the worker server, and Ctrl-C must not wait for it)."""
        with self._lock:
            if self._closed:
                raise WorkerLost("cancelled before it started")
            while self._idle:
                worker = self._idle.pop()
                if worker.alive():
                    return worker
                self._retire(worker)
        try:
            worker = Worker(self._context)
        except (OSError, EOFError) as exc:  # the server is gone, or no process can be forked
            raise WorkerLost(f"no worker process could be started: {exc}") from exc
        with self._lock:
            self._live.add(worker)
            if self._closed:
                self._retire(worker)
                raise WorkerLost("cancelled before it started")
        return worker

    def _give_back(self, worker: Worker, record: Record | None) -> None:
        """Keep the worker for the next run, unless ``--isolate`` or its run did not end ``ok``
        (a run stopped mid-step may leave its process in any state)."""
        ended_ok = record is not None and record["status"] == "ok"
        with self._lock:
            if ended_ok and worker.alive() and not self.isolate and not self._closed:
                self._idle.append(worker)
            else:
                self._retire(worker)

    def _retire(self, worker: Worker) -> None:
        worker.close()
        self._live.discard(worker)


def create(request: ExecutorRequest) -> Processes:
    return Processes(request)


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"crashed: killed by {name} (exit code {code})"
    return f"exited with code {code} before recording its result"


def _log_tail(log: Path, offset: int) -> str | None:
    """The last lines the worker printed after ``offset`` (where this run began)."""
    if not log.is_file():
        return None
    with log.open("rb") as file:
        file.seek(offset)
        text = file.read().decode("utf-8", errors="replace")
    lines = [line[:LINE_LIMIT] for line in text.splitlines()]
    return "\n".join(lines[-LOG_TAIL:]) or None


class RecentDatasets(OrderedDict):
    """The datasets a worker loaded for its latest runs, shared by its next ones (the cache of
    :func:`harness.training.steps.open_splits`): at most ``size`` entries, the least recently used
    dropped first, so that a worker of a long suite over many datasets and seeds does not keep
    them all (on a GPU that N workers share, least of all)."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def __getitem__(self, key: str) -> Any:
        self.move_to_end(key)
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.size:
            self.popitem(last=False)


_DATASETS = RecentDatasets(4)


def _serve(conn: Connection, log_path: str) -> None:
    """The worker process: perform each job that arrives, until the pipe closes."""
    if hasattr(os, "setsid"):
        os.setsid()  # out of the terminal's process group: Ctrl-C is the parent's to handle
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    faulthandler.enable()  # a crash prints the Python stack into the log
    while True:
        try:
            job, work_dir = conn.recv()
        except EOFError:
            return
        record = _work(job, Path(work_dir), started=lambda: conn.send(_STARTED))
        if torch.cuda.is_initialized():  # what the run held stays free for the other workers
            torch.cuda.empty_cache()
        sys.stdout.flush()  # what the run printed stays in its own part of the log
        sys.stderr.flush()
        conn.send(record)


def _work(job: Job, work: Path, started: Callable[[], None]) -> Record:
    """Perform one job, its artifacts in ``work``; its record. ``started`` once its plugins are
    loaded: the clock of ``--run-timeout`` starts there."""
    (work / _OUT).mkdir()
    try:
        registry = registry_for(job.plugins)
        started()
        return perform(
            job, work / _OUT, worker=f"process {os.getpid()}", registry=registry, cache=_DATASETS
        )
    except Exception as exc:  # the worker could not run it (a plugin failed to load): recorded,
        error = f"worker error: {type(exc).__name__}: {exc}"  # not retried as a lost worker
        return failed_record(job.run, error, 1, traceback.format_exc(limit=-3))
