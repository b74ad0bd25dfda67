"""Rendering helpers shared by every procedure's report: tables, mean +- std, the context line."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from tabulate import tabulate

from harness.reporting.cells import Cell

MISSING = "—"  # a cell with nothing to show


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value); NaN for none."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_std_text(values: Iterable[float], digits: int = 2, scale: float = 1.0) -> Cell:
    """``scale`` times the values as 'mean ± std' ('0.42 ± 0.03'); a single value has no
    spread, none is '—'. The cell keeps the unrounded mean and std for CSV and JSON."""
    values = [v for v in values if v is not None and not math.isnan(v)]
    mean, std = mean_std(values)
    if math.isnan(mean):
        return Cell(MISSING)
    if len(values) < 2:
        return Cell(f"{scale * mean:.{digits}f}", {"": scale * mean})
    return Cell(
        f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}",
        {"": scale * mean, " std": scale * std},
    )


def pct(values: Iterable[float], digits: int = 1) -> Cell:
    """Fractions as 'mean +- std' percentages ('97.5 ± 0.3'); a single value has no spread."""
    return mean_std_text(values, digits, scale=100)


def human(n: float | None) -> Cell:
    """Large counts as 1.2K / 3.4M / 5.6G (the exact count behind it)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return Cell(MISSING)
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return Cell(f"{n / size:.2f}{unit}", {"": n})
    return Cell(f"{n:g}", {"": n})


def count(n: int | None) -> Cell:
    """A count with thousands separators ('16,962'); None is '—'."""
    return Cell(MISSING) if n is None else Cell(f"{n:,}", {"": n})


