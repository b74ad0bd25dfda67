"""bench compare: run matching, metric directions, the regression rules and the exit codes.

Results files are written in the real schema: timing records come from
:class:`harness.measuring.timer.Timing`, run hashes from :class:`harness.planning.suite_files.Run`,
with samples drawn from seeded distributions, so nothing here depends on the speed of the machine.
"""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.comparing.matching import compare_files, metric_kind
from harness.comparing.output import MEASURED_APART, NO_CONTENTION_RECORD
from harness.comparing.verdicts import (
    ACCURACY,
    IMPROVED,
    NOISY,
    OK,
    REGRESSION,
    TIME,
    UNCLEAR,
    Measurement,
    Rules,
    judge,
)
from harness.execution.outcome import make_record
from harness.measuring.timer import Timing
from harness.planning.suite_files import Run
from harness.results.run_settings import distinguishing_settings, setting_changes

ENVIRONMENT = {
    "bench_version": "0.1.0",
    "python": "3.11.7",
    "torch": "2.4.0",
    "cuda": None,
    "device": "cpu",
    "device_name": "Test CPU",
    "cpu": "Test CPU",
    "threads": 2,
    "platform": "Linux",
    "hostname": "ci-runner",
    "git_commit": "0123456789abcdef",
}


def draws(seed: int, n: int = 30, median: float = 0.010, spread: float = 0.05) -> list[float]:
    """``n`` log-normal timing samples around ``median`` seconds (IQR/median about 1.35 x
    ``spread``)."""
    rng = np.random.default_rng(seed)
    return list(median * np.exp(rng.normal(0.0, spread, n)))


def timing_run(index: int, samples: dict[str, list[float]], *, batch: int = 32, **config):
    config = {
        "name": f"lenet5-synthetic-cpu-b{batch}",
        "model": "lenet5",
        "model_label": "lenet5",
        "model_options": {},
        "dataset": "synthetic",
        "dataset_label": "synthetic",
        "dataset_options": {"shape": "1x28x28"},
        "grid_point": {},
        "train": {},
        "device": "cpu",
        "batch_size": batch,
        "seed": 0,
        "modes": list(samples),
        **config,
    }
    metrics = {mode: Timing(list(s), 1, 0.0).to_dict() for mode, s in samples.items()}
    return record(Run(index, "throughput", config), metrics)


def accuracy_run(index: int, seed: int, test_accuracy: float, model: str = "mlp"):
    config = {
        "name": f"{model}-digits-s{seed}",
        "model": model,
        "model_label": model,
        "model_options": {},
        "dataset": "digits",
        "dataset_label": "digits",
        "dataset_options": {},
        "grid_point": {},
        "train": {"epochs": 10},
        "seed": seed,
    }
    metrics = {
        "test_accuracy": test_accuracy,
        "val_accuracy": test_accuracy,
        "params": 101_770,
        "history": [{"epoch": 1, "train_loss": 0.5}],
    }
    return record(Run(index, "accuracy", config), metrics)


def record(run: Run, metrics: dict, status: str = "ok"):
    ok = status == "ok"
    return make_record(
        run,
        status=status,
        started_at="2026-11-23T00:00:00+00:00",
        wall_time_s=1.0,
        error=None if ok else "RuntimeError: boom",
        metrics=metrics if ok else {},
    )


def write(path, runs, *, status="complete", procedure="throughput", **environment):
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "schema_version": 1,
        "tool": "bench",
        "bench_version": "0.1.0",
        "status": status,
        "command": ["bench", "run"],
        "created_at": "2026-11-23T00:00:00+00:00",
        "updated_at": "2026-11-23T00:00:00+00:00",
        "suite": {
            "name": "test",
            "procedure": procedure,
            "source": "test",
            "description": "",
            "settings": {},
        },
        "environment": {**ENVIRONMENT, **environment},
        "runs": runs,
    }
    path.write_text(json.dumps(document))
    return path


def bench_compare(*args):
    result = CliRunner().invoke(cli, ["compare", *map(str, args)])
    return result.exit_code, result.output


def pair(tmp_path, base_samples, cand_samples, **candidate_environment):
    base = write(tmp_path / "base.json", [timing_run(0, {"train_step": base_samples})])
    cand = write(
        tmp_path / "cand.json",
        [timing_run(0, {"train_step": cand_samples})],
        **candidate_environment,
    )
    return base, cand


