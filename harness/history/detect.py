"""``bench history detect``: the commits where a series changed, beyond its noise, after
correcting for how many series were tested.

For every series (see :mod:`harness.history.archive`) with enough commits, E-Divisive means
splits the commits while a segment holds a change, screened at twice ``q``; each split is then
tested on the commits between its neighbours and the weakest dropped until every one left
holds (:mod:`harness.history.changepoints`). A change point is reported when its p-value passes
one Benjamini-Hochberg correction at ``q`` across every segment screened in the call, in every
series, *and* its effect is at least the larger of ``min_effect`` (percent; ``min_effect_pp``
percentage points for accuracies) and the series' noise between its neighbours: the robust
spread (1.4826 MAD) of its commits' medians around their side's median, so a change no larger
than what commits of unchanged code already differ by is never reported. Merge and correction
are repeated until they agree (the merge is given the largest p-value the correction lets
pass, until every change point it keeps passes), so every change is sized and tested between
the change points reported beside it.

A series without a change point is explained by its best split (where E-Divisive splits it
whole): its size, noise and p-value, and how many commits after a change of that size the test
needs to find one (:func:`~harness.history.changepoints.commits_needed`).

Timings change in percent of the earlier median; accuracies (fractions) in percentage points.
The direction comes from the metric: a timing that grew, or a task metric that moved the wrong
way for its task (accuracy down, RMSE up), is a ``regression``.

Counters (:mod:`harness.measuring.counters`) are exact and need no detection: each commit whose
count differs from the commit before it by more than the counter's threshold
(:func:`harness.comparing.counts.counter_threshold`) is a change, certain (``exact``: no test,
no noise, no correction), however noisy the timings beside it.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from harness.comparing.counts import count_change, counter_threshold
from harness.comparing.verdicts import ACCURACY, COUNT, TIME, Rules
from harness.errors import BenchError
from harness.history.archive import Entry, Point
from harness.history.changepoints import (
    MIN_SIZE,
    Split,
    adjusted,
    best_split,
    between_neighbours,
    candidates,
    commits_needed,
    distances,
    merge,
)

MIN_COMMITS = 2 * MIN_SIZE
SCREEN = 2  # candidates are screened at this many times q, as Otava's first pass is relaxed


@dataclass(frozen=True)
class Series:
    """One configuration's metric on one environment, commit by commit."""

    key: str
    label: str
    model: str
    metric: str
    kind: str
    higher_better: bool
    machine: str
    commits: list[Entry]  # the first entry of each commit, in order
    samples: list[tuple[float, ...]]  # every sample of each commit

    @property
    def unit(self) -> str:
        return "pp" if self.kind == ACCURACY else "%"


@dataclass(frozen=True)
class Change:
    series: str
    label: str
    model: str
    metric: str
    machine: str
    before_commit: str  # the last commit before the change
    after_commit: str  # the first commit after it
    after_date: str
    after_index: int  # its position in the series
    before_median: float
    after_median: float
    change: float  # percent, or percentage points for accuracies
    unit: str
    noise: float  # in the same unit
    p_value: float
    q_value: float
    direction: str  # regression or improvement
    exact: bool = False  # a counter's change: a fact, not a test's finding


@dataclass(frozen=True)
class Quiet:
    """A series without a change point, and what it would take to find one: its best split,
    the smallest effect reported, and how many commits after a change of that split's size the
    test needs (None: more than a thousand, or never, the size being under ``floor``)."""

    best: Change
    floor: float  # in the change's unit
    commits_needed: int | None


@dataclass
class Detection:
    changes: list[Change]
    quiet: list[Quiet]  # the series tested without a change point
    series_tested: int
    tests: int
    q: float
    min_effect: float
    min_effect_pp: float
    skipped: list[str] = field(default_factory=list)  # series too short to test

    def regressions(self, since: set[str] | None = None) -> list[Change]:
        """Regressions, or those whose first changed commit is one of ``since``."""
        return [
            c
            for c in self.changes
            if c.direction == "regression" and (since is None or c.after_commit in since)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "q": self.q,
            "min_effect": self.min_effect,
            "min_effect_pp": self.min_effect_pp,
            "series_tested": self.series_tested,
            "tests": self.tests,
            "changes": [asdict(c) for c in self.changes],
            "no_change": [
                {**asdict(quiet.best), "floor": quiet.floor, "commits_needed": quiet.commits_needed}
                for quiet in self.quiet
            ],
            "too_short": self.skipped,
        }


