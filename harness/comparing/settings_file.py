"""The project's bench settings: ``[tool.bench]`` in ``pyproject.toml``, or a ``bench.toml``.

Where. From the current directory upward, the first directory that holds a ``bench.toml`` (its
top-level keys are the settings) or a ``pyproject.toml`` with a ``[tool.bench]`` table; the search
stops at the top of the git repository (the directory holding ``.git``) or of the filesystem.
Both in one directory is an error: one place, so that no one edits the file that is not read.

What (every key optional; any other key is an error naming the file and the key)::

    thresholds = {"forward*" = 5.0, "train_step" = 10.0, "*accuracy" = "0.5pp"}
    gate = ["forward*", "train_step"]   # whose regressions fail the exit code; others reported
    ab_rounds = 20                       # bench ab --rounds
    suite = "suites/ci.toml"             # what bench ab and bench time measure without
                                         # --suite or --model (a name, or a .toml file)
    history_dir = ".bench/history"       # bench history --history
    counter_thresholds = {"*.operators" = 2.0, "train_step.allocations" = 5.0}

A threshold is a number of percent (timings and relative task metrics, as ``--threshold 5%``) or
a string ``N%``/``Npp`` (``Npp``: accuracies, in percentage points). Where several globs match a
metric, the most specific wins, whatever their order in the file: the one with the most
characters that are not wildcards (``train_step`` before ``train_*`` before ``*``); of two
equally specific, the one written last. Paths are relative to the file's directory.

``counter_thresholds`` are the counters' (globs of ``MODE.COUNTER``, as ``bench compare`` names
them: ``forward.operators``, ``train_step.syncs``), in percent of the baseline's count; 0 means
any increase. Without one, a counter regresses when it grows by more than 1% (operators,
allocations, bytes, FLOPs, kernel launches) or at all (syncs, graph breaks, recompiles).

Command-line flags override the file: a ``--threshold`` applies after every threshold of the
file (the last match wins), ``--gate``/``--rounds``/``--suite``/``--history`` replace the key.
The file is data: it is parsed with :mod:`tomllib`, never executed.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.comparing.verdicts import MIN_ROUNDS, TIME, Rules, Threshold
from harness.errors import BenchError, UnknownNameError

SETTINGS_NAME = "bench.toml"
PYPROJECT_NAME = "pyproject.toml"


@dataclass(frozen=True)
class ProjectSettings:
    """The settings read from ``path`` (``None``: no settings file was found)."""

    path: Path | None = None
    thresholds: tuple[Threshold, ...] = ()  # in the order they apply: the most specific last
    gate: tuple[str, ...] = ()
    ab_rounds: int | None = None
    suite: str | None = None  # a suite name, or an absolute path to a suite file
    history_dir: Path | None = None
    counter_thresholds: tuple[Threshold, ...] = ()

    def rules(
        self,
        thresholds: Iterable[str] = (),
        metrics: Iterable[str] = (),
        strict: bool = False,
        gate: Iterable[str] = (),
    ) -> Rules:
        """The comparison rules of these settings, with the command line's flags over them."""
        flags = Rules.parse(thresholds, metrics, strict, gate)
        return replace(
            flags,
            thresholds=self.thresholds + flags.thresholds,
            gate=flags.gate or self.gate,
            source=str(self.path) if self.path else None,
            counters=self.counter_thresholds,
        )


def find_settings(start: Path | None = None) -> ProjectSettings:
    """The settings of the project ``start`` (default: the current directory) is in, or empty
    settings if there are none."""
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        found = _settings_in(directory)
        if found is not None:
            return found
        if (directory / ".git").exists():
            break
    return ProjectSettings()