def verdicts(comparison):
    return {(row.config, row.metric): row.verdict for row in comparison.rows}


def test_runs_match_by_configuration_whatever_their_order(tmp_path):
    base = write(
        tmp_path / "base.json",
        [
            timing_run(0, {"forward": draws(1)}, batch=1),
            timing_run(1, {"forward": draws(2)}, batch=32),
            timing_run(2, {"forward": draws(3)}, batch=64),
        ],
    )
    cand = write(
        tmp_path / "cand.json",
        [
            timing_run(0, {"forward": draws(4)}, batch=32),
            timing_run(1, {"forward": draws(5)}, batch=1),
            timing_run(2, {"forward": draws(6)}, batch=128),
        ],
    )
    comparison = compare_files(base, cand, Rules())
    assert [row.config for row in comparison.rows] == [
        "lenet5-synthetic-cpu-b1",
        "lenet5-synthetic-cpu-b32",
    ]
    assert comparison.only_baseline == ["lenet5-synthetic-cpu-b64"]
    assert comparison.only_candidate == ["lenet5-synthetic-cpu-b128"]
    code, output = bench_compare(base, cand)
    assert code == 0
    assert "only in baseline (1): lenet5-synthetic-cpu-b64" in output
    assert "only in candidate (1): lenet5-synthetic-cpu-b128" in output


def test_a_run_of_the_same_name_with_other_settings_is_not_matched_and_says_why(tmp_path):
    base = write(tmp_path / "base.json", [timing_run(0, {"forward": draws(1)})])
    cand = write(tmp_path / "cand.json", [timing_run(0, {"forward": draws(2)}, amp="bf16")])
    code, output = bench_compare(base, cand)
    assert code == 3
    assert "lenet5-synthetic-cpu-b32 (configuration differs in: amp: unset -> bf16)" in output
    assert "nothing comparable" in output


def test_runs_that_differ_in_lr_are_unmatched_naming_the_setting_and_both_values(
    runs_differing_in_lr,
):
    code, output = bench_compare(*runs_differing_in_lr)
    assert code == 3  # nothing comparable
    unmatched = "mlp-digits (configuration differs in: train.lr: 0.01 -> 0.05)"
    assert f"only in baseline (1): {unmatched}" in output
    assert f"only in candidate (1): {unmatched}" in output


def test_settings_a_run_leaves_unset_are_shown_with_their_default():
    base = {"name": "a-s0", "seed": 0, "train": {"epochs": 2}, "model_options": {"hidden": 8}}
    cand = {"name": "a-s1", "seed": 1, "train": {"epochs": 2, "lr": 0.05}, "model_options": {}}
    assert setting_changes(base, cand) == [
        "model_options.hidden: 8 -> unset",
        "train.lr: 0.01 (default) -> 0.05",
    ]
    files = {"base": [base], "cand": [cand], "explicit": [{**base, "train": {"lr": 0.01}}]}
    assert distinguishing_settings(files) == {
        "model_options.hidden": {"base": 8, "cand": None, "explicit": 8},
        "train.epochs": {"base": 2, "cand": 2, "explicit": 10},
        "train.lr": {"base": 0.01, "cand": 0.05, "explicit": 0.01},
    }


def test_seeds_are_pooled_and_matched_whatever_the_seed_numbers(tmp_path):
    base = write(
        tmp_path / "base.json",
        [accuracy_run(0, 0, 0.96), accuracy_run(1, 1, 0.97)],
        procedure="accuracy",
    )
    cand = write(
        tmp_path / "cand.json",
        [accuracy_run(0, 5, 0.965), accuracy_run(1, 6, 0.975)],
        procedure="accuracy",
    )
    (test, val) = compare_files(base, cand, Rules()).rows
    assert (test.config, test.metric, val.metric) == ("mlp-digits", "test_accuracy", "val_accuracy")
    assert test.baseline.samples == (0.96, 0.97) and test.candidate.n == 2
    assert test.change == pytest.approx(0.5)


def test_each_metric_knows_its_kind_and_the_rest_is_not_compared():
    timing = Timing([0.01, 0.02], 1, 0.0).to_dict()
    assert metric_kind("train_step", timing) == (TIME, False)
    assert metric_kind("latency", {**timing, "median_ms": 10.0}) == (TIME, False)
    assert metric_kind("test_accuracy", 0.97) == (ACCURACY, True)
    assert metric_kind("accuracy_after", 0.9) == (ACCURACY, True)
    for name, value in [("params", 61_706), ("flops", 1e6), ("history", []), ("noisy", True)]:
        assert metric_kind(name, value) is None


