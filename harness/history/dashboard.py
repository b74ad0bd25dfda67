"""``bench history html``: one self-contained page of every series and its change points.

The page is a single HTML file with its script, style and data inline: it opens from disk with no
network and no server. One chart per series (each commit's median with its interquartile band,
change points as dashed lines, red for regressions and green for improvements), the changes
listed above the charts with their commits (regressions first, the latest first), and filters by
model, metric and machine.
"""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path
from statistics import quantiles
from typing import Any

from harness.comparing.verdicts import ACCURACY, TIME
from harness.history.detect import Detection, Series
from harness.results.store import atomic_write_text, now

PAGE = "index.html"


def page_data(series: list[Series], detection: Detection) -> dict[str, Any]:
    """What the page draws: each series' per-commit median and quartiles, and the changes."""
    changes = [{**change.__dict__} for change in detection.changes]
    units = {one.key: _unit(one) for one in series}
    for change in changes:
        change["value_unit"] = units.get(change["series"], "")
    by_series: dict[str, list[dict[str, Any]]] = {}
    for change in changes:
        by_series.setdefault(change["series"], []).append(change)
    commits = {entry.commit for one in series for entry in one.commits}
    return {
        "written": now(),
        "commits": len(commits),
        "q": detection.q,
        "min_effect": f"{detection.min_effect:g}% or {detection.min_effect_pp:g} pp",
        "changes": changes,
        "series": [
            {
                "key": one.key,
                "label": one.label,
                "model": one.model,
                "metric": one.metric,
                "machine": one.machine,
                "value_unit": units[one.key],
                "commits": [entry.commit for entry in one.commits],
                **_bands(one),
                "changes": by_series.get(one.key, []),
            }
            for one in series
        ],
    }


def write_dashboard(series: list[Series], detection: Detection, out_dir: Path) -> Path:
    """Write ``OUT_DIR/index.html`` atomically; its path."""
    data = json.dumps(page_data(series, detection), allow_nan=False)
    data = data.replace("</", "<\\/")  # the data sits inside a <script> element
    template = files("harness.history").joinpath("dashboard.html").read_text(encoding="utf-8")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / PAGE
    atomic_write_text(path, template.replace("__DATA__", data))
    return path


def _unit(one: Series) -> str:
    return "s" if one.kind == TIME else "fraction" if one.kind == ACCURACY else ""


def _bands(one: Series) -> dict[str, list[float]]:
    """Each commit's median and quartiles (one sample: all three are it)."""
    quartiles = [
        quantiles(block, n=4, method="inclusive") if len(block) > 1 else block * 3
        for block in one.samples
    ]
    return {
        "p25": [q[0] for q in quartiles],
        "medians": [q[1] for q in quartiles],
        "p75": [q[2] for q in quartiles],
    }
