"""Signals as the runner sees them: SIGTERM handled like Ctrl-C, a run's time limit raised as an
exception inside the run (a results file is written with signals held back:
:func:`harness.results.store.signals_held`).

Python runs signal handlers in the main thread between bytecodes, so an exception raised by a
handler lands in whatever Python code is running: a training step is stopped at the next
bytecode after the signal, while a single long native call (one huge convolution,
``torch.compile``) finishes first. Only a separate process (``--jobs``, ``--isolate``) can be
stopped outright; :mod:`bench_plugins.executors.processes` does that.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(KeyboardInterrupt):
    """SIGTERM: handled exactly like Ctrl-C (SIGINT), so both leave the same valid results."""


class RunTimeout(BaseException):
    """A run went past its time limit.

    A ``BaseException``, like ``KeyboardInterrupt``, so that a plugin's ``except Exception``
    cannot swallow it.
    """


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def time_limit_supported() -> bool:
    """Whether :func:`time_limit` can interrupt a run here (POSIX ``SIGALRM``, main thread)."""
    return hasattr(signal, "setitimer") and _main_thread()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``)."""
    if not _main_thread():
        yield
        return

    def handler(signum, frame):
        raise Terminated("SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


IMPORT_RETRY = 0.05  # seconds: how soon a time limit is checked again during an import


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` is inside an ``import`` (Python's import machinery is on the stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`RunTimeout` in the block once ``seconds`` have passed (``None``: no limit).

    The exception is postponed while a module is being imported: torch imports parts of itself
    lazily during a first run, and an import cut short leaves a module half-initialised in
    ``sys.modules`` for every run after it. Needs :func:`time_limit_supported`; the runner
    checks that before any run starts.
    """
    if seconds is None:
        yield
        return

    def handler(signum, frame):
        if _importing(frame):  # a half-imported module would break every later run
            signal.setitimer(signal.ITIMER_REAL, IMPORT_RETRY)
            return
        raise RunTimeout(f"run exceeded --run-timeout {seconds:g} s and was stopped")

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
