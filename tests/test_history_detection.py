"""Change points that ``bench history detect`` must find, place and size: the cases of
``benchmarks/history_detection.py`` on its own seeded series (the goals it prints are asserted
here), a large step in a short history, and what detect says of a series without a change
point. The detector draws nothing at random, so a seeded series gives one answer."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_history import history, recorded, sha

from harness.history.archive import HistoryStore
from harness.history.changepoints import Split, between_neighbours, commits_needed
from harness.history.detect import build_series, detect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import history_detection as cases  # noqa: E402  (the benchmark's cases and their scoring)


@pytest.mark.parametrize("case", list(cases.CASES))
def test_every_change_is_found_at_its_commit_and_sized_between_its_neighbours(case):
    """60 commits of 8 samples, 3% noise, 10 series: each change found at its commit in at
    least 9 series, its size within 1 point of the truth on average, nothing else found.
    Sizes and noise used to be measured on the segment where a split was first found: a step
    that returned was found in 2 of 10 series, at a third of its size."""
    rng = np.random.default_rng(0)
    changes = cases.CASES[case]
    made = [cases.gaussian(f"s{i}", changes, rng) for i in range(10)]
    score = cases.score(detect(made), {one.key: changes for one in made})
    assert score.false == 0
    for (at, step), found, errors in zip(changes, score.exact, score.errors, strict=True):
        assert found >= 9, f"{step:+.1%} at {at}: found in {found} of 10"
        assert np.mean(errors) <= 1.0, f"{step:+.1%} at {at}: sizes off by {errors}"


@pytest.mark.parametrize("at", [4, 6])
def test_an_18_percent_step_is_found_in_8_commits_of_3_runs_each(tmp_path, at):
    """Each commit measured in 3 runs of 30 samples; runs differ by 4% (run-to-run noise),
    samples within a run by 2%. A permutation test of 8 whole commits could not go below
    2/C(8, at) before any correction: this step used to print only 'no change points'."""
    rng = np.random.default_rng(at)
    paths = []
    for commit in range(8):
        level = 0.010 * (1.18 if commit >= at else 1.0)
        for run in range(3):
            samples = level * (1 + rng.normal(0, 0.04)) * (1 + rng.normal(0, 0.02, 30))
            date = f"2026-11-01T00:{commit:02d}:{run:02d}+00:00"
            path = tmp_path / f"c{commit}-r{run}" / "results.json"
            paths.append(recorded(path, samples, sha(commit), date))
    root = tmp_path / "history"
    assert history("--history", root, "add", *paths).exit_code == 0
    result = history("--history", root, "detect")
    assert result.exit_code == 1, result.output
    (change,) = json.loads(history("--history", root, "detect", "--json").stdout)["changes"]
    assert change["after_commit"] == sha(at) and change["direction"] == "regression"
    assert 14 < change["change"] < 22


def test_a_series_without_a_change_point_shows_its_best_split_and_what_it_would_need(tmp_path):
    # commits differ by about 3%; the last two are 6% slower: too few, too noisy to tell yet
    levels = [1.03, 0.97, 1.02, 0.98, 1.03, 0.97, 1.04, 1.08]
    root = tmp_path / "history"
    for i, level in enumerate(levels):
        samples = 0.010 * level * (1 + np.random.default_rng(i).normal(0, 0.002, 30))
        path = recorded(tmp_path / f"c{i}.json", samples, sha(i), f"2026-11-01T00:{i:02d}:00")
        assert history("--history", root, "add", path).exit_code == 0
    result = history("--history", root, "detect")
    assert result.exit_code == 0 and "no change points" in result.output
    assert "no change point in 1 series; the best split of each:" in result.output
    document = json.loads(history("--history", root, "detect", "--json").stdout)
    (quiet,) = document["no_change"]
    assert quiet["after_commit"] == sha(6) and 4 < quiet["change"] < 8
    assert quiet["p_value"] > 0.05 and quiet["change"] > quiet["floor"] >= quiet["noise"]
    assert isinstance(quiet["commits_needed"], int) and quiet["commits_needed"] > 2
    line = next(line for line in result.output.splitlines() if f"{sha(5)[:10]}.." in line)
    assert f"{quiet['commits_needed']} commits after it (80% power)" in line


def test_a_split_smaller_than_the_floor_is_never_going_to_be_reported(tmp_path):
    root = tmp_path / "history"
    for i in range(6):
        samples = 0.010 * (1 + np.random.default_rng(i).normal(0, 0.01, 30))
        path = recorded(tmp_path / f"c{i}.json", samples, sha(i), f"2026-11-01T00:{i:02d}:00")
        assert history("--history", root, "add", path).exit_code == 0
    detection = detect(build_series(HistoryStore(root).points()))
    (quiet,) = detection.quiet
    assert abs(quiet.best.change) < quiet.floor and quiet.commits_needed is None
    assert "never: under the 2.00 % floor" in history("--history", root, "detect").output


@pytest.mark.parametrize(("before", "change", "spread"), [(8, 0.06, 0.03), (20, 0.03, 0.02)])
def test_commits_needed_is_what_the_test_itself_then_passes(before, change, spread):
    """A change of the planned size after ``before`` commits, both sides with the series' noise
    (mean and standard deviation exactly), followed by the commits planned: the t-test the
    detector runs passes it at the threshold the plan was made for."""
    threshold = 0.01
    needed = commits_needed(Split(0, before // 2, before, change, spread, 1.0), before, threshold)
    assert needed is not None and needed >= 2

    def side(count: int, mean: float) -> np.ndarray:
        shape = np.linspace(-1.0, 1.0, count)
        return mean + shape * spread / shape.std(ddof=1)

    values = np.concatenate([side(before, 1.0), side(needed, 1.0 + change)])
    (found,) = between_neighbours(values.tolist(), [before])
    assert found.p_value <= threshold
    stricter = commits_needed(Split(0, 1, before, change, spread, 1.0), before, threshold / 100)
    assert stricter is None or stricter > needed


def test_a_counter_change_is_reported_exactly_at_its_commit_however_noisy_the_timings(
    tmp_path, monkeypatch
):
    """8 commits whose forward timing is noise alone (30%), and whose forward pass dispatches
    one more operator from commit 5: that commit is the change, exact, and nothing else is."""
    rng = np.random.default_rng(1)
    paths = []
    for commit in range(8):
        samples = 0.010 * (1 + rng.normal(0, 0.3, 30)).clip(0.1)
        path = tmp_path / f"c{commit}" / "results.json"
        recorded(path, samples, sha(commit), f"2026-11-01T00:{commit:02d}:00+00:00")
        document = json.loads(path.read_text())
        counters = {"operators": 12 + (commit >= 5), "allocations": 11, "syncs": 0}
        document["runs"][0]["metrics"]["forward"]["counters"] = counters
        path.write_text(json.dumps(document))
        paths.append(path)
    root = tmp_path / "history"
    assert history("--history", root, "add", *paths).exit_code == 0
    result = history("--history", root, "detect")
    assert result.exit_code == 1, result.output
    assert "exact" in result.output
    # with the bench bisect command that finds the commit, were the range longer
    offer = (
        f"bench bisect --good {sha(4)[:12]} --bad {sha(5)[:12]} --model lenet5 --dataset "
        "synthetic --dataset-opt shape=1x28x28 --batch-size 32 --mode forward --device cpu "
        "--threads 2 --counters --metric forward.operators"  # the files' recorded threads
    )
    assert f"bisect: lenet5-synthetic-cpu-b32 forward.operators: {offer}" in result.output
    (change,) = json.loads(history("--history", root, "detect", "--json").stdout)["changes"]
    assert change["bisect"] == offer
    assert change["metric"] == "forward.operators" and change["exact"]
    assert (change["before_commit"], change["after_commit"]) == (sha(4), sha(5))
    assert change["direction"] == "regression" and change["change"] == pytest.approx(100 / 12)
    monkeypatch.chdir(tmp_path)  # a settings file that allows 10% more operators
    (tmp_path / "bench.toml").write_text('counter_thresholds = {"forward.operators" = 10}\n')
    assert history("--history", root, "detect").exit_code == 0