@pytest.mark.parametrize(
    ("kind", "base", "cand", "expected"),
    [
        (TIME, draws(1), [1.3 * s for s in draws(2)], REGRESSION),  # slower is worse
        (TIME, draws(1), [0.7 * s for s in draws(2)], IMPROVED),  # faster is better
        (ACCURACY, [0.97, 0.971, 0.969], [0.94, 0.941, 0.939], REGRESSION),  # lower is worse
        (ACCURACY, [0.94, 0.941, 0.939], [0.97, 0.971, 0.969], IMPROVED),  # higher is better
    ],
)
def test_direction_of_each_kind(kind, base, cand, expected):
    row = judge("run", "m", Measurement.of(kind, base), Measurement.of(kind, cand), Rules())
    assert row.verdict == expected


def test_a_clear_30_percent_slowdown_on_30_samples_is_a_regression(tmp_path):
    base, cand = pair(tmp_path, draws(1), [1.3 * s for s in draws(2)])
    code, output = bench_compare(base, cand)
    assert code == 1
    line = next(line for line in output.splitlines() if "| train_step" in line)
    assert "REGRESSION" in line and "Mann-Whitney U, n=30/30" in line
    assert re.search(r"\+\d\d\.\d%", line)
    assert "verdict: 1 REGRESSION (exit 1)" in output


def test_two_draws_from_the_same_distribution_are_not_a_regression(tmp_path):
    base, cand = pair(tmp_path, draws(1), draws(2))
    assert bench_compare(base, cand)[0] == 0


@pytest.mark.parametrize(
    ("threshold", "n", "sigma"),
    [
        ("10%", 30, 0.08),  # the default rule on quiet timings (IQR/median about 11%)
        ("0%", 30, 0.08),  # the Mann-Whitney U test alone: its level, about 1%
        ("0%", 30, 0.2),  # spread timings (most of them noisy), failed anyway: --strict
        ("10%", 5, 0.08),  # the smallest samples the exact test can decide at p < 0.01
        ("0%", 5, 0.08),
        ("0%", 3, 0.08),  # too few for the test: disjoint 99% confidence intervals
    ],
)
def test_false_positive_rate_over_500_draws_stays_below_2_percent(threshold, n, sigma):
    """Both sides drawn from one log-normal distribution, 500 times: a regression verdict is a
    false alarm. --strict, so that noisy draws are failed too rather than excused."""
    rules = Rules.parse([threshold], [], strict=True)
    rng = np.random.default_rng(20261123)
    alarms = 0
    for _ in range(500):
        base, cand = (list(0.01 * np.exp(rng.normal(0.0, sigma, n))) for _ in range(2))
        row = judge("run", "m", Measurement.of(TIME, base), Measurement.of(TIME, cand), rules)
        alarms += row.fails
    assert alarms / 500 < 0.02


def test_a_30_percent_slowdown_on_30_samples_is_caught_in_every_draw():
    rng = np.random.default_rng(7)
    caught = 0
    for _ in range(200):
        base = Measurement.of(TIME, list(0.01 * np.exp(rng.normal(0.0, 0.08, 30))))
        cand = Measurement.of(TIME, list(0.013 * np.exp(rng.normal(0.0, 0.08, 30))))
        caught += judge("run", "m", base, cand, Rules()).verdict == REGRESSION
    assert caught == 200


def test_an_improvement_never_fails(tmp_path):
    base, cand = pair(tmp_path, draws(1), [0.5 * s for s in draws(2)])
    for flags in ([], ["--strict"]):
        code, output = bench_compare(base, cand, *flags)
        assert code == 0 and "improved" in output and "-50.0%" in output


def test_a_noisy_regression_is_reported_not_failed_unless_strict(tmp_path):
    base, cand = pair(tmp_path, draws(1, spread=0.4), [1.5 * s for s in draws(2, spread=0.4)])
    summary = tmp_path / "summary.md"
    code, output = bench_compare(base, cand, "--markdown-out", summary)
    assert code == 0 and NOISY in output
    assert summary.read_text().startswith("## bench compare: no regression (1 noisy, not failed)")
    code, output = bench_compare(base, cand, "--strict")
    assert code == 1 and "REGRESSION (noisy)" in output