def plural(count: int | None, noun: str, plural_noun: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless the count is one: ``plural(1, "run")`` is
    "1 run", ``plural(1200, "run")`` "1,200 runs", ``plural(2, "series", "series")`` "2 series";
    an unknown count (``None``, e.g. a field an older results file lacks) is "? runs". Every
    count in bench's messages and reports goes through it: never "1 threads" or "run(s)"."""
    word = noun if count == 1 else plural_noun or f"{noun}s"
    return f"{'?' if count is None else f'{count:,}'} {word}"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured markdown table; a cell's pipes are escaped and its line breaks become
    spaces, so that no value (an error message, a name) can break a row. The columns are
    ``columns``, or every key in the order first seen; a row without one, or whose value is
    not a number (NaN), shows a dash: no table reads ``nan``."""
    if not rows:
        return "_no rows_"
    keys = columns if columns is not None else list(dict.fromkeys(k for r in rows for k in r))
    body = [[_cell(row.get(key, MISSING)) for key in keys] for row in rows]
    headers = [_cell(key) for key in keys]
    return tabulate(body, headers, tablefmt="pipe", disable_numparse=True)


def _cell(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return MISSING
    if isinstance(value, str):
        return " ".join(value.splitlines()).replace("|", "\\|")
    return value


def group(
    runs: Iterable[dict[str, Any]], key: Callable[[dict[str, Any]], Any]
) -> dict[Any, list[dict[str, Any]]]:
    """Runs grouped by ``key`` in first-seen order."""
    groups: dict[Any, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(key(run), []).append(run)
    return groups


def context_line(results: dict[str, Any]) -> str:
    env = results.get("environment", {})
    parts = [
        f"device {env.get('device')} ({env.get('device_name')})",
        f"torch {env.get('torch')}",
        plural(env.get("threads"), "thread"),
        f"commit {(env.get('git_commit') or 'unknown')[:12]}",
        f"created {results.get('created_at')}",
    ]
    return "_" + ", ".join(parts) + "_"


def failure_rows(runs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run that is not ``ok``: its id, status and the start of its error."""
    return [
        {"run": r["id"], "status": r["status"], "error": (r.get("error") or "")[:160]}
        for r in runs
        if r["status"] != "ok"
    ]


def failures_section(runs: Iterable[dict[str, Any]]) -> str:
    rows = failure_rows(runs)
    if not rows:
        return ""
    return f"\n\n**{plural(len(rows), 'run')} did not finish:**\n\n" + markdown_table(rows)


def contended(record: dict[str, Any] | None) -> bool:
    """Whether a timing record was measured under contention
    (:mod:`harness.measuring.contention`)."""
    return bool(record and (record.get("contention") or {}).get("contended"))


def contention_section(runs: Iterable[dict[str, Any]]) -> str:
    """Every timing measurement taken under contention, with the evidence in words: its figure
    is not to be trusted however small its spread."""
    lines = [
        f"- {run['id']} `{name}`: {value['contention'].get('evidence', '')}"
        for run in runs
        for name, value in run.get("metrics", {}).items()
        if isinstance(value, dict) and contended(value)
    ]
    if not lines:
        return ""
    return (
        f"\n\n**{plural(len(lines), 'measurement')} taken under contention** (the machine was "
        "busy; their timings are not to be trusted, however small their spread):\n\n"
        + "\n".join(lines)
    )


def task_of_runs(runs: Iterable[dict[str, Any]]) -> str:
    """The task the runs' results are for (results written before tasks: classification)."""
    for run in runs:
        task = run.get("metrics", {}).get("task")
        if task:
            return task["name"]
    return "classification"


def metric_column(name: str, metric: dict[str, Any], target_unit: str | None = None) -> str:
    """A task metric's column header: its label and unit ('RMSE (USD/barrel)', 'accuracy %')."""
    label = metric.get("label") or name.replace("_", " ")
    unit = {"fraction": "%", "target": target_unit or "", "": ""}.get(metric.get("unit"))
    if unit is None:
        unit = metric.get("unit", "")
    if unit == "%":
        return f"{label} %"
    return f"{label} ({unit})" if unit and unit not in label else label  # not 'bits/token (bits)'


def metric_text(values: Iterable[float | None], metric: dict[str, Any]) -> Cell:
    """A task metric's values over seeds as mean ± std in its unit: fractions as percentages,
    other numbers with four significant digits; values that do not vary show no spread."""
    values = [v for v in values if v is not None]
    if metric.get("unit") == "fraction":
        return pct(values)
    mean, std = mean_std(values)
    if math.isnan(mean):
        return Cell(MISSING)
    numbers = {"": mean, " std": std} if len(values) > 1 else {"": mean}
    if len(values) < 2 or std <= 1e-9 * abs(mean):
        return Cell(f"{mean:.4g}", numbers)
    return Cell(f"{mean:.4g} ± {std:.2g}", numbers)


def samples_section(runs: Iterable[dict[str, Any]]) -> str:
    """What trained models produced on test data, in words, for the first seed of each
    configuration: sequences classified, text generated (series are drawn, not listed)."""
    parts, seen = [], set()
    for run in runs:
        samples = run.get("metrics", {}).get("samples") if run["status"] == "ok" else None
        name = re.sub(r"-s\d+$", "", run["config"].get("name", run["id"]))
        if not samples or name in seen:
            continue
        seen.add(name)
        if samples.get("predictions"):
            rows = [
                {"input": p["input"], "true": p["label"], "predicted": p["predicted"]}
                for p in samples["predictions"]
            ]
            parts.append(f"**{name}**: test sequences and predictions\n\n{markdown_table(rows)}")
        if samples.get("generated"):
            generated = samples["generated"]
            text = (generated["prompt"] + "‖" + generated["text"]).replace("`", "'")
            parts.append(
                f"**{name}**: generated after a prompt from the test text (‖ marks where the "
                f"model takes over)\n\n```\n{text}\n```"
            )
    return "### Samples\n\n" + "\n\n".join(parts) if parts else ""


def point_label(point: dict[str, Any]) -> str:
    """A grid point as rows and file names show it: ``lr=0.01,latent=8``."""
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())
