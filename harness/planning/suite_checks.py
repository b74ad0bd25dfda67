"""Checking a suite document: errors that name the file and the key, every problem found in one
pass (:class:`Problems`), and the checks of one value that :mod:`harness.planning.suite_files`
applies key by key."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from harness.errors import BenchError, OptionError, SuiteError, UnknownNameError
from harness.options import Option, resolve_options
from harness.planning.train_settings import TRAIN_OPTIONS


def suite_error(source: str, key: str, message: str) -> SuiteError:
    """An error about ``key`` of the suite read from ``source`` (a file, or ``command line``),
    worded the same wherever a suite is checked: ``suite file X: key 'K': message``."""
    where = source if source == "command line" else f"suite file {source}"
    return SuiteError(f"{where}: key '{key}': {message}")


class Problems:
    """Every problem of one suite document, found in one pass and raised together.

    Called like :func:`suite_error` (``raise fail(key, message)`` inside a check); :meth:`attempt`
    runs one check and records the error it raises, :meth:`add` records one directly, and
    :meth:`raise_found` raises them all as one :class:`SuiteError`, a line each, each naming
    the file and the key.
    """

    def __init__(self, source: str):
        self.source = source
        self.found: list[str] = []

    def __call__(self, key: str, message: str) -> SuiteError:
        return suite_error(self.source, key, message)

    def add(self, key: str, message: str) -> None:
        self.found.append(str(self(key, message)))

    def attempt(self, check: Callable[[], Any], fallback: Any = None) -> Any:
        """``check()``, or ``fallback`` after recording the :class:`SuiteError` it raised."""
        try:
            return check()
        except SuiteError as exc:
            self.found.append(str(exc))
            return fallback

    def raise_found(self) -> None:
        if self.found:  # the same line twice: one check of several values (a grid's)
            raise SuiteError("\n".join(dict.fromkeys(self.found)))


# TOML's names for what tomllib returns, as a suite's author knows them
_TOML_TYPES = {
    str: "a string",
    list: "an array",
    dict: "a table",
    int: "an integer",
    float: "a float",
    bool: "a boolean",
}


def _toml_type(kind: type) -> str:
    return _TOML_TYPES.get(kind, f"a {kind.__name__}")


def typed(data: Mapping[str, Any], key: str, kind: type, default: Any, fail) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind):
        raise fail(key, f"expected {_toml_type(kind)}, got {_toml_type(type(value))}")
    return value


def validated(check, key: str, fail) -> Any:
    try:
        return check()
    except BenchError as exc:
        raise fail(key, str(exc)) from None


def resolved(
    key: str, fail, owner: str, declared: Mapping[str, Option], given: Mapping[str, Any]
) -> dict[str, Any]:
    """:func:`resolve_options` for the table at ``key``; the error names ``key.OPTION`` of every
    bad option, a line each."""
    try:
        return resolve_options(owner, declared, given)
    except OptionError as exc:
        lines = [str(fail(f"{key}.{option}", message)) for option, message in exc.problems]
        raise SuiteError("\n".join(lines)) from None


def check_keys(table: Mapping[str, Any], allowed: set[str], where: str, fail: Problems) -> None:
    """Record every key not in ``allowed``, suggesting the closest (``where`` prefixes it)."""
    for key in table:
        if key not in allowed:
            message = str(UnknownNameError("key", key, allowed))
            if key in TRAIN_OPTIONS:
                message += f"; training options such as {key} go in the [train] table"
            fail.add(f"{where}{key}", message)
