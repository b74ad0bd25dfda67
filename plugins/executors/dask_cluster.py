"""The ``dask`` executor: runs on a Dask cluster (``pip install 'bench-harness[dask]'``).

``--executor dask`` starts a local cluster on 127.0.0.1 with ``--jobs`` worker processes (default:
the usable cores) of one thread each, and stops it afterwards; ``--executor dask://HOST:PORT``
submits to an existing scheduler, whose workers must have bench and the same plugins installed.

Each run is one Dask task that performs its :class:`harness.execution.jobs.Job` in a scratch
directory on the worker and returns the record and artifacts to this process, so workers need no
shared
filesystem. A worker process executes one bench run at a time, whatever its ``--nthreads``:
torch's random generators and thread count belong to the process, and two runs sharing them
would not repeat. A worker that dies while running a task is Dask's ``KilledWorker``, which
becomes :class:`harness.execution.jobs.WorkerLost`: the scheduler of
:mod:`harness.execution.scheduler` retries the run ``--retries`` times. A local cluster lets no task
outlive a worker (``allowed-failures`` 0), so the count is bench's alone; an existing scheduler
applies its own ``allowed-failures`` first.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import Future
from dataclasses import replace
from typing import Any
from uuid import uuid4

from harness.errors import BenchError
from harness.execution.executor import (
    ExecutorRequest,
    Progress,
    sequential_threads,
    share_of_cores,
    usable_cores,
)
from harness.execution.jobs import Job, Outcome, WorkerLost, perform_in_scratch

CONNECT_TIMEOUT = 5  # seconds to reach an existing scheduler
WORKER_WAIT = 10  # seconds to wait for an existing scheduler's first worker
_ONE_RUN = threading.Lock()
LOCAL_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,  # a worker's death is bench's to retry
    # the statistical profiler samples the running task's stack every 10 ms: for small models,
    # whose training is mostly Python, it made each run twice as slow (measured here)
    "distributed.worker.profile.enabled": False,
    # a one-thread worker takes one task at a time, so a worker's death loses only its own run
    "distributed.scheduler.worker-saturation": 1.0,
}
# Dask's worker environment without its MALLOC_TRIM_THRESHOLD_: setting that turns off glibc's
# adaptive mmap threshold, so every tensor of a training step was mmapped and unmapped again
# (a run took twice as long here, most of it in the kernel)
WORKER_ENVIRON = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}


class DaskCluster:
    def __init__(self, request: ExecutorRequest):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise BenchError(
                f"the dask executor needs Dask ({exc}); install it with: "
                "pip install 'bench-harness[dask]' (or pip install 'dask[distributed]')"
            ) from None
        if request.run_timeout is not None:
            raise BenchError(
                "--run-timeout cannot stop a run on a Dask worker; use --executor processes"
            )
        if request.address and request.jobs is not None:
            raise BenchError(
                f"--jobs sets the workers of a local Dask cluster; the scheduler at "
                f"{request.address} has its own (start more with dask worker)"
            )
        self.cluster = self.client = None
        self._futures: set[Any] = set()
        self._lock = threading.Lock()
        self.suite_threads = request.suite_threads
        try:
            if request.address:
                self.address = request.address
                self.client = _connect(Client, request.address)
                self.threads = self.threads_alone = request.threads  # None: the worker's share
            else:
                workers = request.jobs or usable_cores()
                environ = {"distributed.nanny.pre-spawn-environ": WORKER_ENVIRON}
                with dask.config.set({**LOCAL_CONFIG, **environ}):
                    self.cluster = LocalCluster(
                        n_workers=workers,
                        threads_per_worker=1,
                        processes=True,
                        host="127.0.0.1",
                        dashboard_address="127.0.0.1:0",  # its HTTP server: any free local port
                        silence_logs=logging.ERROR,
                    )
                self.address = self.cluster.scheduler_address
                self.client = Client(self.cluster)
                self.threads = share_of_cores(request, workers)
                self.threads_alone = sequential_threads(request)
            # one bench run at a time per worker process, so a slot is a worker, not a thread
            hosts = [w["host"] for w in self.client.scheduler_info()["workers"].values()]
        except BaseException:
            self.close()
            raise
        self.slots = len(hosts)
        self._workers_per_host = dict(Counter(hosts))

    def submit(self, job: Job, progress: Progress | None = None) -> Future[Outcome]:
        result: Future[Outcome] = Future()
        task = self.client.submit(
            run_on_worker,
            job,
            self._workers_per_host,
            self.suite_threads,
            key=f"bench-{job.run.id}-{uuid4().hex[:8]}",
            pure=False,
        )
        with self._lock:
            self._futures.add(task)
        task.add_done_callback(lambda done: self._settle(result, done))
        return result

    def _settle(self, result: Future[Outcome], task) -> None:
        """Pass a finished task on to ``result`` (a dead worker becomes :class:`WorkerLost`),
        and let the cluster forget it."""
        with self._lock:
            self._futures.discard(task)
        _settle(result, task)
        task.release()

    def describe(self) -> dict[str, Any]:
        return {
            "name": "dask",
            "scheduler": self.address,
            "local_cluster": self.cluster is not None,
            "workers": self.slots,
        }

    def close(self) -> None:
        """Cancel what is pending (a task already running on an existing cluster runs on: Dask
        cannot stop it), then close the client and any local cluster, each whatever the other
        did."""
        with self._lock:
            pending, self._futures = list(self._futures), set()
        try:
            if pending and self.client is not None:
                self.client.cancel(pending)
        finally:
            try:
                if self.client is not None:
                    self.client.close()
            finally:
                if self.cluster is not None:
                    self.cluster.close()
                self.client = self.cluster = None


def create(request: ExecutorRequest) -> DaskCluster:
    return DaskCluster(request)


def _connect(client_class, address: str):
    """A client of the scheduler at ``address`` with at least one worker, or a clear error
    within seconds."""
    full = address if "://" in address else f"tcp://{address}"
    try:
        client = client_class(full, timeout=CONNECT_TIMEOUT)
    except ValueError as exc:
        raise BenchError(f"--executor dask://{address}: not a scheduler address ({exc})") from None
    except (OSError, TimeoutError) as exc:
        raise BenchError(
            f"no Dask scheduler answered at {address} within {CONNECT_TIMEOUT} s ({exc}); "
            "start one with: dask scheduler --host HOST --port PORT"
        ) from None
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT)
    except TimeoutError:
        client.close()
        raise BenchError(
            f"the Dask scheduler at {address} has no workers after {WORKER_WAIT} s; start one "
            f"with: dask worker {full} --nthreads 1"
        ) from None
    return client


def _settle(result: Future[Outcome], task) -> None:
    """Pass a finished Dask task on to ``result``; a dead worker becomes :class:`WorkerLost`."""
    from distributed import KilledWorker

    try:
        outcome = task.result()
    except KilledWorker as exc:
        result.set_exception(WorkerLost(f"Dask worker died while running it ({exc})"))
    except BaseException as exc:  # the worker could not run the task at all (cancelled, bench
        result.set_exception(exc)  # or a plugin missing there): recorded, never retried
    else:
        result.set_result(outcome)


def run_on_worker(job: Job, workers_per_host: dict[str, int], suite_threads: int | None) -> Outcome:
    """The Dask task: perform ``job`` on this worker, one bench run at a time per process."""
    from distributed import get_worker

    worker = get_worker()
    with _ONE_RUN:
        if job.threads is None:  # this machine's cores, shared among its workers unless alone
            host = worker.address.split("://")[-1].rsplit(":", 1)[0]
            share = max(1, usable_cores() // (1 if job.alone else workers_per_host.get(host, 1)))
            job = replace(job, threads=min(share, suite_threads or share))
        return perform_in_scratch(job, worker=worker.address, scratch_root=worker.local_directory)
