"""The regression rules of ``bench compare``: one metric of one configuration, two measurements,
one verdict.

Timings (raw samples in seconds, better lower). A slowdown is a **regression** when all of:

1. the median is worse by more than the threshold (default 10%; 5% for interleaved rounds);
2. it is statistically clear: a one-sided Mann-Whitney U test on the raw samples at p < 0.01
   (when samples are too few for that test ever to reach 0.01, or were not saved,
   non-overlapping 99% Student-t confidence intervals of the mean); for interleaved rounds, a
   one-sided Wilcoxon signed-rank test on the rounds' log ratios of medians;
3. it is larger than the noise of both sides: either neither side is noisy (IQR/median >
   :data:`NOISE_LIMIT`), or the distributions are separated (the candidate's lower quartile above
   the baseline's upper quartile; for rounds, three rounds in four slower by more than the
   threshold). Noise excuses only a change within it: ``noisy regression (not failed)``, which
   ``strict`` fails too.

Contention (:mod:`harness.measuring.contention`) slows the side it hits, never speeds it up, and
blurs its samples, so a verdict that contention could have produced or hidden is no verdict
(``contended``, exit 3): a slowdown beyond the threshold (regression, noisy or not significant) of a
contended candidate, and anything but a regression over a contended baseline. A regression that
holds although only the baseline was contended stands, and so does an ok or an improvement of a
contended candidate: it was at least that fast. Interleaved rounds in which either side was
contended are dropped in pairs, and the rest decide, if enough remain.

Task metrics, one value per seed, their direction taken from the task recorded in the results
(accuracy and R² higher, RMSE and perplexity lower). Fractions (accuracies) are judged in
percentage points (default threshold 1.0 pp), other metrics relatively (default 5%). A
regression is a change of the mean over seeds in the bad direction beyond the threshold that
also exceeds twice the standard error of the difference of the means,
sqrt(s_b^2/n_b + s_c^2/n_c); a side with a single seed borrows the other side's spread; with one
seed on both sides the threshold alone decides.

Counters (operators, allocations, synchronisations...) are exact: :mod:`harness.comparing.counts`.

Improvements never fail.
"""

from __future__ import annotations

import fnmatch
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harness.errors import BenchError
from harness.measuring.summary import summarize
from harness.reporting.tables import plural

TIME, ACCURACY, SCORE, COUNT = "time", "accuracy", "score", "count"  # COUNT: a step's counter
DEFAULT_THRESHOLDS = {TIME: 0.10, ACCURACY: 1.0, SCORE: 0.05}  # relative; points; relative
INTERLEAVED_THRESHOLD = 0.05  # rounds measured back to back share the machine's drifts
ALPHA = 0.01
NOISE_LIMIT = 0.25
# The exact one-sided signed-rank test on n pairs cannot go below 2**-n: the fewest rounds it needs.
MIN_ROUNDS = math.floor(math.log2(1 / ALPHA)) + 1

REGRESSION = "REGRESSION"
CONTENDED = "contended: no verdict"
NOISY = "noisy regression (not failed)"
UNCLEAR = "not significant"
IMPROVED = "improved"
OK = "ok"
VERDICTS = (REGRESSION, CONTENDED, NOISY, UNCLEAR, IMPROVED, OK)  # most severe first


@dataclass(frozen=True)
class Measurement:
    """One metric of one configuration: raw timing samples in seconds, or one accuracy (a
    fraction) per seed. The statistics summarise them, or come from stored statistics when raw
    samples were not saved. ``rounds`` split the samples of an interleaved measurement by round,
    with ``round_contended`` saying which rounds were contended; ``contended``/``evidence`` say
    whether (and why) the measurement as a whole was."""

    kind: str
    n: int
    mean: float
    std: float
    median: float
    iqr: float
    p25: float = math.nan
    p75: float = math.nan
    samples: tuple[float, ...] = ()
    contended: bool = False
    evidence: str = ""
    rounds: tuple[tuple[float, ...], ...] = ()
    round_contended: tuple[bool, ...] = ()
    higher_better: bool = True  # for task metrics (accuracies by default); timings: lower
    names: tuple[tuple[str, int], ...] = ()  # an operators count's operators, by name

    @classmethod
    def of(cls, kind: str, samples: Sequence[float], **context) -> Measurement:
        s = summarize(samples)
        return cls(
            kind, s.n, s.mean, s.std, s.median, s.iqr, s.p25, s.p75, tuple(samples), **context
        )

    @property
    def relative_iqr(self) -> float:
        """IQR/median; for rounds, the median over rounds of each round's own (a drift between
        rounds is not noise within them)."""
        if self.rounds:
            return statistics.median(_relative_iqr(r) for r in self.rounds)
        return self.iqr / self.median if self.median > 0 else 0.0

    @property
    def noisy(self) -> bool:
        return self.kind == TIME and self.n > 1 and self.relative_iqr > NOISE_LIMIT


