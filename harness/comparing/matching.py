"""``bench compare``: did the candidate get slower or less accurate than the baseline, beyond noise?

This module reads and matches; :mod:`harness.comparing.verdicts` holds the rules that judge one
metric, :mod:`harness.comparing.output` the tables.

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
A timing record's counters (``forward.operators``, ``train_step.syncs``...) are compared
exactly, lower better. Everything else (parameter counts, memory, histories) is not compared. A
timing record's ``contention`` (and, from ``bench ab``, its ``rounds``) travel with its
samples.

Two files written by one ``bench ab`` session (the same ``execution.interleaved.session``) were
measured in alternating rounds: their rounds are paired.

Exit codes: 0 no regression; 1 a regression; 3 nothing comparable, a failed run, an unfinished
file, a verdict that contention leaves untrustworthy (and, strict, different machines); usage
errors (2) are raised as :class:`BenchError`. Only the verdicts of metrics the rules' ``gate``
matches count (every metric without one).
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.comparing.counts import count_measurement, counters_of, judge_count
from harness.comparing.verdicts import (
    ACCURACY,
    CONTENDED,
    COUNT,
    SCORE,
    TIME,
    Measurement,
    Row,
    Rules,
    judge,
)
from harness.errors import BenchError
from harness.results.run_settings import NOT_SETTINGS, setting_changes
from harness.results.store import load_results

MACHINE_FIELDS = ("hostname", "cpu", "device", "device_name", "threads", "torch", "cuda")


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
    session: str | None = None  # the bench ab session that measured it, if one did
    contention_recorded: bool = True  # False for pytest-benchmark files: nothing says
    plugins: tuple[str, ...] = ()  # the plugins the command named (--plugin), as recorded


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
            _check_rounds(path, run)
            groups[match_key(run)].append(run)
        else:
            problems.append(f"{path}: run {run['id']} {run['status']}: {run.get('error') or ''}")
    configs = {
        key: Config(_label(runs[0]), runs[0]["config"], _metrics(runs))
        for key, runs in groups.items()
    }
    session = ((data.get("execution") or {}).get("interleaved") or {}).get("session")
    environment = data.get("environment") or {}
    plugins = tuple((data.get("execution") or {}).get("plugins") or ())
    return ResultSet(path, "bench", environment, configs, problems, session, plugins=plugins)


def _check_rounds(path: Path, run: dict[str, Any]) -> None:
    """A timing record's ``rounds`` must split its samples exactly (a usage error otherwise)."""
    for name, value in run["metrics"].items():
        rounds = value.get("rounds") if isinstance(value, dict) else None
        if rounds is None:
            continue
        counts = [r.get("n") if isinstance(r, dict) else None for r in rounds]
        if not all(isinstance(n, int) and n >= 1 for n in counts) or sum(counts) != len(
            value.get("samples") or []
        ):
            raise BenchError(
                f"{path}: run {run['id']} metric '{name}': its rounds do not split its samples "
                "(each round needs n >= 1, adding up to the number of samples)"
            )


def match_key(run: dict[str, Any]) -> str:
    """What must be equal for two runs to be compared: procedure and configuration, no seed."""
    config = {k: v for k, v in run["config"].items() if k not in NOT_SETTINGS}
    return json.dumps({"procedure": run.get("procedure"), **config}, sort_keys=True, default=str)


def _label(run: dict[str, Any]) -> str:
    config = run["config"]
    return re.sub(rf"-s{config.get('seed')}$", "", config.get("name") or run["id"])


SPLIT_PREFIXES = ("test_", "val_", "train_eval_", "train_")


def metric_kind(
    name: str, value: Any, task: dict[str, Any] | None = None
) -> tuple[str, bool] | None:
    """How a metric is judged, and whether higher is better: ``time`` for timing records (raw
    ``samples`` in seconds, lower better); for a split's metric of the run's ``task``
    (``test_rmse``, ``val_accuracy``...) its recorded direction, ``accuracy`` for fractions
    and ``score`` for the rest (the task's loss is not judged: its metrics are); without a
    recorded task (older files) numbers named ``*accuracy*``, higher better. ``None``: the
    metric is not compared."""
    if isinstance(value, dict) and isinstance(value.get("samples"), list):
        return (TIME, False) if value.get("unit", "s") == "s" else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    if task:
        prefix = next((p for p in SPLIT_PREFIXES if name.startswith(p)), None)
        metric = task.get("metrics", {}).get(name[len(prefix) :]) if prefix else None
        if metric and name[len(prefix) :] != "loss":
            kind = ACCURACY if metric.get("unit") == "fraction" else SCORE
            return kind, metric.get("direction") == "higher"
    if "accuracy" in name:
        return ACCURACY, True
    return None