def test_a_slowdown_within_the_threshold_is_ok_even_when_significant(tmp_path):
    base, cand = pair(tmp_path, draws(1, spread=0.01), [1.05 * s for s in draws(2, spread=0.01)])
    row = compare_files(base, cand, Rules()).rows[0]
    assert row.p_value < 1e-6 and row.verdict == OK


def test_per_metric_threshold_globs_override_the_default(tmp_path):
    samples = {"forward": draws(1), "train_step": draws(2)}
    slower = {"forward": [1.3 * s for s in draws(3)], "train_step": [1.3 * s for s in draws(4)]}
    base = write(tmp_path / "base.json", [timing_run(0, samples)])
    cand = write(tmp_path / "cand.json", [timing_run(0, slower)])
    comparison = compare_files(base, cand, Rules.parse(["train_step*=50%"], [], False))
    assert verdicts(comparison) == {
        ("lenet5-synthetic-cpu-b32", "forward"): REGRESSION,
        ("lenet5-synthetic-cpu-b32", "train_step"): OK,
    }
    assert bench_compare(base, cand, "--threshold", "40%")[0] == 0
    code, output = bench_compare(base, cand, "--metric", "train_step*")
    assert code == 1 and "| forward" not in output
    code, output = bench_compare(base, cand, "--metric", "epoch")
    assert code == 3 and "matches --metric epoch" in output


@pytest.mark.parametrize("bad", ["10", "ten%", "-5%", "=5%", "5 ms"])
def test_a_malformed_threshold_is_a_usage_error(tmp_path, bad):
    base, cand = pair(tmp_path, draws(1), draws(2))
    code, output = bench_compare(base, cand, "--threshold", bad)
    assert code == 2 and "expected [GLOB=]N% for timings or [GLOB=]Npp" in output


def test_few_samples_fall_back_to_confidence_intervals_and_one_sample_decides_nothing():
    rules = Rules()
    base = Measurement.of(TIME, [0.010, 0.0101, 0.0099])
    slower = Measurement.of(TIME, [0.015, 0.0151, 0.0149])
    row = judge("run", "m", base, slower, rules)
    assert row.verdict == REGRESSION and row.test.startswith("99% CIs disjoint (n=3/3)")
    wide = Measurement.of(TIME, [0.008, 0.015, 0.022])
    assert judge("run", "m", base, wide, rules).verdict == UNCLEAR
    one = judge("run", "epoch", Measurement.of(TIME, [1.0]), Measurement.of(TIME, [2.0]), rules)
    assert one.verdict == UNCLEAR and one.test == "too few samples (n=1/1)"


def test_an_accuracy_drop_beyond_threshold_and_spread_is_a_regression(tmp_path):
    def files(base_values, cand_values):
        base = write(
            tmp_path / "base.json",
            [accuracy_run(i, i, v) for i, v in enumerate(base_values)],
            procedure="accuracy",
        )
        cand = write(
            tmp_path / "cand.json",
            [accuracy_run(i, i, v) for i, v in enumerate(cand_values)],
            procedure="accuracy",
        )
        return base, cand

    code, output = bench_compare(*files([0.970, 0.972, 0.968], [0.950, 0.952, 0.948]))
    assert code == 1 and "-2.00 pp" in output and "2·SE" in output
    # a 1.5 pp drop, but the seeds spread by 2 pp: within two standard errors
    code, output = bench_compare(*files([0.95, 0.97, 0.99], [0.935, 0.955, 0.975]))
    assert code == 0 and UNCLEAR in output
    # a 0.5 pp drop is within the default 1 pp, not within 0.2pp
    base, cand = files([0.970, 0.972, 0.968], [0.965, 0.967, 0.963])
    assert bench_compare(base, cand)[0] == 0
    assert bench_compare(base, cand, "--threshold", "*accuracy=0.2pp")[0] == 1
    # one seed against three: a 2.5 pp drop, beyond 2 SE of the three seeds' mean alone (2.31
    # pp), but the single seed is as uncertain as any one of them: 2 SE of the difference 4.62
    code, output = bench_compare(*files([0.95, 0.97, 0.99], [0.945]))
    assert code == 0 and "2·SE 4.62 pp (seeds 3/1)" in output and UNCLEAR in output
    # one seed a side: the threshold alone decides
    code, output = bench_compare(*files([0.97], [0.955]))
    assert code == 1 and "threshold only (seeds 1/1)" in output


