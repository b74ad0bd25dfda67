"""bench's errors, in one place so that every stage (and every plugin) raises the same types.

A :class:`BenchError` is the user's to fix (a bad name, option, file or suite): the CLI prints its
message without a traceback and exits with code 2. Anything else a run raises is recorded as that
run's failure.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BenchError(Exception):
    """An error caused by user input; the CLI prints it without a traceback (exit code 2)."""


class UnknownNameError(BenchError):
    """A name that is not known: the message suggests the closest known one and lists them all.

    ``owner`` says whose names they are (``unknown option 'hiden' of model 'mlp'``).
    """

    def __init__(self, kind: str, name: str, known: Iterable[str], *, owner: str | None = None):
        known = sorted(known)
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        of = f" of {owner}" if owner else ""
        listing = ", ".join(known) if known else "(none)"
        super().__init__(f"unknown {kind} '{name}'{of}.{hint} Known {kind}s{of}: {listing}")
        self.name = name
        self.suggestion = close[0] if close else None


class OptionError(BenchError):
    """A bad option name or value; ``key`` is the option, so that a suite file's error can name
    the exact key (``train.epochs``) rather than only its table. ``problems`` holds every bad
    option of the table as ``(key, message)``, the first being ``key`` and ``message``."""

    def __init__(self, message: str, key: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.key = key
        self.problems = problems or [(key, message)]

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> OptionError:
        """One error for several bad options, its message theirs joined by ``; ``."""
        return cls("; ".join(message for _, message in problems), problems[0][0], problems)


class DuplicateNameError(BenchError):
    """Two loaded plugins registered the same name for the same kind of thing."""


class SpecError(BenchError):
    """A spec a plugin registers has a field of the wrong type; the plugin is reported as failed."""


class SuiteError(BenchError):
    """A suite file or command-line suite is malformed; the message names the file and key."""


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss, first seen at batch ``step`` of ``epoch``;
    ``history`` holds the epochs completed before it."""

    def __init__(
        self, loss: float, step: int, epoch: int | None = None, history: list | None = None
    ):
        where = f"step {step}" + (f" of epoch {epoch}" if epoch else "")
        super().__init__(f"training loss became {loss} (first seen at {where})")
        self.loss, self.step, self.epoch, self.history = loss, step, epoch, history or []

    def __reduce__(self):  # picklable, e.g. across a worker process
        return type(self), (self.loss, self.step, self.epoch, self.history)
