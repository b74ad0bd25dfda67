"""``bench compare``: did the candidate get slower or less accurate than the baseline, beyond noise?

Matching. Runs are matched by configuration: the run's ``procedure`` and ``config`` (model,
dataset, their options, training settings, batch size, device, ...) without its ``seed`` (and the
``name`` derived from it). Runs of one configuration with different seeds are pooled: their
timing samples together, their accuracies as one value per seed. Configurations found in only one
file are listed, never compared; failed runs are listed and make the comparison incomplete.
pytest-benchmark files are matched by each benchmark's ``fullname`` and, when its ``extra_info``
records them (``benchmarks/test_model_speed.py`` does), its batch size, input shape and device:
a run with another ``BENCH_BATCH_SIZE`` is listed as unmatched, not compared.

Metrics and their direction. Timing records (a metric holding raw ``samples`` in seconds:
``forward``, ``forward_backward``, ``train_step``, ``epoch``, pruning's ``latency``, every
pytest-benchmark benchmark) are better lower; fractions named ``*accuracy*`` are better higher.
Everything else (counts, FLOPs, memory, histories) is not compared.

Timings. A regression is a median worse by more than the threshold (default 10%) that is also
statistically clear: a one-sided Mann-Whitney U test on the raw samples with p < 0.01; when the
samples are too few for that test ever to reach p < 0.01 (1 / C(n1 + n2, n1) >= 0.01, e.g. 4 and 4)
or were not saved (pytest-benchmark without ``--benchmark-save-data``), non-overlapping 99%
Student-t confidence intervals of the mean; with fewer than two samples a side, nothing is clear.
A measurement with IQR/median > 25% on either side is noisy: its regression is reported, not
failed, unless ``strict``. (The 10% noisy flag of the results files is for reading a table; at
that level most CPU timings on a shared machine could never fail.)

Accuracies. A regression is a drop of the mean over seeds by more than the threshold (default
1.0 percentage points) that also exceeds twice the standard error of the difference of the
means, sqrt(s_b^2/n_b + s_c^2/n_c) from the seeds' sample standard deviations; a side with a
single seed has no spread of its own and borrows the other side's (the same training, only the
code differs); with one seed on both sides the spread is unknown and the threshold alone decides.

Improvements never fail. Different machines, devices, thread counts or software (torch, CUDA)
are reported; with ``strict`` they make the comparison invalid (exit 3).

Exit codes: 0 no regression; 1 a regression; 3 nothing comparable, a failed run or an unfinished
file (and, strict, different machines); usage errors (2) are raised as :class:`BenchError`.
"""

from __future__ import annotations

import collections
import fnmatch
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scipy import stats

from harness.options import BenchError
from harness.report import markdown_table
from harness.results import load_results
from harness.stats import summarize

TIME, ACCURACY = "time", "accuracy"
DEFAULT_THRESHOLDS = {TIME: 0.10, ACCURACY: 1.0}  # relative; percentage points
ALPHA = 0.01
NOISE_LIMIT = 0.25
MACHINE_FIELDS = ("hostname", "cpu", "device", "device_name", "threads", "torch", "cuda")
NOT_CONFIGURATION = ("seed", "name")

REGRESSION = "REGRESSION"
NOISY = "noisy regression (not failed)"
UNCLEAR = "not significant"
IMPROVED = "improved"
OK = "ok"
VERDICTS = (REGRESSION, NOISY, UNCLEAR, IMPROVED, OK)  # most severe first


@dataclass(frozen=True)
class Measurement:
    """One metric of one configuration: raw timing samples in seconds, or one accuracy (a
    fraction) per seed. The statistics summarise them, or come from stored statistics when raw
    samples were not saved."""

    kind: str
    n: int
    mean: float
    std: float
    median: float
    iqr: float
    samples: tuple[float, ...] = ()

    @classmethod
    def of(cls, kind: str, samples: Sequence[float]) -> Measurement:
        s = summarize(samples)
        return cls(kind, s.n, s.mean, s.std, s.median, s.iqr, tuple(samples))

    @property
    def noisy(self) -> bool:
        return self.kind == TIME and self.median > 0 and self.iqr / self.median > NOISE_LIMIT