def test_different_machines_are_reported_and_fail_only_when_strict(tmp_path):
    base, cand = pair(tmp_path, draws(1), draws(2), hostname="laptop", torch="2.5.0")
    code, output = bench_compare(base, cand)
    assert code == 0
    warning = next(line for line in output.splitlines() if line.startswith("warning:"))
    assert "hostname: ci-runner vs laptop" in warning and "torch: 2.4.0 vs 2.5.0" in warning
    code, output = bench_compare(base, cand, "--strict")
    assert code == 3 and "different machines or software (--strict)" in output


def test_unreadable_files_are_usage_errors(tmp_path):
    base, _ = pair(tmp_path, draws(1), draws(2))
    empty = tmp_path / "empty.json"
    empty.write_text("")
    truncated = tmp_path / "truncated.json"
    truncated.write_text(base.read_text()[:100])
    foreign = tmp_path / "foreign.json"
    foreign.write_text('{"hello": "world"}')
    (tmp_path / "no-results").mkdir()
    cases = {
        tmp_path / "missing.json": "no results file at",
        tmp_path / "no-results": "no results file at",
        empty: "is not valid JSON",
        truncated: "is not valid JSON",
        foreign: "is not a bench results file",
    }
    for path, message in cases.items():
        code, output = bench_compare(base, path)
        assert code == 2 and message in output and "Traceback" not in output


def test_failed_runs_unfinished_files_and_empty_files_exit_3(tmp_path):
    base, cand = pair(tmp_path, draws(1), draws(2))
    failed = write(
        tmp_path / "failed.json",
        [timing_run(0, {"train_step": draws(3)}), record(Run(1, "throughput", {}), {}, "failed")],
    )
    code, output = bench_compare(base, failed)
    assert code == 3 and "run 001-run1 failed: RuntimeError: boom" in output
    interrupted = write(
        tmp_path / "interrupted.json", [timing_run(0, {"train_step": draws(3)})], status="running"
    )
    code, output = bench_compare(base, interrupted)
    assert code == 3 and "the file is 'running', not complete" in output
    no_runs = write(tmp_path / "none.json", [])
    code, output = bench_compare(base, no_runs)
    assert code == 3 and "nothing comparable" in output


def pytest_benchmark_file(path, medians: dict[str, list[float]], save_data=True, node="ci"):
    """A pytest-benchmark (5.x) JSON document holding the given per-iteration samples."""
    benchmarks = []
    for name, samples in medians.items():
        values = np.asarray(samples)
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        stats = {
            name: float(value)
            for name, value in {
                "min": values.min(),
                "max": values.max(),
                "mean": values.mean(),
                "stddev": values.std(ddof=1),
                "rounds": len(values),
                "median": median,
                "iqr": q3 - q1,
                "q1": q1,
                "q3": q3,
                "iqr_outliers": 0,
                "stddev_outliers": 0,
                "ld15iqr": values.min(),
                "hd15iqr": values.max(),
                "ops": 1 / values.mean(),
                "total": values.sum(),
                "iterations": 1,
            }.items()
        }
        stats["outliers"] = "0;0"
        if save_data:
            stats["data"] = list(values)
        benchmarks.append(
            {
                "group": "train_step",
                "name": name,
                "fullname": f"benchmarks/test_model_speed.py::{name}",
                "params": {"workload": name[16:-1]},
                "param": name[16:-1],
                "extra_info": {"torch": "2.4.0", "device": "cpu", "threads": 2},
                "options": {"min_rounds": 5, "max_time": 1.0, "timer": "perf_counter"},
                "stats": stats,
            }
        )
    document = {
        "machine_info": {"node": node, "processor": "x86_64", "python_version": "3.11.7"},
        "commit_info": {"id": "0123456789abcdef", "dirty": False},
        "benchmarks": benchmarks,
        "datetime": "2026-11-23T00:00:00",
        "version": "5.2.3",
    }
    path.write_text(json.dumps(document))
    return path


