"""Report cells that read as text in markdown and as numbers in CSV and JSON.

A procedure's tables (:class:`harness.planning.protocol.Table`) hold cells exactly as its markdown
shows them: ``"16,962"``, ``"97.3 ± 2.0"``, ``"1.20M"``, ``"3.1x"``. Spreadsheets and pandas cannot
compute with those, so ``bench report --format csv|json`` turns every cell into numbers with
:func:`numeric_rows`:

- a :class:`Cell` (what :func:`harness.reporting.tables.pct`, ``human``, ``count`` and
  ``metric_text``
  return) carries the exact numbers behind its text, e.g. ``{"": 97.31, " std": 2.03}``;
- any other text that is a number as bench prints numbers is parsed (at the precision shown);
- everything else (names, notes) stays text.

Floats are written to :data:`SIGNIFICANT` significant digits: the arithmetic behind a cell
(a fraction times 100, seconds times 1000) leaves noise in a double's last digits
(``94.60000000000001``), and 12 digits drop it while keeping every digit a measurement has, so a
CSV or JSON cell reads as the shortest text of that number (``94.6``).

A number's key is the suffix its column gains: ``""`` keeps the column's name, ``" std"`` makes
``"test acc % std"``, ``" (x)"`` makes ``"speed-up (x)"``; a key without a leading space is a
column name of its own. So units stay in the column names, and a column holds one kind of value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

Number = float | int | bool | None

MISSING = {"", "—", "-", "n/a"}
SIGNIFICANT = 12
SCALES = {"K": 1e3, "M": 1e6, "G": 1e9}
_NUMBER = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?"
_PLAIN = re.compile(rf"^{_NUMBER}$")
_SPREAD = re.compile(rf"^({_NUMBER}) ± ({_NUMBER})$")
_SCALED = re.compile(rf"^({_NUMBER})([KMG])$")
_SUFFIXED = re.compile(rf"^({_NUMBER}) ?(x|%|ms|s)$")


class Cell(str):
    """Text for the markdown table, with ``numbers`` for CSV and JSON (see the module)."""

    numbers: dict[str, Number]

    def __new__(cls, text: str, numbers: Mapping[str, Number] | None = None) -> Cell:
        cell = super().__new__(cls, text)
        cell.numbers = dict(numbers or {})
        return cell


def number(text: str) -> float | int:
    """``"16,962"`` -> 16962, ``"0.25"`` -> 0.25: a number as bench prints one."""
    plain = text.replace(",", "")
    if re.fullmatch(r"[-+]?\d+", plain):
        return int(plain)
    return float(plain)


def numbers_of(value: Any) -> dict[str, Any]:
    """The numbers behind one cell, keyed as the module says; text that is no number stays as
    it is under ``""``, and an empty cell has none."""
    if isinstance(value, Cell):
        return value.numbers
    if not isinstance(value, str):
        return {"": value}
    text = value.strip()
    if text in MISSING:
        return {}
    if _PLAIN.match(text):
        return {"": number(text)}
    if match := _SPREAD.match(text):
        return {"": number(match[1]), " std": number(match[2])}
    if match := _SCALED.match(text):
        return {"": number(match[1]) * SCALES[match[2]]}
    if match := _SUFFIXED.match(text):
        return {f" ({match[2]})": number(match[1])}
    return {"": value}


def numeric_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` with every cell replaced by its numbers; each column is expanded into the same
    columns in every row (a cell without one of them gets None), in first-seen order."""
    expanded = [{column: numbers_of(value) for column, value in row.items()} for row in rows]
    names: dict[str, dict[str, None]] = {}
    for row in expanded:
        for column, numbers in row.items():
            names.setdefault(column, {}).update(dict.fromkeys(numbers))
    result = []
    for row in expanded:
        out: dict[str, Any] = {}
        for column, keys in names.items():
            numbers = row.get(column, {})
            for key in keys or [""]:
                out[_name(column, key)] = tidy(numbers.get(key))
        result.append(out)
    return result


def tidy(value: Any) -> Any:
    """A finite float to :data:`SIGNIFICANT` significant digits (``94.60000000000001`` ->
    ``94.6``); anything else as it is."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT}g}")
    return value


def _name(column: str, key: str) -> str:
    if not key:
        return column
    if key.startswith(" ("):  # a unit: not twice ('acc %' stays 'acc %')
        unit = key[2:-1]
        return column if column.endswith(unit) else column + key
    return column + key if key.startswith(" ") else key
