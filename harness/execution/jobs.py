"""A run as a self-contained job: what any executor sends to wherever a run executes, and what
comes back.

A :class:`Job` holds the run's configuration and everything needed to repeat exactly what the
runner would do in-process: device, threads, plugins to load, ``--deterministic``, the time
limit, data access, and the *input files* the run needs (the artifacts of the runs it
``needs``: a dense checkpoint, a pretrained model), as bytes. :func:`perform` executes a job in a
scratch directory that stands in for the suite's output directory: the inputs are written into it
first, and every other file the run writes there is an *artifact*, returned to the parent as bytes
and written into the real output directory. Nothing assumes a shared filesystem, so the same job
runs in this process, in a worker process, or on a Dask worker on another machine. A job may
also be a stacked group (``Job.group``): several runs trained together as one stacked model,
whose records come back together.

Paths in a run's metrics that point into its scratch directory are rewritten to the parent's
output directory, so that a record reads the same whichever executor made it.
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.data import DataContext
from harness.errors import BenchError
from harness.execution.determinism import determinism
from harness.execution.outcome import execute_run, make_record
from harness.execution.stack_groups import execute_group
from harness.measuring.affinity import current_cpus, pinned
from harness.planning.protocol import RunContext
from harness.planning.suite_files import Run
from harness.registry.loading import load_plugins
from harness.registry.specs import Registry
from harness.results.store import now


@dataclass(frozen=True)
class Job:
    """One run, ready to execute anywhere bench and its plugins are installed."""

    index: int
    procedure: str
    config: dict[str, Any]
    device: str
    threads: int | None  # torch threads for the run; None: the worker's share of its cores
    out_dir: str  # the parent's output directory, for paths in the run's metrics
    plugins: tuple[str, ...] = ()
    deterministic: bool = False
    timeout: float | None = None
    data_root: str | None = None
    download: bool = False
    inputs: dict[str, bytes] = field(default_factory=dict)  # relative path -> content
    alone: bool = False  # nothing else of the suite runs beside it (Run.exclusive)
    cpus: tuple[int, ...] = ()  # pinned to these CPUs while it runs (empty: not pinned)
    # A stacked group: every member's (index, config), this job's own first; empty: one run.
    group: tuple[tuple[int, dict[str, Any]], ...] = ()

    @property
    def run(self) -> Run:
        return Run(self.index, self.procedure, self.config)

    @property
    def runs(self) -> list[Run]:
        """The runs it performs: the group's members, or its one run."""
        members = self.group or ((self.index, self.config),)
        return [Run(index, self.procedure, config) for index, config in members]

    @property
    def time_limit(self) -> float | None:
        """``--run-timeout`` for all of its runs: a group has each member's time."""
        return self.timeout * len(self.runs) if self.timeout is not None else None


@dataclass(frozen=True)
class Outcome:
    """A finished job: the run's record, and the artifacts it wrote (relative path -> bytes)."""

    record: dict[str, Any]
    files: dict[str, bytes] = field(default_factory=dict)