def _metrics(runs: Iterable[dict[str, Any]]) -> dict[str, Measurement]:
    """Every comparable metric of a configuration's runs, pooled over seeds."""
    pooled: dict[str, tuple[tuple[str, bool], list[Any]]] = {}
    for run in runs:
        task = run["metrics"].get("task")
        for name, value in run["metrics"].items():
            kind = metric_kind(name, value, task)
            if kind is not None:
                pooled.setdefault(name, (kind, []))[1].append(value)
            if kind == (TIME, False):
                for counter, count in counters_of(value).items():
                    pooled.setdefault(f"{name}.{counter}", ((COUNT, False), []))[1].append(count)
    return {
        name: _timing(values)
        if kind == TIME
        else count_measurement(values)
        if kind == COUNT
        else Measurement.of(kind, list(map(float, values)), higher_better=higher)
        for name, ((kind, higher), values) in pooled.items()
        if values
    }


def _timing(records: list[dict[str, Any]]) -> Measurement:
    """Timing records of several seeds as one measurement: samples, rounds and contention."""
    samples = [x for record in records for x in record["samples"]]
    windows = [record.get("contention") or {} for record in records]
    contended = [w for w in windows if w.get("contended")]
    rounds, flags = [], []
    for record in records:
        start = 0
        for entry in record.get("rounds") or []:
            rounds.append(tuple(record["samples"][start : start + entry["n"]]))
            flags.append(bool(entry.get("contended")))
            start += entry["n"]
    return Measurement.of(
        TIME,
        samples,
        contended=bool(contended),
        evidence=contended[0].get("evidence", "") if contended else "",
        rounds=tuple(rounds),
        round_contended=tuple(flags),
    )


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
    environment = _pytest_environment(data)
    return ResultSet(path, "pytest-benchmark", environment, configs, contention_recorded=False)


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
        p25=float(stats_.get("q1", "nan")),
        p75=float(stats_.get("q3", "nan")),
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
    def interleaved(self) -> bool:
        return same_session(self.baseline, self.candidate)

    @property
    def exit_code(self) -> int:
        if self.problems:
            return 3
        if any(row.fails for row in self.rows):
            return 1
        return 3 if any(row.verdict == CONTENDED and row.gated for row in self.rows) else 0


def same_session(baseline: ResultSet, candidate: ResultSet) -> bool:
    """Both sides measured by one ``bench ab`` session, in alternating rounds."""
    return baseline.session is not None and baseline.session == candidate.session


def compare(baseline: ResultSet, candidate: ResultSet, rules: Rules) -> Comparison:
    """Match the configurations of two result sets and judge every selected metric of both."""
    if baseline.format != candidate.format:
        raise BenchError(
            f"cannot compare a {baseline.format} file ({baseline.path}) with a "
            f"{candidate.format} file ({candidate.path})"
        )
    rows, only_baseline, only_candidate = [], [], []
    interleaved = same_session(baseline, candidate)
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
                judged = judge_count if base.metrics[metric].kind == COUNT else judge
                rows.append(
                    judged(
                        base.label,
                        metric,
                        base.metrics[metric],
                        cand.metrics[metric],
                        rules,
                        interleaved=interleaved,
                    )
                )
    only_candidate += [
        _unmatched(cand, baseline, candidate=True)
        for key, cand in candidate.configs.items()
        if key not in baseline.configs
    ]
    differences = environment_differences(baseline.environment, candidate.environment)
    return Comparison(baseline, candidate, rules, rows, only_baseline, only_candidate, differences)


def compare_files(baseline: Path | str, candidate: Path | str, rules: Rules) -> Comparison:
    return compare(load_result_set(baseline), load_result_set(candidate), rules)


def _unmatched(config: Config, other: ResultSet, *, candidate: bool = False) -> str:
    """A configuration's name and, when the other file has one of the same name, the settings
    that differ, baseline first (``train.lr: 0.01 -> 0.05``)."""
    twin = next((c for c in other.configs.values() if c.name == config.name), None)
    if twin is None:
        return config.name
    pair = (twin.config, config.config) if candidate else (config.config, twin.config)
    changes = ", ".join(setting_changes(*pair)) or "procedure"
    return f"{config.name} (configuration differs in: {changes})"


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