def _relative_iqr(samples: Sequence[float]) -> float:
    import numpy as np  # numpy is imported by the verdicts that need it, not by bench ab --help

    p25, p50, p75 = np.percentile(samples, [25, 50, 75])
    return float((p75 - p25) / p50) if p50 > 0 else 0.0


@dataclass(frozen=True)
class Threshold:
    """``[GLOB=]N%`` for timings (relative) or ``[GLOB=]Npp`` for accuracies (points)."""

    glob: str
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        glob, sep, value = text.rpartition("=")
        threshold = cls.of(glob or "*", value) if glob or not sep else None
        if threshold is None:
            raise BenchError(
                f"--threshold '{text}': expected [GLOB=]N% for timings or [GLOB=]Npp for "
                "accuracies, e.g. 10%, 'train_step*=5%' or 0.5pp"
            )
        return threshold

    @classmethod
    def of(cls, glob: str, value: str) -> Threshold | None:
        """``N%`` or ``Npp`` for the metrics ``glob`` matches; None if ``value`` is neither."""
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(%|pp)\s*", value)
        if not match:
            return None
        if match[2] == "%":
            return cls(glob, TIME, float(match[1]) / 100)
        return cls(glob, ACCURACY, float(match[1]))

    def __str__(self) -> str:
        if self.kind == ACCURACY:
            return f"{self.glob}={self.value:g}pp"
        return f"{self.glob}={100 * self.value:g}%"


def default_threshold(kind: str, interleaved: bool = False) -> float:
    return INTERLEAVED_THRESHOLD if interleaved and kind == TIME else DEFAULT_THRESHOLDS[kind]


@dataclass(frozen=True)
class Rules:
    """Thresholds (the last one matching a metric of its kind wins), the metrics to compare
    (globs on the metric name; all when empty), the metrics whose verdicts decide the exit code
    (``gate``: globs; all when empty; the others are reported only), strictness, the
    settings file the rules came from, if one did (:mod:`harness.comparing.settings_file`),
    and the counters' thresholds (:mod:`harness.comparing.counts`)."""

    thresholds: tuple[Threshold, ...] = ()
    metrics: tuple[str, ...] = ()
    strict: bool = False
    gate: tuple[str, ...] = ()
    source: str | None = None
    counters: tuple[Threshold, ...] = ()

    @classmethod
    def parse(
        cls,
        thresholds: Iterable[str],
        metrics: Iterable[str],
        strict: bool,
        gate: Iterable[str] = (),
    ) -> Rules:
        return cls(tuple(map(Threshold.parse, thresholds)), tuple(metrics), strict, tuple(gate))

    def threshold(self, metric: str, kind: str, interleaved: bool = False) -> float:
        """The last matching threshold of the metric's kind: ``N%`` rules for timings and
        relative metrics, ``Npp`` rules for fractions."""
        value = default_threshold(kind, interleaved)
        rule_kind = ACCURACY if kind == ACCURACY else TIME
        for rule in self.thresholds:
            if rule.kind == rule_kind and fnmatch.fnmatchcase(metric, rule.glob):
                value = rule.value
        return value

    def selects(self, metric: str) -> bool:
        return _matches(metric, self.metrics)

    def gates(self, metric: str) -> bool:
        """Whether the metric's verdict counts in the exit code."""
        return _matches(metric, self.gate)


