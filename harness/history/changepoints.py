"""Change points in a series of commits, each holding its raw samples, found in two steps as
Apache Otava finds them (Fleming et al., 2023, "Hunter: Using Change Point Detection to Hunt
for Performance Regressions"), and the Benjamini-Hochberg correction across many tests.

1. **Split.** E-Divisive means (Matteson and James, 2014) splits the commits where the energy
   distance between the two sides is largest, ``Q = nL nR / (nL + nR) * (2 E|X - Y| -
   E|X - X'| - E|Y - Y'|)``, X from the left and Y from the right: distances use every sample,
   sides are weighted by commit, and no distribution is assumed. While a segment holds a change
   (:func:`screened`, at a relaxed level), both its sides are split again; every split made is
   a candidate.
2. **Merge.** Each candidate is tested on the commits between its neighbouring candidates, not
   on the longer segment where it was found, which may hold another change that dilutes its
   size and inflates its noise. The weakest (the largest p-value above the threshold, else the
   smallest effect under its floor) is dropped and its neighbours tested again, until every
   candidate left holds.

**The test** is Student's t-test of the two sides' per-commit medians. The commit is the unit,
never the sample: samples of one commit share that run's machine state, so a test on samples
would make ordinary run-to-run variation look like a change. The two-sided p-value is multiplied
by the number of places the segment could have been split (Bonferroni), since the split was
chosen where the sides differ most. A permutation test of whole commits, used before, cannot
give a p-value below one over the number of distinct ways to split the commits (8 commits with
2 after a change: 2/28, before any correction), so a short history could never show a change,
however large; the t-test reads the noise from the commits themselves and assumes their medians
are roughly normal, which a median of many samples, or of several runs pooled, is. It draws
nothing at random: the same data give the same answer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

MIN_SIZE = 2  # commits on each side of a split: with fewer, a side has no spread to test
POWER = 0.8  # the chance of finding a change that commits_needed plans for
MOST_NEEDED = 1000  # commits_needed looks no further


@dataclass(frozen=True)
class Split:
    """The commits ``start:end`` split at ``index`` (the first commit after it), tested."""

    start: int
    index: int
    end: int
    difference: float  # mean commit median after, less before
    spread: float  # pooled standard deviation of the commit medians within each side
    p_value: float  # two-sided, times the places the segment could have been split


def distances(blocks: Sequence[Sequence[float]]) -> np.ndarray:
    """``D[a, b]``: the mean absolute difference between a sample of commit a and one of b.

    For each commit ``a``, sorted with running sums, ``sum |x - y|`` over its samples ``x`` for
    every sample ``y`` of the series at once, then summed by commit: O(N n log N) for N
    samples in n commits, not O(N^2)."""
    arrays = [np.sort(np.asarray(block, dtype=float)) for block in blocks]
    sizes = np.array([len(array) for array in arrays])
    every = np.concatenate(arrays)
    owner = np.repeat(np.arange(len(arrays)), sizes)
    matrix = np.empty((len(arrays), len(arrays)))
    for a, x in enumerate(arrays):
        below = np.searchsorted(x, every)
        sums = np.concatenate(([0.0], np.cumsum(x)))
        total = below * every - sums[below] + (sums[-1] - sums[below]) - (len(x) - below) * every
        matrix[a] = np.bincount(owner, weights=total, minlength=len(arrays)) / (len(x) * sizes)
    return (matrix + matrix.T) / 2  # the same sums both ways, but for rounding


def best_split(matrix: np.ndarray) -> int:
    """Where the energy statistic of a distance matrix's commits is largest: the number of
    commits left of the split."""
    n = len(matrix)
    prefix = np.zeros((n + 1, n + 1))
    prefix[1:, 1:] = matrix.cumsum(axis=0).cumsum(axis=1)
    taus = np.arange(MIN_SIZE, n - MIN_SIZE + 1)
    left, right = taus.astype(float), (n - taus).astype(float)
    within_left = prefix[taus, taus]
    corner = prefix[taus, n]  # rows of the left side, every column
    between = corner - within_left
    within_right = prefix[n, n] - 2 * corner + within_left
    energy = 2 * between / (left * right) - within_left / left**2 - within_right / right**2
    return int(taus[(left * right / n * energy).argmax()])


def candidates(
    matrix: np.ndarray, values: Sequence[float], screen: float
) -> tuple[dict[int, float], int]:
    """E-Divisive's bisection, screened: each segment is split at its best place, and both sides
    split again, while :func:`screened` finds a change in it at ``screen``. Every split made,
    with the p-value it was screened at, and the number of segments screened (each a
    hypothesis that the segment holds a change)."""
    values = np.asarray(values, dtype=float)
    found, pending, screened_count = {}, [(0, len(matrix))], 0
    while pending:
        start, end = pending.pop()
        index = _best_in(matrix, start, end)
        if index is None:
            continue
        p_value = screened(matrix, values, start, index, end)
        screened_count += 1
        if p_value <= screen:
            found[index] = p_value
            pending += [(start, index), (index, end)]
    return dict(sorted(found.items())), screened_count


def screened(matrix: np.ndarray, values: np.ndarray, start: int, index: int, end: int) -> float:
    """Whether commits ``start:end``, best split at ``index``, hold a change: the smallest
    p-value of that split and of the best split of each side, each on its own segment, times
    the number taken. Looking one level down finds a change that returns: commits 20-29 of 60
    up 8% split best at 30, where the side holding them is too uneven for the test to pass, but
    their side splits clearly at 20."""
    p_values = []
    for a, i, b in ((start, index, end), *_sides(matrix, start, index, end)):
        p_values.append(between_neighbours(values[a:b], [i - a])[0].p_value)
    return min(1.0, min(p_values) * len(p_values))


def _sides(matrix: np.ndarray, start: int, index: int, end: int) -> list[tuple[int, int, int]]:
    """Each side of a split that can be split, with its best split."""
    sides = [(a, _best_in(matrix, a, b), b) for a, b in ((start, index), (index, end))]
    return [side for side in sides if side[1] is not None]


def _best_in(matrix: np.ndarray, start: int, end: int) -> int | None:
    """The best split of commits ``start:end``, if it is long enough to split."""
    if end - start < 2 * MIN_SIZE:
        return None
    return start + best_split(matrix[start:end, start:end])


def between_neighbours(values: Sequence[float], indices: Sequence[int]) -> list[Split]:
    """Each change point of ``indices`` (sorted) tested on the commits between its neighbours:
    Student's t-test of the commit medians on its two sides, the p-value corrected for the
    choice among the places that segment could have been split. Sums come from running sums of
    the values less their mean; what rounding leaves of a difference or a spread is none."""
    values = np.asarray(values, dtype=float)
    tiny = 1e-9 * (np.abs(values).max() or 1.0)
    centred = values - values.mean()
    sums = np.concatenate(([0.0], np.cumsum(centred)))
    squares = np.concatenate(([0.0], np.cumsum(centred**2)))
    bounds = np.array([0, *indices, len(values)])
    counts = np.diff(bounds).astype(float)
    totals = np.diff(sums[bounds])
    within = np.diff(squares[bounds]) - totals**2 / counts  # each segment's sum of squares
    freedom = counts[:-1] + counts[1:] - 2
    spread = np.sqrt(np.clip(within[:-1] + within[1:], 0, None) / freedom)
    spread[spread < tiny] = 0.0
    difference = np.diff(totals / counts)
    difference[np.abs(difference) < tiny] = 0.0
    error = spread * np.sqrt(1 / counts[:-1] + 1 / counts[1:])
    with np.errstate(divide="ignore", invalid="ignore"):  # no spread: certain, or no change
        t = np.where(error > 0, np.abs(difference) / error, np.where(difference, np.inf, 0.0))
    places = bounds[2:] - bounds[:-2] - 2 * MIN_SIZE + 1
    p_values = np.minimum(1.0, 2 * stats.t.sf(t, freedom) * places)
    return [
        Split(*map(int, bounds[i : i + 3]), float(d), float(s), float(p))
        for i, (d, s, p) in enumerate(zip(difference, spread, p_values, strict=True))
    ]


def merge(
    values: Sequence[float],
    found: dict[int, float],
    threshold: float,
    strength: Callable[[Split], float],
) -> list[Split]:
    """The candidates that hold, each tested between its neighbours: while one has a p-value
    above ``threshold`` (else while one's ``strength``, its effect over the smallest effect
    worth reporting, is below 1), the weakest is dropped and its neighbours tested again.

    A candidate's p-value is never taken below the one it was found with (``found``: candidate
    and p-value): between two close neighbours, a split that was picked as the best of many
    places would count as picked among few, and a short stretch of noise pass for a change."""
    indices = list(found)
    while indices:
        splits = [
            replace(split, p_value=max(split.p_value, found[split.index]))
            for split in between_neighbours(values, indices)
        ]
        weakest = max(splits, key=lambda split: split.p_value)
        if weakest.p_value <= threshold:
            weakest = min(splits, key=strength)
            if strength(weakest) >= 1:
                return splits
        indices.remove(weakest.index)
    return []


def commits_needed(split: Split, commits: int, threshold: float) -> int | None:
    """How many commits must follow a change of ``split``'s size, after ``commits`` commits with
    its noise, for the test to find it (p <= ``threshold``) with probability :data:`POWER`:
    the non-central t distribution of the statistic (Student's power calculation), with the
    correction for the choice of split. None beyond :data:`MOST_NEEDED` or without a change."""
    if split.difference == 0:
        return None
    if split.spread == 0:
        return MIN_SIZE
    after = np.arange(MIN_SIZE, MOST_NEEDED + 1)
    freedom = commits + after - 2
    places = commits + after - 2 * MIN_SIZE + 1
    critical = stats.t.isf(threshold / places / 2, freedom)
    shift = abs(split.difference) / (split.spread * np.sqrt(1 / commits + 1 / after))
    enough = np.flatnonzero(stats.nct.sf(critical, freedom, shift) >= POWER)
    return int(after[enough[0]]) if len(enough) else None


def adjusted(p_values: Sequence[float], hypotheses: int | None = None) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (Benjamini and Hochberg, 1995): rejecting where
    ``adjusted <= q`` keeps the expected share of false discoveries among the rejections at
    most ``q``, however many series were tested. ``hypotheses``: how many were tested, if more
    than the p-values given (the others' are taken as 1: none of them is rejected)."""
    m = max(len(p_values), hypotheses or 0)
    order = sorted(range(len(p_values)), key=lambda i: p_values[i], reverse=True)
    result, smallest = [1.0] * len(p_values), 1.0
    for position, i in enumerate(order):
        rank = len(p_values) - position
        smallest = min(smallest, p_values[i] * m / rank)
        result[i] = smallest
    return result
