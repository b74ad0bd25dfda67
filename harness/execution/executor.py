"""Executors: where a suite's runs execute. A plugin adds one with the ``register_executors`` hook.

An executor receives :class:`harness.execution.jobs.Job`\\ s and returns futures of
:class:`harness.execution.jobs.Outcome`\\ s; :mod:`harness.execution.scheduler` decides what to
submit when (needs, runs that must execute alone, retries, interrupts) and is the only writer of the
results file. The built-in executors are ``local`` (one run at a time in this process),
``processes`` (``--jobs N`` worker processes, each performing one run after another, or a fresh one
per run with ``--isolate``) and ``dask`` (a local Dask cluster, or an existing one at
``dask://HOST:PORT``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from harness.errors import BenchError
from harness.registry.specs import Registry

if TYPE_CHECKING:  # jobs import torch; an executor's spec is registered without it
    from harness.execution.jobs import Job, Outcome

Progress = Callable[[dict[str, float]], None]


@dataclass(frozen=True)
class ExecutorRequest:
    """What the user asked for (``--executor NAME[://ADDRESS]``, ``--jobs``, ``--threads``,
    ``--retries``, ``--run-timeout``, ``--isolate``) and what an in-process executor may share."""

    registry: Registry
    address: str | None = None
    jobs: int | None = None
    threads: int | None = None  # per run: --threads
    suite_threads: int | None = None  # per run: the suite's threads key
    run_timeout: float | None = None
    isolate: bool = False  # --isolate: a fresh process for every run, where the executor has any


class Executor(Protocol):
    """``slots``: runs in flight at most. ``threads``: torch threads per run beside others, and
    ``threads_alone`` per run that executes alone (a timing: it gets what a sequential run
    would); ``None``: each worker takes its share of its own cores. ``submit`` may run the job
    before it returns (the in-process executor does); ``progress`` receives the run's epochs
    where the executor can report them. ``close`` cancels whatever is in flight and frees
    workers; it must be safe to call twice."""

    slots: int
    threads: int | None
    threads_alone: int | None

    def submit(self, job: Job, progress: Progress | None = None) -> Future[Outcome]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class ExecutorSpec:
    """An executor plugins can provide; ``--executor NAME`` (or ``NAME://ADDRESS`` when
    ``address`` says it takes one) selects it, and ``create`` builds it for one suite."""

    name: str
    description: str
    create: Callable[[ExecutorRequest], Executor]
    address: bool = False


def parse_executor(text: str) -> tuple[str, str | None]:
    """``dask://host:8786`` -> ``("dask", "host:8786")``; ``local`` -> ``("local", None)``."""
    name, sep, address = text.partition("://")
    if sep and not address:
        raise BenchError(f"--executor {text}: give an address after '://', e.g. dask://HOST:8786")
    return name, (address if sep else None)


def executor_spec(registry: Registry, text: str) -> tuple[ExecutorSpec, str | None]:
    """The spec and address ``text`` names; unknown names list the known ones."""
    name, address = parse_executor(text)
    spec = registry.executors.get(name)
    if address and not spec.address:
        raise BenchError(f"executor '{name}' takes no address ({text})")
    return spec, address


def create_executor(registry: Registry, text: str, request: ExecutorRequest) -> Executor:
    """The executor ``text`` names, built for ``request``."""
    spec, address = executor_spec(registry, text)
    return spec.create(ExecutorRequest(**{**request.__dict__, "address": address}))


def share_of_cores(request: ExecutorRequest, workers: int, cores: int | None = None) -> int:
    """Threads per run: ``--threads`` as given; else the usable cores divided among ``workers``,
    or the suite's ``threads`` if that is fewer. Workers never oversubscribe the machine unless
    ``--threads`` asks for it."""
    if request.threads:
        return request.threads
    share = max(1, (cores or usable_cores()) // workers)
    return min(request.suite_threads, share) if request.suite_threads else share


def sequential_threads(request: ExecutorRequest) -> int:
    """Threads of a run that has the machine to itself: ``--threads``, else the suite's
    ``threads``, else :func:`default_threads`."""
    return request.threads or request.suite_threads or default_threads()


def default_threads(cores: int | None = None) -> int:
    """torch's default (a thread per core) less one core, left free for the rest of the machine.

    A run of a small model gains little from a second thread and loses much when that thread
    waits for a core the shell, a browser or another job holds: on a busy 2-core laptop one
    30-epoch CNN run took 469 s with torch's 2 threads, and three such runs 87 s with one.
    """
    import torch

    return max(1, min(torch.get_num_threads(), (cores or usable_cores()) - 1))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