def _matches(metric: str, globs: tuple[str, ...]) -> bool:
    return not globs or any(fnmatch.fnmatchcase(metric, g) for g in globs)


@dataclass(frozen=True)
class Evidence:
    """What the statistics say about one metric: the change (relative for timings, +0.3 = 30%
    slower; percentage points for accuracies, + = better), the harm (the change in the bad
    direction, in the threshold's unit), whether it is clear and beyond the noise, how we
    know, and whether contention leaves the sides untrustworthy."""

    change: float
    harm: float
    clear: bool
    separated: bool
    test: str
    p_value: float | None = None
    base_contended: bool = False
    cand_contended: bool = False


@dataclass(frozen=True)
class Row:
    """One metric of one matched configuration, judged."""

    config: str
    metric: str
    kind: str
    baseline: Measurement
    candidate: Measurement
    change: float
    threshold: float
    test: str
    p_value: float | None
    verdict: str
    paired: bool = False  # judged on interleaved rounds (contended ones dropped in pairs)
    gated: bool = True  # its verdict counts in the exit code (Rules.gate)
    operators: dict[str, int] | None = None  # an operators count's change, by operator

    @property
    def fails(self) -> bool:
        return self.verdict == REGRESSION and self.gated

    @property
    def noisy(self) -> bool:
        return self.baseline.noisy or self.candidate.noisy


def verdict(evidence: Evidence, threshold: float, noisy: bool, strict: bool) -> str:
    """The rules of the module docstring, in order: size, clarity, direction, noise, then
    whether contention could have produced the outcome."""
    if not abs(evidence.harm) > threshold:
        outcome = OK
    elif not evidence.clear:
        outcome = UNCLEAR
    elif evidence.harm < 0:
        outcome = IMPROVED
    elif noisy and not evidence.separated and not strict:
        outcome = NOISY
    else:
        outcome = REGRESSION
    if evidence.cand_contended and evidence.harm > 0 and outcome in (REGRESSION, NOISY, UNCLEAR):
        return CONTENDED  # slowed, or blurred, by contention: it could be the machine
    if evidence.base_contended and outcome != REGRESSION:
        return CONTENDED  # an inflated baseline can hide a slower candidate
    return outcome


def judge(
    config: str,
    metric: str,
    base: Measurement,
    cand: Measurement,
    rules: Rules,
    *,
    interleaved: bool = False,
) -> Row:
    """Compare one metric of one configuration under ``rules``; ``interleaved``: the two sides
    were measured in alternating rounds of one session, so rounds are paired."""
    paired = bool(interleaved and base.rounds and len(base.rounds) == len(cand.rounds))
    threshold = rules.threshold(metric, base.kind, interleaved=paired)
    if base.kind != TIME:
        evidence = seed_evidence(base, cand)
    elif paired:
        evidence = paired_time_evidence(base, cand, threshold)
    else:
        evidence = time_evidence(base, cand)
    outcome = verdict(evidence, threshold, base.noisy or cand.noisy, rules.strict)
    return Row(
        config,
        metric,
        base.kind,
        base,
        cand,
        evidence.change,
        threshold,
        evidence.test,
        evidence.p_value,
        outcome,
        paired,
        rules.gates(metric),
    )


def time_evidence(base: Measurement, cand: Measurement) -> Evidence:
    """Two independent measurements: relative change of the median, and the test of it."""
    change = pooled_change(base, cand)
    slower = change > 0
    clear, test, p = time_test(base, cand, slower)
    separated = cand.p25 > base.p75 if slower else cand.p75 < base.p25
    return Evidence(change, change, clear, separated, test, p, base.contended, cand.contended)


def time_test(base: Measurement, cand: Measurement, slower: bool) -> tuple[bool, str, float | None]:
    """Whether the candidate is clearly slower (``slower``) or clearly faster, and how we know."""
    counts = f"n={base.n}/{cand.n}"
    if base.samples and cand.samples and _test_can_reach_alpha(base.n, cand.n):
        alternative = "greater" if slower else "less"
        from scipy import stats  # 1 s to import: only when a verdict is tested

        p = float(stats.mannwhitneyu(cand.samples, base.samples, alternative=alternative).pvalue)
        return p < ALPHA, f"p={p:.2g} (Mann-Whitney U, {counts})", p
    if base.n < 2 or cand.n < 2:
        return False, f"too few samples ({counts})", None
    (b_low, b_high), (c_low, c_high) = _interval(base), _interval(cand)
    clear = c_low > b_high if slower else c_high < b_low
    return clear, f"99% CIs {'disjoint' if clear else 'overlap'} ({counts})", None


