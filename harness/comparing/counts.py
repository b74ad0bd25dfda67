"""Counters judged exactly: a step's operators, allocations, bytes, FLOPs, graph breaks,
recompilations, kernel launches and synchronisations (:mod:`harness.measuring.counters`).

The same code counts the same on any machine, busy or not, so no statistical test and no
contention rule applies: a count that grew by more than its threshold is a regression, one that
fell by more is an improvement, whatever the timings around it did. Thresholds are relative to the
baseline's count (default: any increase in synchronisations, graph breaks and recompilations,
more than 1% in the others; the ``counter_thresholds`` of the settings file, on globs of
``MODE.COUNTER``). A count that grew from none is a regression at any threshold. An operators
row names the operators added and removed.

Seeds of one configuration pool as their median count (they count the same: the seed changes
the weights, not the operators).
"""

from __future__ import annotations

import fnmatch
import math
from typing import Any

from harness.comparing.verdicts import COUNT, Evidence, Measurement, Row, Rules, verdict
from harness.measuring import COUNTERS

DEFAULT_THRESHOLD = 0.01
ANY_INCREASE = ("syncs", "graph_breaks", "recompiles")  # counters whose default threshold is 0


def counters_of(record: dict[str, Any]) -> dict[str, Any]:
    """A timing record's counters that were read; the operators' as (count, by name)."""
    counters = record.get("counters") or {}
    found: dict[str, Any] = {
        name: counters[name] for name in COUNTERS if isinstance(counters.get(name), int)
    }
    if "operators" in found and isinstance(counters.get("operators_by_name"), dict):
        found["operators"] = (found["operators"], counters["operators_by_name"])
    return found


def count_measurement(values: list[Any]) -> Measurement:
    """One count per seed (:func:`counters_of`'s values), with the first seed's operators."""
    names = next((tuple(sorted(v[1].items())) for v in values if isinstance(v, tuple)), ())
    counts = [float(v[0] if isinstance(v, tuple) else v) for v in values]
    return Measurement.of(COUNT, counts, higher_better=False, names=names)


def judge_count(
    config: str,
    metric: str,
    base: Measurement,
    cand: Measurement,
    rules: Rules,
    *,
    interleaved: bool = False,
) -> Row:
    """One counter of one configuration, judged exactly (``interleaved`` changes nothing)."""
    operators = _operator_changes(base, cand) if base.names or cand.names else None
    change = count_change(base.median, cand.median)
    test = "exact count"
    if operators:
        test += ": " + ", ".join(f"{n:+d} {name}" for name, n in operators.items())
    threshold = counter_threshold(metric, rules)
    evidence = Evidence(change, change, clear=True, separated=True, test=test)
    outcome = verdict(evidence, threshold, noisy=False, strict=rules.strict)
    return Row(
        config,
        metric,
        COUNT,
        base,
        cand,
        change,
        threshold,
        test,
        None,
        outcome,
        gated=rules.gates(metric),
        operators=operators,
    )


def count_change(before: float, after: float) -> float:
    """A count's relative change: from none to some, infinite."""
    if before:
        return after / before - 1
    return math.inf if after > 0 else 0.0


def counter_threshold(metric: str, rules: Rules) -> float:
    """The counter's default, then the last of the rules' counter thresholds matching it."""
    value = 0.0 if metric.rpartition(".")[2] in ANY_INCREASE else DEFAULT_THRESHOLD
    for rule in rules.counters:
        if fnmatch.fnmatchcase(metric, rule.glob):
            value = rule.value
    return value


def _operator_changes(base: Measurement, cand: Measurement) -> dict[str, int]:
    """Each operator dispatched more or fewer times by the candidate, most changed first."""
    before, after = dict(base.names), dict(cand.names)
    changes = {name: after.get(name, 0) - before.get(name, 0) for name in {*before, *after}}
    moved = {name: n for name, n in changes.items() if n}
    return dict(sorted(moved.items(), key=lambda item: (-abs(item[1]), item[0])))
