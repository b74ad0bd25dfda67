"""Result sinks: where each run's record goes besides the results file. A plugin adds one with
the ``register_result_sinks`` hook; ``--sink NAME[=TARGET]`` (or ``--tensorboard DIR`` for the
built-in ``tensorboard`` sink) opens it for one ``bench run`` or ``bench time``.

The results file stays the record of truth: a sink is told about each run right after the file
holding it was written (by the parent process, whichever executor ran it), and once more when
the suite ends. A sink that raises is reported on stderr and dropped; the suite and its results
go on, since a tracker that is down must not cost the user their runs.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.errors import BenchError
from harness.registry.specs import Registry


@dataclass(frozen=True)
class SinkContext:
    """What a sink is opened with, before any run: ``target`` (the text after ``=`` in
    ``--sink NAME=TARGET``, or None), the suite's output directory, and ``hyperparameters``,
    which gives a run's grid values from its configuration (the suite procedure's, see
    :class:`harness.planning.protocol.Procedure`; empty for a run outside any grid)."""

    target: str | None
    out_dir: Path
    hyperparameters: Callable[[dict[str, Any]], dict[str, Any]] = lambda config: {}


class Sink(Protocol):
    """``record(run, results)``: one run's record, just written to the results file
    (``results``: the whole document, with its ``suite``, ``environment`` and ``command``).
    ``close(results)``: the suite ended (complete, stopped or interrupted); ``results`` holds
    every run, also those of an earlier invocation that ``--resume`` continued."""

    def record(self, run: dict[str, Any], results: dict[str, Any]) -> None: ...

    def close(self, results: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class SinkSpec:
    """A sink plugins can provide: ``open(context)`` returns a :class:`Sink` for one suite.
    ``needs_target`` says that ``--sink NAME`` must be given as ``NAME=TARGET``."""

    name: str
    description: str
    open: Callable[[SinkContext], Sink]
    needs_target: bool = False


def parse_sink(text: str) -> tuple[str, str | None]:
    """``tensorboard=runs/tb`` -> ``("tensorboard", "runs/tb")``; ``mlflow`` -> ``("mlflow",
    None)``."""
    name, sep, target = text.partition("=")
    if not name or (sep and not target):
        raise BenchError(f"--sink {text}: give NAME or NAME=TARGET, e.g. --sink tensorboard=tb")
    return name, (target if sep else None)


def requested_sinks(tensorboard: str | Path | None, sinks: Sequence[str]) -> list[str]:
    """The sinks asked for, ``--tensorboard DIR`` as ``tensorboard=DIR``."""
    return [*([f"tensorboard={tensorboard}"] if tensorboard else []), *sinks]


def check_sinks(registry: Registry, requested: Sequence[str]) -> None:
    """Refuse unknown sinks (listing the known ones) and missing targets, before any run."""
    for text in requested:
        name, target = parse_sink(text)
        spec = registry.sinks.get(name)
        if spec.needs_target and not target:
            raise BenchError(f"--sink {name} needs a target: --sink {name}=TARGET")


class Sinks:
    """The sinks of one suite: each told of every run, and closed once."""

    def __init__(self, opened: list[tuple[str, Sink]]):
        self._open = opened

    @classmethod
    def open(
        cls,
        registry: Registry,
        requested: Sequence[str],
        out_dir: Path,
        hyperparameters: Callable[[dict[str, Any]], dict[str, Any]],
    ) -> Sinks:
        """Open every requested sink; an unknown one or one that cannot open is a usage error,
        raised before any run."""
        check_sinks(registry, requested)
        opened = []
        for text in requested:
            name, target = parse_sink(text)
            context = SinkContext(target, out_dir, hyperparameters)
            opened.append((name, registry.sinks.get(name).open(context)))
        return cls(opened)

    def record(self, run: dict[str, Any], results: dict[str, Any]) -> None:
        self._each("record", run, results)

    def close(self, results: dict[str, Any]) -> None:
        self._each("close", results)
        self._open = []

    def _each(self, method: str, *args: Any) -> None:
        for name, sink in list(self._open):
            try:
                getattr(sink, method)(*args)
            except Exception as exc:  # a sink's failure must not cost the suite its runs
                self._open.remove((name, sink))
                where = traceback.extract_tb(exc.__traceback__)[-1]
                print(
                    f"warning: result sink '{name}' failed and was dropped ({method}): "
                    f"{type(exc).__name__}: {exc} [{Path(where.filename).name}:{where.lineno}]; "
                    "the results file is unaffected",
                    file=sys.stderr,
                )
