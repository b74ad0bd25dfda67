"""Which CPUs a measurement runs on: ``--cpus`` of ``bench ab`` and ``bench time``.

On a virtual machine two vCPUs can differ by a third in speed for seconds at a time, and a
process left to the scheduler settles on either, so two measurements taken one after the other
can differ by which core each got. Pinning both to the same CPUs removes that difference (not
the drift of those CPUs over time, which only interleaving, ``bench ab``, cancels). Where the
platform has no affinity calls (macOS, Windows), nothing is pinned.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager

from harness.errors import BenchError


def pinned_cpus(spec: str, threads: int) -> tuple[int, ...]:
    """The CPUs to confine a measurement to: ``auto`` = the last ``threads`` CPUs this process
    may use (CPU 0 often serves interrupts), ``any`` = no pinning, or a list like ``2,3``."""
    if spec == "any" or not hasattr(os, "sched_getaffinity"):
        return ()
    usable = sorted(os.sched_getaffinity(0))
    if threads > len(usable):
        raise BenchError(
            f"--threads {threads} needs {threads} CPUs; this process may use {len(usable)}: "
            "its own threads would wait for each other in every round"
        )
    if spec == "auto":
        return tuple(usable[-threads:])
    try:
        cpus = tuple(int(cpu) for cpu in spec.split(","))
    except ValueError:
        raise BenchError(f"--cpus {spec}: expected auto, any or CPU numbers like 0,1") from None
    missing = sorted(set(cpus) - set(usable))
    if missing:
        raise BenchError(f"--cpus {spec}: CPU {missing[0]} is not usable here; usable: {usable}")
    return cpus


def current_cpus() -> list[int] | None:
    """The CPUs this process may run on now; None where the platform cannot say."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


@contextmanager
def pinned(cpus: tuple[int, ...]) -> Iterator[None]:
    """Within the block, every thread of this process runs only on ``cpus``; afterwards on the
    CPUs the process had before. Every thread, not only the calling one (which is all that
    ``sched_setaffinity(0)`` moves on Linux): torch's pool threads, started by an earlier run,
    would otherwise stay where they were. Threads started inside the block inherit the mask.
    Nothing happens for ``()`` or where the platform has no affinity calls."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    _set_every_thread(set(cpus))
    try:
        yield
    finally:
        _set_every_thread(before)


def _set_every_thread(cpus: set[int]) -> None:
    os.sched_setaffinity(0, cpus)  # this thread first: the one that measures
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        return  # no /proc: the calling thread, and those it starts, are pinned
    for tid in threads:
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            os.sched_setaffinity(tid, cpus)
