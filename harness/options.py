"""Declared, typed, validated options: what ``--model-opt key=value`` and suite tables feed into."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from harness import errors

# Names importable from here before harness.errors held them (a warning says where they went).
_MOVED_ERRORS = ("BenchError", "OptionError", "UnknownNameError")


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
    """Validate ``given`` against ``declared`` and fill in defaults. Every unknown or bad option
    is reported, in one :class:`~harness.errors.OptionError` whose ``problems`` name owner and
    key of each (unknown names first)."""
    problems = [
        (key, str(errors.UnknownNameError("option", key, declared, owner=owner)))
        for key in given
        if key not in declared
    ]
    resolved = {key: option.default for key, option in declared.items()}
    for key, value in given.items():
        if key not in declared:
            continue
        try:
            resolved[key] = declared[key].coerce(value)
        except (ValueError, TypeError) as exc:
            problems.append((key, f"{owner} option {key}={value!r}: {exc}"))
    if problems:
        raise errors.OptionError.of(problems)
    return resolved


def parse_assignments(pairs: Iterable[str], what: str = "option") -> dict[str, str]:
    """Parse ``["key=value", ...]`` from the command line into a dict of strings."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise errors.BenchError(f"{what} {pair!r} is not of the form key=value")
        parsed[key.strip()] = value.strip()
    return parsed


def __getattr__(name: str) -> Any:
    """The errors lived here before :mod:`harness.errors`: still importable, with a warning."""
    if name in _MOVED_ERRORS:
        warnings.warn(
            f"harness.options.{name} moved to harness.errors.{name}; import it from there (or "
            "from harness) instead",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(errors, name)
    raise AttributeError(f"module '{__name__}' has no attribute '{name}'")