def _test_can_reach_alpha(n1: int, n2: int) -> bool:
    """The smallest one-sided p-value of the exact test, without ties, is 1 / C(n1 + n2, n1)."""
    return math.comb(n1 + n2, n1) > 1 / ALPHA  # exact: an int compared with a float


def _interval(m: Measurement) -> tuple[float, float]:
    """The 99% Student-t confidence interval of the mean."""
    from scipy import stats

    half = float(stats.t.ppf(1 - ALPHA / 2, m.n - 1)) * m.std / math.sqrt(m.n)
    return m.mean - half, m.mean + half


def paired_time_evidence(base: Measurement, cand: Measurement, threshold: float) -> Evidence:
    """Interleaved rounds: each round's candidate median over its baseline median, measured
    back to back, so a drift of the machine between rounds cancels. Rounds in which either side
    was contended are dropped in pairs; the change is the median ratio of the rest."""
    flags = list(zip(_flags(base), _flags(cand), strict=True))
    clean = [i for i, (b, c) in enumerate(flags) if not (b or c)]
    dropped = len(flags) - len(clean)
    note = f", {plural(dropped, 'contended round')} dropped" if dropped else ""
    if len(clean) < MIN_ROUNDS:
        test = f"{len(clean)} clean of {len(flags)} interleaved rounds, {MIN_ROUNDS} needed{note}"
        change, contended = pooled_change(base, cand), dropped > 0
        return Evidence(change, change, False, False, test, None, contended, contended)
    import numpy as np

    logs = np.log(
        [statistics.median(cand.rounds[i]) / statistics.median(base.rounds[i]) for i in clean]
    )
    change = float(np.exp(np.median(logs))) - 1
    slower = change > 0
    if np.all(logs == 0):
        p = 1.0
    else:
        from scipy import stats

        p = float(stats.wilcoxon(logs, alternative="greater" if slower else "less").pvalue)
    limit = math.log1p(threshold)
    q25, q75 = np.percentile(logs, [25, 75])
    separated = q25 > limit if slower else q75 < -limit
    test = f"p={p:.2g} (Wilcoxon signed-rank, {len(clean)} interleaved rounds{note})"
    return Evidence(change, change, p < ALPHA, bool(separated), test, p)


def _flags(m: Measurement) -> tuple[bool, ...]:
    return m.round_contended or (False,) * len(m.rounds)


def pooled_change(base: Measurement, cand: Measurement) -> float:
    """The relative change of the median of all samples: the change of two independent
    measurements, and what the medians a table shows say of interleaved ones."""
    return cand.median / base.median - 1 if base.median > 0 else math.inf


def seed_evidence(base: Measurement, cand: Measurement) -> Evidence:
    """Change of the mean over seeds, in percentage points for fractions, relative otherwise
    (+: the value grew), harmful against the metric's direction, clear beyond two standard
    errors of the difference."""
    scale = 100.0 if base.kind == ACCURACY else 1 / abs(base.mean) if base.mean else math.inf
    change = scale * (cand.mean - base.mean)
    base_std = base.std if base.n > 1 else cand.std  # one seed: the other side's spread
    cand_std = cand.std if cand.n > 1 else base.std
    margin = 2 * scale * math.sqrt(base_std**2 / base.n + cand_std**2 / cand.n)
    harm = -change if base.higher_better else change
    seeds = f"seeds {base.n}/{cand.n}"
    unit = " pp" if base.kind == ACCURACY else "%"
    shown = margin if base.kind == ACCURACY else 100 * margin
    test = f"2·SE {shown:.2f}{unit} ({seeds})" if margin else f"threshold only ({seeds})"
    return Evidence(change, harm, abs(change) > margin, True, test)
