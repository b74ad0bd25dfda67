"""The server that forks the ``processes`` executor's workers (and those drawing a suite's
figures), and starting it early.

Workers come from :mod:`multiprocessing`'s ``forkserver``: a clean server process imports torch
and bench's own modules once (never a plugin's, and never running anything), and each worker is
a new process forked from it, so it costs milliseconds instead of seconds of imports. Where
there is no forkserver (Windows), each worker is spawned from scratch.

Those imports take the server seconds, as long as the command line's own. So ``bench`` starts the
server first when its arguments ask for worker processes (:func:`start_early`), and the two
import side by side instead of one after the other. This module imports nothing heavy itself.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from collections.abc import Sequence

from harness import DISTRIBUTION, installed_entry_points

# What each worker would otherwise import afresh (each run, with --isolate): torch._dynamo
# (imported lazily by the first optimizer, and it alone takes seconds), sklearn's splits (2 s)
# and datasets (the digits loader, 25 ms), and matplotlib.pyplot (1.5 s; the suite's figures are
# drawn by workers from here too). bench imports these sklearn and matplotlib modules only when
# used, so that commands that need none of them start sooner.
PRELOAD = [
    "bench_plugins.executors.processes",
    "torch._dynamo",
    "harness.reporting.run_figures",
    "sklearn.model_selection",
    "sklearn.datasets",
    "matplotlib.pyplot",
]


def worker_context() -> multiprocessing.context.BaseContext:
    """The context the workers start from: the forkserver, preloading bench's own modules."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    own = [ep.module for ep, dist in installed_entry_points() if dist == DISTRIBUTION]
    context.set_forkserver_preload([*PRELOAD, *own])  # no effect once the server runs
    return context


def start_early(args: Sequence[str]) -> bool:
    """Start the server now if ``bench ARGS`` will run worker processes; True if it did.

    A guess from the raw arguments, before click has parsed them: a wrong guess costs only an
    idle server or a late start, never a wrong result."""
    if not _uses_worker_processes(list(args)):
        return False
    if worker_context().get_start_method() != "forkserver":
        return False
    multiprocessing.forkserver.ensure_running()  # returns at once; the server imports alone
    return True


def _uses_worker_processes(args: list[str]) -> bool:
    if "run" not in args:
        return False
    executor = _value(args, "--executor")
    if executor not in (None, "processes"):
        return False
    parallel = any(
        arg in ("--isolate", "--jobs", "-j") or arg.startswith(("--jobs=", "-j")) for arg in args
    )
    return executor == "processes" or parallel


def _value(args: list[str], option: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == option and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return None