@dataclass(frozen=True)
class Config:
    """The runs of one configuration in one file: a readable label and their metrics."""

    label: str
    config: dict[str, Any]
    metrics: dict[str, Measurement]
    title: str = ""  # how lists of unmatched configurations name it (default: the label)

    @property
    def name(self) -> str:
        return self.title or self.label


@dataclass(frozen=True)
class ResultSet:
    """One side of a comparison, read from a bench results file or a pytest-benchmark file."""

    path: Path
    format: str
    environment: dict[str, Any]
    configs: dict[str, Config]  # by match key
    problems: list[str] = field(default_factory=list)  # failed runs, unfinished file


def load_result_set(path: Path | str) -> ResultSet:
    """Read either kind of file; anything else is a usage error (:class:`BenchError`)."""
    path = Path(path)
    data = _pytest_benchmark_document(path)
    if data is not None:
        return _from_pytest_benchmark(path, data)
    return _from_bench(path, load_results(path))


def _pytest_benchmark_document(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None  # load_results explains what is wrong with the file
    if isinstance(data, dict) and isinstance(data.get("benchmarks"), list):
        return data
    return None


def _from_bench(path: Path, data: dict[str, Any]) -> ResultSet:
    problems, groups = [], collections.defaultdict(list)
    if data.get("status") != "complete":
        note = f" ({data['note']})" if data.get("note") else ""
        problems.append(f"{path}: the file is '{data.get('status')}', not complete{note}")
    for run in data["runs"]:
        if run["status"] == "ok":
            groups[match_key(run)].append(run)
        else:
            problems.append(f"{path}: run {run['id']} {run['status']}: {run.get('error') or ''}")
    configs = {
        key: Config(_label(runs[0]), runs[0]["config"], _metrics(runs))
        for key, runs in groups.items()
    }
    return ResultSet(path, "bench", data.get("environment") or {}, configs, problems)


def match_key(run: dict[str, Any]) -> str:
    """What must be equal for two runs to be compared: procedure and configuration, no seed."""
    config = {k: v for k, v in run["config"].items() if k not in NOT_CONFIGURATION}
    return json.dumps({"procedure": run.get("procedure"), **config}, sort_keys=True, default=str)


def _label(run: dict[str, Any]) -> str:
    config = run["config"]
    return re.sub(rf"-s{config.get('seed')}$", "", config.get("name") or run["id"])


def metric_kind(name: str, value: Any) -> str | None:
    """``time`` for timing records (raw ``samples`` in seconds), ``accuracy`` for numbers named
    ``*accuracy*``, ``None`` for metrics that are not compared."""
    if isinstance(value, dict) and isinstance(value.get("samples"), list):
        return TIME if value.get("unit", "s") == "s" else None
    if "accuracy" in name and isinstance(value, (int, float)) and not isinstance(value, bool):
        return ACCURACY
    return None


def _metrics(runs: Iterable[dict[str, Any]]) -> dict[str, Measurement]:
    """Every comparable metric of a configuration's runs, pooled over seeds."""
    pooled: dict[str, tuple[str, list[float]]] = {}
    for run in runs:
        for name, value in run["metrics"].items():
            kind = metric_kind(name, value)
            if kind is not None:
                values = pooled.setdefault(name, (kind, []))[1]
                values.extend(value["samples"]) if kind == TIME else values.append(float(value))
    return {name: Measurement.of(kind, values) for name, (kind, values) in pooled.items() if values}


PYTEST_CONFIGURATION = ("batch_size", "input_shape", "device")  # from extra_info, when there


def _from_pytest_benchmark(path: Path, data: dict[str, Any]) -> ResultSet:
    configs = {}
    for bench in data["benchmarks"]:
        try:
            fullname, name = bench["fullname"], bench["name"]
            measurement = _pytest_measurement(bench["stats"])
            extra = bench.get("extra_info") or {}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BenchError(f"{path}: a benchmark without usable stats ({exc!r})") from None
        label = bench.get("group") or fullname.rsplit("::", 1)[0]
        config = {"fullname": fullname, **{k: extra[k] for k in PYTEST_CONFIGURATION if k in extra}}
        key = json.dumps(config, sort_keys=True, default=str)
        configs[key] = Config(label, config, {name: measurement}, title=name)
    return ResultSet(path, "pytest-benchmark", _pytest_environment(data), configs)


def _pytest_measurement(stats_: dict[str, Any]) -> Measurement:
    """From the raw per-iteration ``data`` when saved, else from the summary statistics."""
    if stats_.get("data"):
        return Measurement.of(TIME, stats_["data"])
    return Measurement(
        TIME,
        n=int(stats_["rounds"]),
        mean=float(stats_["mean"]),
        std=float(stats_["stddev"]),
        median=float(stats_["median"]),
        iqr=float(stats_["iqr"]),
    )


def _pytest_environment(data: dict[str, Any]) -> dict[str, Any]:
    """bench's environment fields from pytest-benchmark's ``machine_info``/``commit_info`` and
    the ``extra_info`` that ``benchmarks/test_model_speed.py`` records."""
    machine, commit = data.get("machine_info") or {}, data.get("commit_info") or {}
    extra = next((b.get("extra_info") or {} for b in data["benchmarks"]), {})
    commit_id = commit.get("id")
    return {
        "hostname": machine.get("node"),
        "cpu": (machine.get("cpu") or {}).get("brand_raw") or machine.get("processor"),
        "python": machine.get("python_version"),
        "git_commit": f"{commit_id}{'-dirty' if commit.get('dirty') else ''}"
        if commit_id
        else None,
        **{k: extra.get(k) for k in ("torch", "device", "device_name", "threads")},
    }


@dataclass(frozen=True)
class Threshold:
    """``[GLOB=]N%`` for timings (relative) or ``[GLOB=]Npp`` for accuracies (points)."""

    glob: str
    kind: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        glob, sep, value = text.rpartition("=")
        match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(%|pp)\s*", value)
        if not match or (sep and not glob):
            raise BenchError(
                f"--threshold '{text}': expected [GLOB=]N% for timings or [GLOB=]Npp for "
                "accuracies, e.g. 10%, 'train_step*=5%' or 0.5pp"
            )
        amount = float(match[1])
        if match[2] == "%":
            return cls(glob or "*", TIME, amount / 100)
        return cls(glob or "*", ACCURACY, amount)


@dataclass(frozen=True)
class Rules:
    """Thresholds (the last one matching a metric of its kind wins), the metrics to compare
    (globs on the metric name; all when empty) and strictness."""

    thresholds: tuple[Threshold, ...] = ()
    metrics: tuple[str, ...] = ()
    strict: bool = False

    @classmethod
    def parse(cls, thresholds: Iterable[str], metrics: Iterable[str], strict: bool) -> Rules:
        return cls(tuple(map(Threshold.parse, thresholds)), tuple(metrics), strict)

    def threshold(self, metric: str, kind: str) -> float:
        value = DEFAULT_THRESHOLDS[kind]
        for rule in self.thresholds:
            if rule.kind == kind and fnmatch.fnmatchcase(metric, rule.glob):
                value = rule.value
        return value

    def selects(self, metric: str) -> bool:
        return not self.metrics or any(fnmatch.fnmatchcase(metric, g) for g in self.metrics)


@dataclass(frozen=True)
class Row:
    """One metric of one matched configuration, judged. ``change`` is relative for timings
    (+0.3: the median is 30% slower) and in percentage points for accuracies (+: better)."""

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

    @property
    def fails(self) -> bool:
        return self.verdict == REGRESSION

    @property
    def noisy(self) -> bool:
        return self.baseline.noisy or self.candidate.noisy


def verdict(harm: float, threshold: float, clear: bool, noisy: bool, strict: bool) -> str:
    """``harm`` is the change in the bad direction (negative: better), in the threshold's unit."""
    if not abs(harm) > threshold:
        return OK
    if not clear:
        return UNCLEAR
    if harm < 0:
        return IMPROVED
    return NOISY if noisy and not strict else REGRESSION


def time_test(base: Measurement, cand: Measurement, slower: bool) -> tuple[bool, str, float | None]:
    """Whether the candidate is clearly slower (``slower``) or clearly faster, and how we know."""
    counts = f"n={base.n}/{cand.n}"
    if base.samples and cand.samples and _test_can_reach_alpha(base.n, cand.n):
        alternative = "greater" if slower else "less"
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
    half = float(stats.t.ppf(1 - ALPHA / 2, m.n - 1)) * m.std / math.sqrt(m.n)
    return m.mean - half, m.mean + half


def judge(config: str, metric: str, base: Measurement, cand: Measurement, rules: Rules) -> Row:
    """Compare one metric of one configuration under ``rules``."""
    threshold = rules.threshold(metric, base.kind)
    evidence = _time_evidence if base.kind == TIME else _accuracy_evidence
    change, harm, clear, test, p = evidence(base, cand)
    noisy = base.noisy or cand.noisy
    outcome = verdict(harm, threshold, clear, noisy, rules.strict)
    return Row(config, metric, base.kind, base, cand, change, threshold, test, p, outcome)


def _time_evidence(base: Measurement, cand: Measurement):
    """Relative change of the median (+: slower, the bad direction), and the test of it."""
    change = cand.median / base.median - 1 if base.median > 0 else math.inf
    clear, test, p = time_test(base, cand, slower=change > 0)
    return change, change, clear, test, p


def _accuracy_evidence(base: Measurement, cand: Measurement):
    """Change of the mean in percentage points (+: better), clear beyond two standard errors."""
    change = 100 * (cand.mean - base.mean)
    base_std = base.std if base.n > 1 else cand.std  # one seed: the other side's spread
    cand_std = cand.std if cand.n > 1 else base.std
    margin = 200 * math.sqrt(base_std**2 / base.n + cand_std**2 / cand.n)
    seeds = f"seeds {base.n}/{cand.n}"
    test = f"2·SE {margin:.2f} pp ({seeds})" if margin else f"threshold only ({seeds})"
    return change, -change, abs(change) > margin, test, None


@dataclass(frozen=True)
class Comparison:
    baseline: ResultSet
    candidate: ResultSet
    rules: Rules
    rows: list[Row]
    only_baseline: list[str]
    only_candidate: list[str]
    differences: list[tuple[str, Any, Any]]  # environment field, baseline, candidate

    @property
    def problems(self) -> list[str]:
        """Why the comparison cannot vouch for the candidate (exit code 3)."""
        problems = [*self.baseline.problems, *self.candidate.problems]
        if not self.rows:
            problems.append(
                "nothing comparable: no metric of a configuration present in both files"
                + (
                    f" matches --metric {' '.join(self.rules.metrics)}"
                    if self.rules.metrics
                    else ""
                )
            )
        if self.rules.strict and self.differences:
            problems.append("the files come from different machines or software (--strict)")
        return problems

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 3
        return 1 if any(row.fails for row in self.rows) else 0


def compare(baseline: ResultSet, candidate: ResultSet, rules: Rules) -> Comparison:
    """Match the configurations of two result sets and judge every selected metric of both."""
    if baseline.format != candidate.format:
        raise BenchError(
            f"cannot compare a {baseline.format} file ({baseline.path}) with a "
            f"{candidate.format} file ({candidate.path})"
        )
    rows, only_baseline, only_candidate = [], [], []
    for key, base in baseline.configs.items():
        cand = candidate.configs.get(key)
        if cand is None:
            only_baseline.append(_unmatched(base, candidate))
            continue
        for metric in dict.fromkeys([*base.metrics, *cand.metrics]):
            if not rules.selects(metric):
                continue
            if metric not in cand.metrics:
                only_baseline.append(f"{base.label}: {metric}")
            elif metric not in base.metrics:
                only_candidate.append(f"{base.label}: {metric}")
            else:
                rows.append(
                    judge(base.label, metric, base.metrics[metric], cand.metrics[metric], rules)
                )
    only_candidate += [
        _unmatched(cand, baseline)
        for key, cand in candidate.configs.items()
        if key not in baseline.configs
    ]
    differences = environment_differences(baseline.environment, candidate.environment)
    return Comparison(baseline, candidate, rules, rows, only_baseline, only_candidate, differences)


def compare_files(baseline: Path | str, candidate: Path | str, rules: Rules) -> Comparison:
    return compare(load_result_set(baseline), load_result_set(candidate), rules)


def _unmatched(config: Config, other: ResultSet) -> str:
    """A configuration's name and, when the other file has one of the same name, what differs."""
    twin = next((c for c in other.configs.values() if c.name == config.name), None)
    if twin is None:
        return config.name
    keys = sorted(
        k
        for k in config.config.keys() | twin.config.keys()
        if k not in NOT_CONFIGURATION and config.config.get(k) != twin.config.get(k)
    )
    return f"{config.name} (configuration differs in: {', '.join(keys) or 'procedure'})"


def environment_differences(
    baseline: dict[str, Any], candidate: dict[str, Any]
) -> list[tuple[str, Any, Any]]:
    """The machine and software fields that differ (fields unknown on a side are skipped)."""
    return [
        (name, baseline[name], candidate[name])
        for name in MACHINE_FIELDS
        if baseline.get(name) is not None
        and candidate.get(name) is not None
        and baseline[name] != candidate[name]
    ]


def _seconds(value: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(value) >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value * 1e9:.3g} ns"


def _value(m: Measurement) -> str:
    """A timing's median and its IQR relative to the median (the noise rule's measure); an
    accuracy's mean and standard deviation over seeds, in percent."""
    if m.kind == TIME:
        spread = f" (IQR {100 * m.iqr / m.median:.0f}%)" if m.median > 0 and m.n > 1 else ""
        return _seconds(m.median) + spread
    spread = f" ± {100 * m.std:.2f}" if m.n > 1 else ""
    return f"{100 * m.mean:.2f}{spread} %"


def _change(row: Row) -> str:
    if row.kind == TIME:
        return f"{100 * row.change:+.1f}%"
    return f"{row.change:+.2f} pp"


def _verdict_text(row: Row) -> str:
    return f"{row.verdict} (noisy)" if row.noisy and row.verdict != NOISY else row.verdict


def table_rows(rows: Iterable[Row]) -> list[dict[str, str]]:
    """The verdict table: metric, baseline, candidate, change, p-value or method, verdict."""
    return [
        {
            "run": row.config,
            "metric": row.metric,
            "baseline": _value(row.baseline),
            "candidate": _value(row.candidate),
            "change": _change(row),
            "p-value / method": row.test,
            "verdict": _verdict_text(row),
        }
        for row in rows
    ]


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


def _describe(result_set: ResultSet) -> str:
    env = result_set.environment
    parts = [
        f"commit {(env.get('git_commit') or 'unknown')[:12]}",
        f"host {env.get('hostname')}",
        f"{env.get('device') or 'device ?'} ({env.get('device_name') or env.get('cpu')})",
        f"torch {env.get('torch')}",
        f"{env.get('threads')} threads",
    ]
    return ", ".join(parts)


def _warning(comparison: Comparison) -> str | None:
    if not comparison.differences:
        return None
    items = "; ".join(f"{name}: {b} vs {c}" for name, b, c in comparison.differences)
    return f"different machines or software, timings may not be comparable: {items}"


def summary(comparison: Comparison) -> str:
    """One line: the count of each verdict, and the exit code."""
    counts = collections.Counter(row.verdict for row in comparison.rows)
    parts = [f"{counts[name]} {name}" for name in VERDICTS if counts[name]]
    return f"{', '.join(parts) or 'no metric compared'} (exit {comparison.exit_code})"


def rules_text(rules: Rules) -> str:
    def thresholds(kind: str) -> str:
        default = DEFAULT_THRESHOLDS[kind]
        text = f"{100 * default:g}%" if kind == TIME else f"{default:g} pp"
        custom = [
            f"{t.glob}={100 * t.value:g}%" if kind == TIME else f"{t.glob}={t.value:g}pp"
            for t in rules.thresholds
            if t.kind == kind
        ]
        return f"{text} (then {', '.join(custom)}: the last matching glob wins)" if custom else text

    return (
        f"timings regress when the median is worse by > {thresholds(TIME)} and a one-sided "
        f"Mann-Whitney U test on the raw samples gives p < {ALPHA} (disjoint 99% confidence "
        "intervals of the mean when the samples are too few for that test or were not saved), "
        f"unless noisy (IQR/median > {100 * NOISE_LIMIT:g}% on either side)"
        f"{'; --strict: noisy ones too' if rules.strict else ''}; accuracies regress when the "
        f"mean over seeds drops by > {thresholds(ACCURACY)} and by > 2 standard errors of the "
        "difference"
    )


def _listing(title: str, items: Sequence[str]) -> list[str]:
    return [f"{title} ({len(items)}): " + "; ".join(items)] if items else []


def to_text(comparison: Comparison) -> str:
    """The verdict for a terminal: header, table, what did not match, problems, summary."""
    lines = [
        f"baseline:  {comparison.baseline.path}  ({_describe(comparison.baseline)})",
        f"candidate: {comparison.candidate.path}  ({_describe(comparison.candidate)})",
    ]
    warning = _warning(comparison)
    if warning:
        lines.append(f"warning: {warning}")
    lines += ["", markdown_table(table_rows(comparison.rows)), ""]
    lines += _listing("only in baseline", comparison.only_baseline)
    lines += _listing("only in candidate", comparison.only_candidate)
    lines += [f"problem: {problem}" for problem in comparison.problems]
    lines += [f"rules: {rules_text(comparison.rules)}", f"verdict: {summary(comparison)}"]
    return "\n".join(lines) + "\n"


def to_markdown(comparison: Comparison) -> str:
    """A summary for a pull-request comment: verdict, environments, notable rows first, the
    full table folded."""
    base, cand = comparison.baseline, comparison.candidate
    title = {0: "no regression", 1: "regression", 3: "incomplete"}[comparison.exit_code]
    noisy = sum(row.verdict == NOISY for row in comparison.rows)
    if noisy and comparison.exit_code == 0:
        title += f" ({noisy} noisy, not failed)"
    environment = [
        {"": "file", "baseline": f"`{base.path}`", "candidate": f"`{cand.path}`"},
        *(
            {
                "": name,
                "baseline": _text(base.environment.get(name)),
                "candidate": _text(cand.environment.get(name)),
            }
            for name in ("git_commit", *MACHINE_FIELDS)
        ),
    ]
    parts = [
        f"## bench compare: {title}",
        f"**{summary(comparison)}**",
        markdown_table(environment),
    ]
    warning = _warning(comparison)
    if warning:
        parts.append(f"> **Warning:** {warning}")
    parts += [f"> **Problem:** {problem}" for problem in comparison.problems]
    notable = [row for row in comparison.rows if row.verdict != OK]
    parts.append(
        "### Changes beyond the thresholds\n\n" + markdown_table(table_rows(notable))
        if notable
        else "No metric changed beyond its threshold."
    )
    parts.append(
        f"<details><summary>All {len(comparison.rows)} comparisons</summary>\n\n"
        f"{markdown_table(table_rows(comparison.rows))}\n\n</details>"
    )
    parts += _listing("Only in baseline", comparison.only_baseline)
    parts += _listing("Only in candidate", comparison.only_candidate)
    parts.append(f"_Rules: {rules_text(comparison.rules)}._")
    return "\n\n".join(parts) + "\n"


def _measurement_dict(m: Measurement) -> dict[str, Any]:
    return {
        "n": m.n,
        "mean": m.mean,
        "std": m.std,
        "median": m.median,
        "iqr": m.iqr,
        "noisy": m.noisy,
    }


def to_json(comparison: Comparison) -> str:
    document = {
        "exit_code": comparison.exit_code,
        "summary": summary(comparison),
        "baseline": {
            "path": str(comparison.baseline.path),
            "environment": comparison.baseline.environment,
        },
        "candidate": {
            "path": str(comparison.candidate.path),
            "environment": comparison.candidate.environment,
        },
        "differences": [
            {"field": name, "baseline": b, "candidate": c} for name, b, c in comparison.differences
        ],
        "rows": [
            {
                "run": row.config,
                "metric": row.metric,
                "kind": row.kind,
                "baseline": _measurement_dict(row.baseline),
                "candidate": _measurement_dict(row.candidate),
                "change": row.change,
                "threshold": row.threshold,
                "test": row.test,
                "p_value": row.p_value,
                "verdict": row.verdict,
            }
            for row in comparison.rows
        ],
        "only_in_baseline": comparison.only_baseline,
        "only_in_candidate": comparison.only_candidate,
        "problems": comparison.problems,
    }
    return json.dumps(document, indent=2, default=str) + "\n"
