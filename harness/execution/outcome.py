"""One run in this process: execute it, and turn whatever goes wrong into a recorded status.

Statuses: ``ok``; ``diverged`` (a NaN or infinite loss); ``oom`` (CUDA or CPU out of memory);
``timeout`` (past ``--run-timeout``); ``failed`` (any other exception, including a plugin calling
``sys.exit``, or a model that does not fit the data). A worker that dies is not a run's own
failure: :mod:`harness.execution.scheduler` records it (:class:`harness.execution.jobs.WorkerLost`).
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import torch

from harness.errors import DivergedError
from harness.execution.interrupts import RunTimeout, time_limit
from harness.planning.protocol import Procedure, RunContext
from harness.planning.suite_files import Run
from harness.results.store import as_json, now

_CPU_OOM = ("can't allocate memory", "not enough memory", "out of memory")


def execute_run(
    procedure: Procedure, run: Run, ctx: RunContext, *, timeout: float | None = None
) -> dict[str, Any]:
    """Run one configuration; any failure becomes a recorded status instead of an exception.

    The metrics come back as the results file will hold them, whichever executor ran the run; a
    procedure returning what JSON cannot hold fails only its run, not the writing of the file.

    ``KeyboardInterrupt`` (Ctrl-C, and SIGTERM via :mod:`harness.execution.interrupts`) is not a
    failure of the run: it propagates, and the run is left unrecorded so that ``--resume`` repeats
    it.
    """
    started, start = now(), time.perf_counter()
    status, error, metrics, trace = "ok", None, {}, None
    try:
        with time_limit(timeout):
            returned = procedure.execute(run, ctx)
        metrics = as_json(returned, f"the metrics of procedure '{procedure.name}'")
    except (Exception, SystemExit, RunTimeout) as exc:  # recorded, and the suite goes on
        status, error, trace = failure(exc)
    return make_record(
        run,
        status=status,
        error=error,
        traceback=trace,
        metrics=metrics,
        started_at=started,
        wall_time_s=time.perf_counter() - start,
    )


def failure(exc: BaseException) -> tuple[str, str, str | None]:
    """The status, error message and (for unexpected errors) short traceback that a run failing
    with ``exc`` is recorded with; call it from the ``except`` block that caught ``exc``."""
    if isinstance(exc, RunTimeout):
        return "timeout", str(exc), None
    if isinstance(exc, DivergedError):
        return "diverged", str(exc), None
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return "oom", _first_line(exc), None
    cpu_oom = isinstance(exc, RuntimeError) and any(s in str(exc) for s in _CPU_OOM)
    error = f"{type(exc).__name__}: {_first_line(exc) if cpu_oom else exc}"
    return ("oom" if cpu_oom else "failed"), error, traceback.format_exc(limit=-3)


def make_record(
    run: Run,
    *,
    status: str,
    started_at: str,
    wall_time_s: float,
    error: str | None = None,
    traceback: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A run's entry in the results file (see :mod:`harness.results.store`)."""
    return {
        "id": run.id,
        "index": run.index,
        "hash": run.hash,
        "procedure": run.procedure,
        "config": run.config,
        "needs": list(run.needs),
        "status": status,
        "error": error,
        "traceback": traceback,
        "metrics": metrics or {},
        "started_at": started_at,
        "wall_time_s": round(wall_time_s, 3),
        "artifacts": [],  # the files it wrote, as harness.execution.jobs.perform finds them
    }


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