def _settings_in(directory: Path) -> ProjectSettings | None:
    own, pyproject = directory / SETTINGS_NAME, directory / PYPROJECT_NAME
    tool = _read(pyproject).get("tool") if pyproject.is_file() else None
    table = tool.get("bench") if isinstance(tool, dict) else None
    if own.is_file():
        if table is not None:
            raise BenchError(
                f"settings in both {own} and {pyproject} [tool.bench]: keep them in one place"
            )
        return read_settings(own, _read(own))
    if table is None:
        return None
    return read_settings(pyproject, table, prefix="tool.bench.")


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise BenchError(f"settings file {path} is not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"cannot read settings file {path}: {exc}") from None


def read_settings(path: Path, table: Any, prefix: str = "") -> ProjectSettings:
    """Check every key of ``table`` (read from ``path``, where its keys start with ``prefix``)
    and return the settings; every problem is reported at once, a line each, naming the file
    and the key (:class:`BenchError`, exit 2)."""
    problems: list[str] = []

    def fail(key: str, message: str) -> None:
        problems.append(f"settings file {path}: key '{prefix}{key}': {message}")

    if not isinstance(table, Mapping):
        fail("", "expected a table")
        table = {}
    for key in table:
        if key not in CHECKS:
            fail(key, str(UnknownNameError("key", key, CHECKS)))
    values = {
        key: check(table[key], path.parent, lambda message, key=key: fail(key, message))
        for key, check in CHECKS.items()
        if key in table
    }
    if problems:
        raise BenchError("\n".join(problems))
    return ProjectSettings(path, **values)


def _thresholds(value: Any, _root: Path, fail) -> tuple[Threshold, ...]:
    example = '{"forward*" = 5.0, "*accuracy" = "0.5pp"}'
    expected = "a number of percent, or 'N%' or 'Npp'"
    return _glob_thresholds(value, fail, f"metric globs, e.g. {example}", expected, points=True)


def _counter_thresholds(value: Any, _root: Path, fail) -> tuple[Threshold, ...]:
    example = '{"*.operators" = 2.0, "*.syncs" = 0}'
    expected = "a number of percent (0: any increase), or 'N%'"
    return _glob_thresholds(value, fail, f"counter globs, e.g. {example}", expected, points=False)


def _glob_thresholds(
    value: Any, fail, table: str, expected: str, *, points: bool
) -> tuple[Threshold, ...]:
    """A table of globs and thresholds, most specific last; ``points``: ``Npp`` allowed."""
    if not isinstance(value, Mapping):
        fail(f"expected a table of {table}")
        return ()
    rules = []
    for glob, amount in value.items():
        rule = _threshold(glob, amount)
        if rule is None or (rule.kind != TIME and not points):
            fail(f"'{glob}' = {amount!r}: expected {expected}")
        else:
            rules.append(rule)
    return tuple(sorted(rules, key=_specificity))


def _threshold(glob: str, amount: Any) -> Threshold | None:
    if isinstance(amount, str):
        return Threshold.of(glob, amount)
    if isinstance(amount, (int, float)) and not isinstance(amount, bool) and amount >= 0:
        return Threshold(glob, TIME, amount / 100)
    return None


def _specificity(rule: Threshold) -> int:
    """Characters of the glob that are not wildcards: more is more specific."""
    return len(re.sub(r"\[[^\]]*\]|[*?]", "", rule.glob))


def _gate(value: Any, _root: Path, fail) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(g, str) and g for g in value):
        fail('expected an array of metric globs, e.g. ["forward*", "train_step"]')
        return ()
    return tuple(value)


def _rounds(value: Any, _root: Path, fail) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_ROUNDS:
        fail(f"expected a whole number of rounds, at least {MIN_ROUNDS}, got {value!r}")
        return None
    return value


def _suite(value: Any, root: Path, fail) -> str | None:
    if not isinstance(value, str) or not value:
        fail("expected a suite name or the path of a suite file, e.g. 'suites/ci.toml'")
        return None
    return str(root / value) if value.endswith(".toml") else value


def _directory(value: Any, root: Path, fail) -> Path | None:
    if not isinstance(value, str) or not value:
        fail("expected the path of a directory, e.g. '.bench/history'")
        return None
    return root / value


CHECKS = {
    "thresholds": _thresholds,
    "gate": _gate,
    "ab_rounds": _rounds,
    "suite": _suite,
    "history_dir": _directory,
    "counter_thresholds": _counter_thresholds,
}