def test_pytest_benchmark_files_with_raw_data_or_only_stats(tmp_path):
    names = ["test_train_step[mlp]", "test_train_step[lenet5]"]
    base_samples = {name: draws(i, n=40) for i, name in enumerate(names)}
    cand_samples = {names[0]: draws(7, n=40), names[1]: [1.3 * s for s in draws(8, n=40)]}
    for save_data, method in ((True, "Mann-Whitney U"), (False, "99% CIs")):
        base = pytest_benchmark_file(tmp_path / "0001.json", base_samples, save_data)
        cand = pytest_benchmark_file(tmp_path / "0002.json", cand_samples, save_data)
        comparison = compare_files(base, cand, Rules())
        assert verdicts(comparison) == {
            ("train_step", names[0]): OK,
            ("train_step", names[1]): REGRESSION,
        }
        assert all(method in row.test for row in comparison.rows)
        assert comparison.exit_code == 1
    assert comparison.baseline.environment["torch"] == "2.4.0"
    code, output = bench_compare(base, cand, "--metric", "test_train_step*")
    assert code == 1 and "test_train_step[lenet5]" in output
    code, output = bench_compare(base, write(tmp_path / "bench.json", []))
    assert code == 2 and "cannot compare a pytest-benchmark file" in output


def test_pytest_benchmark_runs_of_another_batch_size_or_machine(tmp_path):
    """Benchmarks match by name and by the batch size, input shape and device that
    benchmarks/test_model_speed.py records; the machine is compared from machine_info."""
    names = ["test_train_step[mlp]", "test_train_step[lenet5]"]
    samples = {name: draws(i, n=40) for i, name in enumerate(names)}
    base = pytest_benchmark_file(tmp_path / "0001.json", samples)
    cand = pytest_benchmark_file(tmp_path / "0002.json", samples, node="laptop")
    document = json.loads(cand.read_text())
    document["benchmarks"][1]["extra_info"]["batch_size"] = 16
    cand.write_text(json.dumps(document))
    code, output = bench_compare(base, cand)
    assert code == 0 and "| test_train_step[mlp] " in output
    unmatched = "test_train_step[lenet5] (configuration differs in: batch_size: unset -> 16)"
    assert f"only in baseline (1): {unmatched}" in output
    assert f"only in candidate (1): {unmatched}" in output
    assert "warning: different machines or software" in output
    assert "hostname: ci vs laptop" in output


@pytest.mark.parametrize(
    ("entry", "message"),  # not "benchmark": pytest-benchmark owns that fixture name
    [({"name": "t", "fullname": "m::t"}, "'stats'"), ("oops", "without usable stats")],
)
def test_a_malformed_pytest_benchmark_file_is_a_usage_error(tmp_path, entry, message):
    good = pytest_benchmark_file(tmp_path / "0001.json", {"test_x": draws(1)})
    bad = tmp_path / "0002.json"
    bad.write_text(json.dumps({"benchmarks": [entry]}))
    code, output = bench_compare(good, bad)
    assert code == 2 and message in output and "Traceback" not in output


def markdown_tables(text: str) -> list[list[str]]:
    tables, current = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def separators(row: str) -> int:
    """The cell separators of a table row: pipes not escaped as \\|."""
    return len(re.findall(r"(?<!\\)\|", row))


def assert_valid_tables(text: str) -> int:
    """Every GitHub-flavoured table in ``text``: a header, a delimiter row with as many cells,
    and body rows with exactly as many cells."""
    tables = markdown_tables(text)
    for header, rule, *rows in tables:
        cells = separators(header)
        assert re.fullmatch(r"\|(:?-+:?\|)+", rule) and rule.count("|") == cells
        assert all(row.endswith("|") and separators(row) == cells for row in rows)
    return len(tables)


def test_markdown_summary_for_a_pull_request(tmp_path):
    base = write(
        tmp_path / "base.json",
        [timing_run(0, {"forward": draws(1), "train_step": draws(2)})],
    )
    cand = write(
        tmp_path / "cand.json",
        [
            timing_run(0, {"forward": draws(3), "train_step": [1.3 * s for s in draws(4)]}),
            timing_run(1, {"forward": draws(5)}, batch=128),
        ],
        threads=4,
    )
    summary = tmp_path / "out" / "summary.md"
    code, _ = bench_compare(base, cand, "--markdown-out", summary)
    assert code == 1
    text = summary.read_text()
    assert text.startswith("## bench compare: regression\n")
    assert "> **Warning:** different machines or software" in text and "threads: 2 vs 4" in text
    assert "### Changes beyond the thresholds" in text and "<details>" in text
    assert "Only in candidate (1): lenet5-synthetic-cpu-b128" in text
    assert assert_valid_tables(text) == 3  # environment, notable changes, all comparisons


