"""The ``local`` executor: one run at a time, in this process (bench's default).

Runs share the loaded plugins and the datasets already loaded, show their epochs on the progress
bar, and are stopped by ``--run-timeout`` through ``SIGALRM`` (so the job runs in the main
thread, inside :meth:`InProcess.submit`).
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from harness.errors import BenchError
from harness.execution.executor import ExecutorRequest, Progress, sequential_threads
from harness.execution.interrupts import time_limit_supported
from harness.execution.jobs import Job, Outcome, perform_in_scratch


class InProcess:
    slots = 1

    def __init__(self, request: ExecutorRequest):
        if request.jobs is not None and request.jobs > 1:
            raise BenchError(
                f"the local executor runs 1 run at a time; for --jobs {request.jobs} use "
                "--executor processes or --executor dask"
            )
        if request.run_timeout is not None and not time_limit_supported():
            raise BenchError(
                "--run-timeout needs SIGALRM (POSIX, main thread) here; use --executor processes"
            )
        self.registry = request.registry
        self.threads = self.threads_alone = sequential_threads(request)
        self.cache: dict[str, Any] = {}

    def submit(self, job: Job, progress: Progress | None = None) -> Future[Outcome]:
        future: Future[Outcome] = Future()
        outcome = perform_in_scratch(
            job, worker="in-process", registry=self.registry, cache=self.cache, on_epoch=progress
        )
        future.set_result(outcome)
        return future

    def describe(self) -> dict[str, Any]:
        return {"name": "local", "workers": 1}

    def close(self) -> None:
        self.cache.clear()


def create(request: ExecutorRequest) -> InProcess:
    return InProcess(request)
