"""``bench history detect``: the commits where a series changed, beyond its noise, after
correcting for how many series were tested.

For every series (see :mod:`harness.history.archive`) with enough commits, E-Divisive means
(:mod:`harness.history.changepoints`) bisects the commits, testing each split with a seeded
permutation test. Every p-value from every series tested in the call goes through one
Benjamini-Hochberg correction at ``q``. A split is reported when its adjusted p-value is at most
``q`` *and* its effect is at least the larger of ``min_effect`` (percent; ``min_effect_pp``
percentage points for accuracies) and the series' noise: the
robust spread (1.4826 MAD) of its commits' medians around their segment's median, so a change no
larger than what commits of unchanged code already differ by is never reported.

Timings change in percent of the earlier median; accuracies (fractions) in percentage points.
The direction comes from the metric: a timing that grew, or a task metric that moved the wrong
way for its task (accuracy down, RMSE up), is a ``regression``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from harness.comparing.verdicts import ACCURACY, TIME
from harness.errors import BenchError
from harness.history.archive import Entry, Point
from harness.history.changepoints import adjusted, find_splits

PERMUTATIONS_MIN = 999
MIN_COMMITS = 4  # two on each side of a change


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


@dataclass
class Detection:
    changes: list[Change]
    series_tested: int
    tests: int
    q: float
    min_effect: float
    min_effect_pp: float
    permutations: int
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
            "permutations": self.permutations,
            "series_tested": self.series_tested,
            "tests": self.tests,
            "changes": [asdict(c) for c in self.changes],
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


def detect(
    series: Sequence[Series],
    q: float = 0.05,
    min_effect: float = 2.0,
    min_effect_pp: float = 0.5,
    permutations: int | None = None,
    seed: int = 0,
) -> Detection:
    """Change points of every series, corrected across all of them.

    ``min_effect``: percent, for timings and other scores; ``min_effect_pp``: percentage
    points, for accuracies.
    ``permutations`` per test: by default enough that the smallest possible p-value can pass
    the correction with every series tested (at least :data:`PERMUTATIONS_MIN`)."""
    if not 0 < q < 1:
        raise BenchError(f"--q must be between 0 and 1, not {q}")
    testable = [s for s in series if len(s.commits) >= MIN_COMMITS]
    skipped = [f"{s.label} {s.metric}" for s in series if len(s.commits) < MIN_COMMITS]
    count = permutations or max(PERMUTATIONS_MIN, math.ceil(4 * max(len(testable), 1) / q))
    found = []
    for one in testable:
        for split in find_splits(one.samples, _seed(seed, one.key), count, alpha=q):
            found.append((one, split))
    q_values = adjusted([split.p_value for _, split in found])
    changes = []
    for (one, split), q_value in zip(found, q_values, strict=True):
        if q_value > q:
            continue
        change = _change(one, split, q_value)
        floor = min_effect_pp if one.kind == ACCURACY else min_effect
        if abs(change.change) >= max(floor, change.noise):
            changes.append(change)
    changes.sort(key=lambda c: c.label)
    changes.sort(key=lambda c: c.after_date, reverse=True)  # the latest first,
    changes.sort(key=lambda c: c.direction != "regression")  # regressions before improvements
    floors = (min_effect, min_effect_pp)
    return Detection(changes, len(testable), len(found), q, *floors, count, skipped)


def _seed(seed: int, key: str) -> int:
    """Each series its own stream, the same in every call whatever else is tested."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "little")


def _change(one: Series, split, q_value: float) -> Change:
    before = [x for block in one.samples[split.start : split.index] for x in block]
    after = [x for block in one.samples[split.index : split.end] for x in block]
    low, high = median(before), median(after)
    if one.kind == ACCURACY:
        change = (high - low) * 100
        spread = [(median(b) - m) * 100 for b, m in _by_segment(one, split)]
    else:
        change = (high / low - 1) * 100 if low else math.inf
        spread = [(median(b) / m - 1) * 100 if m else 0.0 for b, m in _by_segment(one, split)]
    noise = 1.4826 * median([abs(x) for x in spread])
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


def _by_segment(one: Series, split) -> list[tuple[tuple[float, ...], float]]:
    """Each commit's samples beside the median of its side's commit medians."""
    pairs = []
    for start, end in ((split.start, split.index), (split.index, split.end)):
        blocks = one.samples[start:end]
        centre = median(median(b) for b in blocks)
        pairs += [(b, centre) for b in blocks]
    return pairs
