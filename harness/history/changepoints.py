"""Change points in a series of commits, each holding its raw samples: E-Divisive means with a
seeded block-permutation test, and the Benjamini-Hochberg correction across many tests.

E-Divisive means (Matteson and James, 2014; the method of Apache Otava and MongoDB's signal
processing) splits a series where the energy distance between the two sides is largest:
``Q = nL nR / (nL + nR) * (2 E|X - Y| - E|X - X'| - E|Y - Y'|)``, X from the left, Y from the
right. It needs no distribution and sees a change of spread as well as of level.

Here each point of the series is a commit with many samples (a timing's repeats, or one accuracy
per seed). Distances use every sample; sides are weighted by commit, not by sample count. The
significance test permutes whole commits, never single samples: samples of one commit share that
run's machine state, so shuffling them across commits would make ordinary run-to-run variation
look like a change. The p-value accounts for the choice of split because each permutation is
split at its own best place too. Permutations stop early (Besag and Clifford, 1991) once
:data:`EXCEEDANCES` of them beat the observed statistic: a clearly unchanged series costs a few
dozen, a real change all of them. The generator is seeded, so results repeat exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXCEEDANCES = 10  # permutations at least as extreme as observed before the test stops early
BATCH = 100  # permutations evaluated at once


@dataclass(frozen=True)
class Split:
    """The best split of ``blocks[start:end]`` at ``index`` (the first commit after it), and
    the permutation p-value of its statistic."""

    start: int
    index: int
    end: int
    statistic: float
    p_value: float
    permutations: int


def distances(blocks: Sequence[Sequence[float]]) -> np.ndarray:
    """``D[a, b]``: the mean absolute difference between a sample of commit a and one of b."""
    arrays = [np.asarray(block, dtype=float) for block in blocks]
    n = len(arrays)
    matrix = np.zeros((n, n))
    for a in range(n):
        for b in range(a, n):
            value = float(np.abs(arrays[a][:, None] - arrays[b][None, :]).mean())
            matrix[a, b] = matrix[b, a] = value
    return matrix


def best_splits(matrix: np.ndarray, min_size: int) -> tuple[np.ndarray, np.ndarray]:
    """For a stack of distance matrices ``(k, n, n)``: each one's largest statistic and where."""
    k, n, _ = matrix.shape
    prefix = np.zeros((k, n + 1, n + 1))
    prefix[:, 1:, 1:] = matrix.cumsum(axis=1).cumsum(axis=2)
    taus = np.arange(min_size, n - min_size + 1)
    left, right = taus.astype(float), (n - taus).astype(float)
    total = prefix[:, n, n][:, None]
    within_left = prefix[:, taus, taus]
    corner = prefix[:, taus, n]  # rows of the left side, every column
    between = corner - within_left
    within_right = total - 2 * corner + within_left
    energy = 2 * between / (left * right) - within_left / left**2 - within_right / right**2
    statistic = left * right / n * energy
    best = statistic.argmax(axis=1)
    return statistic[np.arange(k), best], taus[best]


def tested_split(
    matrix: np.ndarray,
    start: int,
    end: int,
    rng: np.random.Generator,
    permutations: int,
    min_size: int = 2,
) -> Split | None:
    """The best split of commits ``start:end`` and its p-value; None if it is too short."""
    n = end - start
    if n < 2 * min_size:
        return None
    segment = matrix[start:end, start:end]
    observed, tau = best_splits(segment[None], min_size)
    observed, tau = float(observed[0]), int(tau[0])
    beaten, done = 0, 0
    while done < permutations and beaten < EXCEEDANCES:
        size = min(BATCH, permutations - done)
        orders = np.argsort(rng.random((size, n)), axis=1)
        shuffled = segment[orders[:, :, None], orders[:, None, :]]
        statistics, _ = best_splits(shuffled, min_size)
        exceed = np.flatnonzero(statistics >= observed * (1 - 1e-12))
        if beaten + len(exceed) >= EXCEEDANCES:  # stop at the permutation that reached it
            done += int(exceed[EXCEEDANCES - beaten - 1]) + 1
            beaten = EXCEEDANCES
            break
        beaten += len(exceed)
        done += size
    p_value = beaten / done if beaten >= EXCEEDANCES else (beaten + 1) / (done + 1)
    return Split(start, start + tau, end, observed, p_value, done)


def find_splits(
    blocks: Sequence[Sequence[float]],
    seed: int,
    permutations: int,
    alpha: float,
    min_size: int = 2,
) -> list[Split]:
    """Every test made while bisecting the series: each segment's best split is tested, and a
    split with ``p <= alpha`` is kept and both its sides are tested in turn. The caller decides
    which to accept (after correcting across series); all tests are returned for that."""
    matrix = distances(blocks)
    rng = np.random.default_rng(seed)
    tests, pending = [], [(0, len(blocks))]
    while pending:
        start, end = pending.pop(0)
        split = tested_split(matrix, start, end, rng, permutations, min_size)
        if split is None:
            continue
        tests.append(split)
        if split.p_value <= alpha:
            pending += [(start, split.index), (split.index, end)]
    return tests


def adjusted(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (Benjamini and Hochberg, 1995): rejecting where
    ``adjusted <= q`` keeps the expected share of false discoveries among the rejections at
    most ``q``, however many series were tested."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    result, smallest = [1.0] * m, 1.0
    for position, i in enumerate(order):
        rank = m - position
        smallest = min(smallest, p_values[i] * m / rank)
        result[i] = smallest
    return result