def test_markdown_stays_valid_whatever_the_names(tmp_path):
    """A pipe or a line break in a benchmark's name cannot break a table row."""
    names = {"test_x[a|b]": draws(1), "test_x[line\nbreak]": draws(2)}
    base = pytest_benchmark_file(tmp_path / "0001.json", names)
    cand = pytest_benchmark_file(
        tmp_path / "0002.json", {name: [1.3 * s for s in v] for name, v in names.items()}
    )
    summary = tmp_path / "summary.md"
    code, output = bench_compare(base, cand, "--markdown-out", summary)
    assert code == 1 and "test_x[a\\|b]" in output and "test_x[line break]" in output
    assert assert_valid_tables(output) == 1
    assert assert_valid_tables(summary.read_text()) == 3


def test_help_lists_the_exit_codes_one_per_line():
    """Not rewrapped into one paragraph by click (the \\b marker), and no line too long."""
    help_text = CliRunner().invoke(cli, ["compare", "--help"]).output
    section = help_text[help_text.index("\n  Exit codes:\n") :].split("\n\n")[0]
    assert re.findall(r"^    (\d)  \S", section, re.MULTILINE) == ["0", "1", "2", "3"]
    assert max(map(len, help_text.splitlines())) <= 100


def test_json_output_carries_the_verdicts(tmp_path):
    base, cand = pair(tmp_path, draws(1), [1.3 * s for s in draws(2)])
    result = CliRunner().invoke(cli, ["compare", str(base), str(cand), "--json"])
    document = json.loads(result.output)
    assert result.exit_code == document["exit_code"] == 1
    (row,) = document["rows"]
    assert row["verdict"] == REGRESSION and row["p_value"] < 0.01
    assert row["baseline"]["n"] == 30 and row["change"] == pytest.approx(0.3, abs=0.05)


# --- what a verdict cannot know ----------------------------------------------------------------


def in_session(path, session):
    """``path`` as if written by the ``bench ab`` session ``session``."""
    document = json.loads(path.read_text())
    document["execution"] = {"interleaved": {"session": session, "rounds": 1}}
    path.write_text(json.dumps(document))
    return path


def bench_compare_json(*args):
    return json.loads(bench_compare(*args, "--json")[1])


def test_two_sequential_measurements_say_so_and_point_to_bench_ab(tmp_path):
    base, cand = pair(tmp_path, draws(1), draws(2))
    code, output = bench_compare(base, cand)
    assert code == 0 and f"caveat: {MEASURED_APART}" in output and "bench ab" in MEASURED_APART
    document = bench_compare_json(base, cand)
    assert document["measured_apart"] is True and document["caveats"] == [MEASURED_APART]


def test_one_bench_ab_session_was_measured_at_one_time(tmp_path):
    base, cand = pair(tmp_path, draws(1), draws(2))
    in_session(base, "s1")
    in_session(cand, "s1")
    code, output = bench_compare(base, cand)
    assert "interleaved: both sides" in output and "caveat:" not in output
    document = bench_compare_json(base, cand)
    assert document["measured_apart"] is False and document["caveats"] == []
    in_session(cand, "s2")  # two sessions: two times
    assert f"caveat: {MEASURED_APART}" in bench_compare(base, cand)[1]


def test_accuracies_alone_carry_no_timing_caveat(tmp_path):
    base = write(tmp_path / "a.json", [accuracy_run(0, 0, 0.9)], procedure="accuracy")
    cand = write(tmp_path / "b.json", [accuracy_run(0, 0, 0.9)], procedure="accuracy")
    assert "caveat:" not in bench_compare(base, cand)[1]


def test_a_pytest_benchmark_verdict_says_it_has_no_contention_record(tmp_path):
    base = pytest_benchmark_file(tmp_path / "0001.json", {"test_forward[mlp]": draws(1)})
    slower = [1.3 * s for s in draws(2)]
    cand = pytest_benchmark_file(tmp_path / "0002.json", {"test_forward[mlp]": slower})
    summary = tmp_path / "summary.md"
    code, output = bench_compare(base, cand, "--markdown-out", summary)
    assert code == 1 and f"caveat: {NO_CONTENTION_RECORD}" in output
    assert f"> **Caveat:** {NO_CONTENTION_RECORD}" in summary.read_text()
    document = bench_compare_json(base, cand)
    assert document["contention_recorded"] is False
    assert document["caveats"] == [MEASURED_APART, NO_CONTENTION_RECORD]
    bench_files = pair(tmp_path, draws(1), draws(2))
    assert bench_compare_json(*bench_files)["contention_recorded"] is True
