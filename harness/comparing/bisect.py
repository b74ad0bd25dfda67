"""``bench bisect``: the first bad commit between a good and a bad revision, found by sessions of
``bench ab`` against the good revision.

The commits after ``good`` up to ``bad`` (``git rev-list --ancestry-path``, oldest first; ``bad``
last) are searched in halves. The first session measures ``bad`` against ``good``: unless that
is a regression there is nothing to find. Each later session measures the commit halfway
between the last commit known good and the first known bad against ``good``: a regression makes
it the first known bad, a clean pass the last known good. k commits take at most
ceil(log2 k) + 1 sessions.

A step decides only on a clear verdict. A session that exits 3 (contended, a failed run), or
passes while a change beyond the threshold was not significant or within its noise, stops the
search with "no verdict" at that commit and the range left, never a guessed culprit. Each step
records how sure it was: the rows that decided, with their change and p-value (counters:
exact).

``counters`` bisects on the counters alone (operators, allocations, syncs...), which are exact:
each session measures each side in one round, one measurement of each commit.
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.comparing.matching import Comparison
from harness.comparing.output import change_text, summary
from harness.comparing.verdicts import NOISY, REGRESSION, UNCLEAR
from harness.errors import BenchError

BAD, GOOD, NO_VERDICT = "bad", "good", "no verdict"


@dataclass(frozen=True)
class Step:
    """One session: the commit measured against the good revision, and what it decided."""

    commit: str
    verdict: str  # BAD, GOOD or NO_VERDICT
    evidence: str  # the verdict line and the rows that decided it, with their changes
    out_dir: Path | None = None


@dataclass
class Bisection:
    good: str
    bad: str
    commits: list[str]  # oldest first; the bad revision last
    steps: list[Step] = field(default_factory=list)
    culprit: str | None = None
    reason: str = ""  # why there is no culprit

    @property
    def most_sessions(self) -> int:
        return most_sessions(len(self.commits))

    def to_json(self) -> dict:
        return {
            "good": self.good,
            "bad": self.bad,
            "commits": self.commits,
            "culprit": self.culprit,
            "verdict": "found" if self.culprit else NO_VERDICT,
            "reason": self.reason,
            "sessions": len(self.steps),
            "most_sessions": self.most_sessions,
            "steps": [
                {"commit": s.commit, "verdict": s.verdict, "evidence": s.evidence,
                 "out": str(s.out_dir) if s.out_dir else None}
                for s in self.steps
            ],
        }  # fmt: skip


def most_sessions(commits: int) -> int:
    """The sessions a search of ``commits`` takes at most: one to confirm, then halving."""
    return math.ceil(math.log2(commits)) + 1 if commits else 0


def commits_between(good: str, bad: str) -> list[str]:
    """The commits after ``good`` up to ``bad`` on the path between them, oldest first
    (``good`` and ``bad`` as :func:`~harness.comparing.ab.revisions.revision_commit` finds them)."""
    path = ["git", "rev-list", "--ancestry-path", "--reverse", f"{good}..{bad}"]
    found = subprocess.run(path, capture_output=True, text=True).stdout.split()
    if not found:
        raise BenchError(
            f"no commits after {good[:12]} up to {bad[:12]}: the good revision must be an "
            "ancestor of the bad one"
        )
    return found


def search(good: str, bad: str, commits: Sequence[str], judge: Callable[[str], Step]) -> Bisection:
    """Halve ``commits`` (after ``good``, ``bad`` last) by ``judge(commit)``, a session of that
    commit against ``good``: the first bad commit, or why there is none."""
    found = Bisection(good, bad, list(commits))
    first = judge(commits[-1])
    found.steps.append(first)
    if first.verdict != BAD:
        found.reason = (
            f"{bad[:12]} is not clearly worse than {good[:12]} ({first.evidence}): nothing to find"
        )
        return found
    low, high = -1, len(commits) - 1  # the last known good (-1: good itself), first known bad
    while high - low > 1:
        middle = (low + high) // 2
        step = judge(commits[middle])
        found.steps.append(step)
        if step.verdict == NO_VERDICT:
            left = f"{(commits[low] if low >= 0 else good)[:12]}..{commits[high][:12]}"
            found.reason = (
                f"no verdict at {commits[middle][:12]} ({step.evidence}); the culprit is in {left}"
            )
            return found
        if step.verdict == BAD:
            high = middle
        else:
            low = middle
    found.culprit = commits[high]
    return found


def step_verdict(comparison: Comparison) -> tuple[str, str]:
    """A session's decision, and its evidence: bad on a regression; good on a pass that left
    nothing beyond a threshold unclear; otherwise no verdict."""
    decided = [row for row in comparison.rows if row.gated]
    unclear = [row for row in decided if row.verdict in (UNCLEAR, NOISY)]
    if comparison.exit_code == 1:
        verdict, shown = BAD, [row for row in decided if row.verdict == REGRESSION]
    elif comparison.exit_code == 0 and not unclear:
        verdict, shown = GOOD, []
    else:
        verdict, shown = NO_VERDICT, unclear
    rows = "; ".join(f"{r.config} {r.metric} {change_text(r)}, {r.test}" for r in shown[:3])
    return verdict, summary(comparison) + (f": {rows}" if rows else "")
