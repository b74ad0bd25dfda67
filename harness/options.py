"""Declared, typed, validated options: what ``--model-opt key=value`` and suite tables feed into."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any


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
    the exact key (``train.epochs``) rather than only its table."""

    def __init__(self, message: str, key: str):
        super().__init__(message)
        self.key = key


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _list_of(item: Callable[[str], Any]) -> Callable[[str], tuple[Any, ...]]:
    """A parser for "a,b,c" (or "[a, b]") into a tuple of ``item`` values."""

    def parse(text: str) -> tuple[Any, ...]:
        parts = [p.strip("'\"") for p in text.strip().strip("[]()").replace(",", " ").split()]
        if not parts:
            raise ValueError("expected one or more values")
        return tuple(item(p) for p in parts)

    return parse


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": _parse_bool,
    "ints": _list_of(int),
    "floats": _list_of(float),
    "strs": _list_of(str),
}

# element type of each list kind
_ITEMS: dict[str, type | tuple[type, ...]] = {"ints": int, "floats": (int, float), "strs": str}


@dataclass(frozen=True)
class Option:
    """One option of a model, dataset, training or procedure.

    ``kind`` is one of ``int``, ``float``, ``str``, ``bool``, or a list kind ``ints``, ``floats``
    or ``strs`` (one value or a list; always stored as a tuple). ``choices`` restricts each value;
    ``minimum``/``maximum`` bound numbers (inclusive) and ``below`` is an exclusive upper bound;
    ``check`` may raise ValueError.
    """

    default: Any
    help: str
    kind: str = "int"
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    below: float | None = None
    check: Callable[[Any], None] | None = None

    def coerce(self, value: Any) -> Any:
        """Turn a string (command line) or a TOML value into a validated value of ``kind``."""
        if isinstance(value, str) and self.kind != "str":
            try:
                value = _PARSERS[self.kind](value)
            except ValueError as exc:
                raise ValueError(f"expected {self.kind}, got {value!r} ({exc})") from None
        elif self.kind in _ITEMS:
            value = tuple(value) if isinstance(value, (list, tuple)) else (value,)
            if not all(isinstance(v, _ITEMS[self.kind]) and not isinstance(v, bool) for v in value):
                raise ValueError(f"expected a list of {self.kind[:-1]}s")
            if self.kind == "floats":
                value = tuple(float(v) for v in value)
        elif self.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        elif not isinstance(value, _TYPES[self.kind]) or (
            self.kind in {"int", "float"} and isinstance(value, bool)
        ):
            raise ValueError(f"expected {self.kind}, got {type(value).__name__}")
        self._check_range(value)
        if self.check is not None:
            self.check(value)
        return value

    def _check_range(self, value: Any) -> None:
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"expected a finite number, got {v}")
            if self.choices is not None and v not in self.choices:
                raise ValueError(f"expected one of {', '.join(map(str, self.choices))}")
            if self.minimum is not None and v < self.minimum:
                raise ValueError(f"must be >= {self.minimum:g}")
            if self.maximum is not None and v > self.maximum:
                raise ValueError(f"must be <= {self.maximum:g}")
            if self.below is not None and v >= self.below:
                raise ValueError(f"must be < {self.below:g}")


_TYPES: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "ints": tuple,
    "floats": tuple,
    "strs": tuple,
}


def resolve_options(
    owner: str, declared: Mapping[str, Option], given: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate ``given`` against ``declared`` and fill in defaults; errors (:class:`OptionError`)
    name owner and key."""
    unknown = [key for key in given if key not in declared]
    if unknown:
        message = str(UnknownNameError("option", unknown[0], declared, owner=owner))
        raise OptionError(message, unknown[0])
    resolved = {key: option.default for key, option in declared.items()}
    for key, value in given.items():
        try:
            resolved[key] = declared[key].coerce(value)
        except (ValueError, TypeError) as exc:
            raise OptionError(f"{owner} option {key}={value!r}: {exc}", key) from None
    return resolved


def parse_assignments(pairs: Iterable[str], what: str = "option") -> dict[str, str]:
    """Parse ``["key=value", ...]`` from the command line into a dict of strings."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BenchError(f"{what} {pair!r} is not of the form key=value")
        parsed[key.strip()] = value.strip()
    return parsed