class WorkerLost(Exception):
    """The process or machine executing a run went away before it recorded a result.

    Not the run's own failure: the scheduler may retry the run (``--retries``), and records it as
    ``failed`` with this reason when it may not.
    """

    def __init__(self, reason: str, log: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.log = log


def failed_record(
    run: Run, error: str, attempts: int, traceback: str | None = None
) -> dict[str, Any]:
    """The ``failed`` record of a run that did not record a result itself: its worker was lost
    (on its last allowed attempt), or the executor could not run it at all."""
    tries = f" (attempt {attempts})" if attempts > 1 else ""
    record = make_record(
        run,
        status="failed",
        error=f"{error}{tries}",
        traceback=traceback,
        started_at=now(),
        wall_time_s=0.0,
    )
    return {**record, "placement": {"attempts": attempts}}


_REGISTRIES: dict[tuple[str, ...], Registry] = {}


def registry_for(plugins: tuple[str, ...]) -> Registry:
    """The installed plugins plus ``plugins``, loaded once per process (a Dask worker keeps
    them between runs)."""
    if plugins not in _REGISTRIES:
        _REGISTRIES[plugins] = load_plugins(list(plugins)).registry
    return _REGISTRIES[plugins]


def perform(
    job: Job,
    scratch: Path,
    *,
    worker: str,
    registry: Registry | None = None,
    cache: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> dict[str, Any]:
    """Execute ``job`` with ``scratch`` (an empty directory) as its output directory.

    Returns the run's record, with ``artifacts`` (the relative paths of the files it wrote,
    which stay in ``scratch`` for the caller to collect) and ``placement`` (host, worker,
    threads); for a stacked group, :func:`group_record` of its members' records, trained
    together (:mod:`harness.execution.stack_groups`). ``registry``, ``cache`` and ``on_epoch``
    let the in-process executor share its loaded plugins, loaded datasets and progress bar.
    """
    for name, content in job.inputs.items():
        path = scratch / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    if job.threads:
        torch.set_num_threads(job.threads)
    registry = registry or registry_for(job.plugins)
    device = torch.device(job.device)
    ctx = RunContext(
        registry=registry,
        device=device,
        data=DataContext(
            data_root=Path(job.data_root) if job.data_root else None, download=job.download
        ),
        out_dir=scratch,
        cache={} if cache is None else cache,
        on_epoch=on_epoch,
    )
    procedure = registry.procedures.get(job.procedure)

    def written() -> list[str]:
        return sorted(
            name
            for name in (
                p.relative_to(scratch).as_posix() for p in scratch.rglob("*") if p.is_file()
            )
            if name not in job.inputs
        )

    with pinned(job.cpus), determinism(job.deterministic, device):
        if job.group:
            records = execute_group(procedure, job.runs, ctx, timeout=job.timeout, written=written)
        else:
            records = [
                {
                    **execute_run(procedure, job.run, ctx, timeout=job.timeout),
                    "artifacts": written(),
                }
            ]
        cpus = current_cpus()
    placement = {
        "host": socket.gethostname(),
        "worker": worker,
        "threads": torch.get_num_threads(),
        "cpus": cpus,
    }
    records = [
        {
            **record,
            "metrics": relocate(record["metrics"], str(scratch), job.out_dir),
            "placement": placement,
        }
        for record in records
    ]
    if not job.group:
        return records[0]
    return group_record(records)


def group_record(members: list[dict[str, Any]]) -> dict[str, Any]:
    """What a stacked group's job gives back: its members' records under ``group``, with the
    status, artifacts and placement every executor reads from a record (``ok`` only if all
    are)."""
    statuses = {record["status"] for record in members}
    return {
        "status": "ok" if statuses == {"ok"} else next(s for s in statuses if s != "ok"),
        "artifacts": [name for record in members for name in record["artifacts"]],
        "placement": members[0]["placement"],
        "metrics": {},
        "group": members,
    }


def collect(scratch: Path, names: list[str]) -> dict[str, bytes]:
    """The artifacts ``names`` (relative to ``scratch``) as bytes."""
    return {name: (scratch / name).read_bytes() for name in names}


def perform_in_scratch(
    job: Job, *, worker: str, scratch_root: str | None = None, **shared: Any
) -> Outcome:
    """:func:`perform` in a temporary directory (under ``scratch_root``), removed afterwards,
    with the artifacts collected: what an executor that runs jobs in its own process does."""
    with tempfile.TemporaryDirectory(prefix="bench-run-", dir=scratch_root) as tmp:
        record = perform(job, Path(tmp), worker=worker, **shared)
        return Outcome(record, collect(Path(tmp), record["artifacts"]))


SHARED_DIRS = ("checkpoints",)  # where runs written before artifacts were listed left them


def needed_files(out_dir: Path, records: list[dict[str, Any] | None]) -> dict[str, bytes]:
    """The files that the runs of ``records`` wrote, read from ``out_dir``. A record that lists
    no ``artifacts`` (written before bench listed them), or a needed run whose record is not in
    the file (a rerun's), stands for everything in ``checkpoints/``."""
    names = []
    for record in records:
        if record is not None and "artifacts" in record:
            names.extend(record["artifacts"])
        else:
            names.extend(
                path.relative_to(out_dir).as_posix()
                for folder in SHARED_DIRS
                for path in sorted((out_dir / folder).rglob("*"))
                if path.is_file()
            )
    missing = [name for name in names if not (out_dir / name).is_file()]
    if missing:
        raise BenchError(f"{out_dir / missing[0]} is missing: a run that needs it cannot start")
    return collect(out_dir, list(dict.fromkeys(names)))


def relocate(value: Any, old: str, new: str) -> Any:
    """``value`` with every string that starts with the directory ``old`` moved under ``new``."""
    if isinstance(value, dict):
        return {key: relocate(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [relocate(item, old, new) for item in value]
    if isinstance(value, str) and (value == old or value.startswith(old + os.sep)):
        return str(Path(new) / Path(value).relative_to(old))
    return value