def build_series(points: Sequence[Point], metric: str | None = None) -> list[Series]:
    """Points grouped into series (``metric``: a glob on the metric name), commits in order;
    two result sets of one commit pool their samples."""
    grouped: dict[str, list[Point]] = {}
    for point in points:
        if metric is None or fnmatch.fnmatchcase(point.metric, metric):
            grouped.setdefault(point.series, []).append(point)
    series = []
    for key, members in grouped.items():
        commits: list[Entry] = []
        samples: dict[str, list[float]] = {}
        for point in members:
            if point.entry.commit not in samples:
                commits.append(point.entry)
                samples[point.entry.commit] = []
            samples[point.entry.commit].extend(point.samples)
        first = members[0]
        series.append(
            Series(
                key,
                first.label,
                first.model,
                first.metric,
                first.kind,
                first.higher_better,
                first.machine,
                commits,
                [tuple(samples[c.commit]) for c in commits],
            )
        )
    return sorted(series, key=lambda s: (s.label, s.metric, s.machine))


class _Fit:
    """One series readied for testing: its commits' medians, E-Divisive's candidates (with the
    number of segments screened for them) and its best split, with the smallest effect worth
    reporting."""

    def __init__(self, one: Series, floor: float, screen: float):
        self.one, self.floor = one, floor
        self.medians = [median(block) for block in one.samples]
        matrix = distances(one.samples)
        self.candidates, self.tests = candidates(matrix, self.medians, screen)
        (self.best,) = between_neighbours(self.medians, [best_split(matrix)])

    def merged(self, threshold: float) -> list[Split]:
        return merge(self.medians, self.candidates, threshold, self.strength)

    def strength(self, split: Split) -> float:
        """The split's effect over the smallest reported: the floor, or the noise if larger."""
        *_, change, noise = _measure(self.one, split)
        smallest = max(self.floor, noise)
        return abs(change) / smallest if smallest else math.inf


def detect(
    series: Sequence[Series],
    q: float = 0.05,
    min_effect: float = 2.0,
    min_effect_pp: float = 0.5,
    fitted: Callable[[Series], None] | None = None,
    rules: Rules | None = None,
) -> Detection:
    """Change points of every series, corrected across all of them.

    ``min_effect``: percent, for timings and other scores; ``min_effect_pp``: percentage
    points, for accuracies; ``fitted(series)`` is called as each series is screened, the
    slow part (for progress in a log); ``rules``: the counters' thresholds (the settings
    file's)."""
    if not 0 < q < 1:
        raise BenchError(f"--q must be between 0 and 1, not {q}")
    counted = [s for s in series if s.kind == COUNT]
    series = [s for s in series if s.kind != COUNT]
    testable = [s for s in series if len(s.commits) >= MIN_COMMITS]
    skipped = [f"{s.label} {s.metric}" for s in series if len(s.commits) < MIN_COMMITS]
    smallest = {ACCURACY: min_effect_pp}
    fits = []
    for one in testable:
        fits.append(_Fit(one, smallest.get(one.kind, min_effect), SCREEN * q))
        if fitted:
            fitted(one)
    family, hypotheses = _agreed(fits, q)
    q_values = adjusted([split.p_value for _, split, _ in family], hypotheses)
    changes, quiet = [], []
    for (fit, split, accepted), q_value in zip(family, q_values, strict=True):
        change = _change(fit.one, split, q_value)
        if accepted:
            changes.append(change)
            continue
        needed = None
        if fit.strength(split) >= 1:
            needed = commits_needed(split, len(fit.medians), q / hypotheses)
        quiet.append(Quiet(change, max(fit.floor, change.noise), needed))
    changes += [change for one in counted for change in count_changes(one, rules or Rules())]
    changes.sort(key=lambda c: c.label)
    changes.sort(key=lambda c: c.after_date, reverse=True)  # the latest first,
    changes.sort(key=lambda c: c.direction != "regression")  # regressions before improvements
    floors = (min_effect, min_effect_pp)
    tested = len(testable) + len(counted)
    return Detection(changes, quiet, tested, hypotheses, q, *floors, skipped)


def count_changes(one: Series, rules: Rules) -> list[Change]:
    """Every commit of the count series ``one`` whose count moved beyond its threshold (the
    rules' counter thresholds, else the counter's default)."""
    counts = [median(block) for block in one.samples]
    threshold = counter_threshold(one.metric, rules)
    changes = []
    for index in range(1, len(counts)):
        low, high = counts[index - 1], counts[index]
        change = count_change(low, high)
        if abs(change) <= threshold:
            continue
        before, after = one.commits[index - 1], one.commits[index]
        direction = "regression" if high > low else "improvement"
        changes.append(
            Change(
                one.key,
                one.label,
                one.model,
                one.metric,
                one.machine,
                before.commit,
                after.commit,
                after.date,
                index,
                low,
                high,
                100 * change,
                "%",
                0.0,
                0.0,
                0.0,
                direction,
                exact=True,
            )  # fmt: skip
        )
    return changes


def _agreed(fits: Sequence[_Fit], q: float) -> tuple[list[tuple[_Fit, Split, bool]], int]:
    """Each series' change points after the merge, or its best split if it has none (with
    whether it is a change point), and the number of hypotheses: every segment screened, in
    every series. The merge runs at the largest p-value the correction lets pass, again until
    every change point it keeps passes; the threshold falls at each round, so this ends."""
    hypotheses = sum(fit.tests for fit in fits)
    threshold = q
    while True:
        family = []
        for fit in fits:
            kept = fit.merged(threshold)
            family += [(fit, split, True) for split in kept] or [(fit, fit.best, False)]
        q_values = adjusted([split.p_value for _, split, _ in family], hypotheses)
        passing = [t[1].p_value for t, value in zip(family, q_values, strict=True) if value <= q]
        allowed = max(passing, default=0.0)
        if all(split.p_value <= allowed for _, split, accepted in family if accepted):
            return family, hypotheses
        threshold = allowed


def _measure(one: Series, split: Split) -> tuple[float, float, float, float]:
    """Medians before and after the split, the change and the noise, in the series' unit."""
    before = [x for block in one.samples[split.start : split.index] for x in block]
    after = [x for block in one.samples[split.index : split.end] for x in block]
    low, high = median(before), median(after)
    if one.kind == ACCURACY:
        change = (high - low) * 100
        spread = [(median(b) - m) * 100 for b, m in _by_segment(one, split)]
    else:
        change = (high / low - 1) * 100 if low else math.inf
        spread = [(median(b) / m - 1) * 100 if m else 0.0 for b, m in _by_segment(one, split)]
    return low, high, change, 1.4826 * median([abs(x) for x in spread])


def _change(one: Series, split: Split, q_value: float) -> Change:
    low, high, change, noise = _measure(one, split)
    worse = change > 0 if one.kind == TIME or not one.higher_better else change < 0
    return Change(
        one.key,
        one.label,
        one.model,
        one.metric,
        one.machine,
        one.commits[split.index - 1].commit,
        one.commits[split.index].commit,
        one.commits[split.index].date,
        split.index,
        low,
        high,
        change,
        one.unit,
        noise,
        split.p_value,
        q_value,
        "regression" if worse else "improvement",
    )


def _by_segment(one: Series, split: Split) -> list[tuple[tuple[float, ...], float]]:
    """Each commit's samples beside the median of its side's commit medians."""
    pairs = []
    for start, end in ((split.start, split.index), (split.index, split.end)):
        blocks = one.samples[start:end]
        centre = median(median(b) for b in blocks)
        pairs += [(b, centre) for b in blocks]
    return pairs
