"""Verdicts that follow the evidence: noise excuses only changes within it, contention makes a
verdict untrustworthy (exit 3), and interleaved rounds cancel a drifting machine.

The issue's three cases, each with its new outcome:

1. a measurement beside another busy torch process is marked contended (tests/test_contention.py
   measures it for real);
2. a fourfold slowdown whose candidate is noisy fails (exit 1), and when the candidate is marked
   contended there is no trustworthy verdict (exit 3), never a pass;
3. the same code measured before and after the machine changed is a false regression when the
   sides are measured one after the other, and ok when they are interleaved.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from test_compare import bench_compare, draws, timing_run, write

from harness.cli import cli
from harness.comparing.matching import Comparison, ResultSet, compare_files
from harness.comparing.output import PAIRED_NOTE, table_rows, to_json, to_markdown, to_text
from harness.comparing.verdicts import (
    CONTENDED,
    COUNT,
    MIN_ROUNDS,
    NOISY,
    OK,
    REGRESSION,
    TIME,
    Measurement,
    Rules,
    judge,
)
from harness.measuring.contention import usable_cpus

BUSY = {"contended": True, "evidence": "this process's threads waited for a CPU 50% of the time"}
QUIET = {"contended": False, "evidence": "load average 0.10 -> 0.10"}


def with_contention(run, **records):
    """``run`` with the contention record of each named mode replaced."""
    for mode, contention in records.items():
        run["metrics"][mode]["contention"] = contention
    return run


def files(tmp_path, base_samples, cand_samples, base=QUIET, cand=QUIET):
    return (
        write(
            tmp_path / "base.json",
            [with_contention(timing_run(0, {"forward": base_samples}), forward=base)],
        ),
        write(
            tmp_path / "cand.json",
            [with_contention(timing_run(0, {"forward": cand_samples}), forward=cand)],
        ),
    )


def test_a_fourfold_slowdown_fails_although_the_candidate_is_noisy(tmp_path):
    """Case 2 without contention evidence: +300%, the candidate's IQR far above 25%, but its
    lower quartile is far above the baseline's upper quartile: beyond the noise, a regression."""
    base, cand = files(tmp_path, draws(1), [4 * s for s in draws(2, spread=0.5)])
    row = compare_files(base, cand, Rules()).rows[0]
    assert row.candidate.noisy and row.candidate.p25 > row.baseline.p75
    assert row.verdict == REGRESSION
    assert bench_compare(base, cand)[0] == 1


def test_noise_still_excuses_a_change_within_it(tmp_path):
    base, cand = files(tmp_path, draws(1, spread=0.4), [1.5 * s for s in draws(2, spread=0.4)])
    row = compare_files(base, cand, Rules()).rows[0]
    assert row.candidate.p25 < row.baseline.p75 and row.verdict == NOISY
    assert bench_compare(base, cand)[0] == 0


def test_a_slowdown_of_a_contended_candidate_is_no_verdict_and_exit_3(tmp_path):
    """Case 2 as measured: the candidate ran beside busy processes."""
    base, cand = files(tmp_path, draws(1), [4 * s for s in draws(2, spread=0.5)], cand=BUSY)
    code, output = bench_compare(base, cand)
    assert code == 3
    assert (
        CONTENDED in output and "contended: lenet5-synthetic-cpu-b32 forward, candidate" in output
    )
    assert "waited for a CPU 50%" in output
    summary = tmp_path / "summary.md"
    bench_compare(base, cand, "--markdown-out", summary)
    assert "no trustworthy verdict" in summary.read_text().splitlines()[0]


def test_a_contended_baseline_cannot_vouch_for_the_candidate(tmp_path):
    """An inflated baseline hides a slower candidate: 'ok' would be a guess."""
    base, cand = files(tmp_path, [2 * s for s in draws(1)], draws(2), base=BUSY)
    assert compare_files(base, cand, Rules()).rows[0].verdict == CONTENDED
    assert bench_compare(base, cand)[0] == 3


def test_a_regression_despite_a_contended_baseline_stands(tmp_path):
    """Contention only slows the side it hits: a clean candidate slower than an inflated
    baseline is slower still than a clean one."""
    base, cand = files(tmp_path, draws(1), [2 * s for s in draws(2)], base=BUSY)
    assert compare_files(base, cand, Rules()).rows[0].verdict == REGRESSION
    assert bench_compare(base, cand)[0] == 1


def test_a_contended_candidate_that_is_not_slower_stands(tmp_path):
    base, cand = files(tmp_path, draws(1), draws(2), cand=BUSY)
    assert compare_files(base, cand, Rules()).rows[0].verdict == OK
    assert bench_compare(base, cand)[0] == 0


def test_an_unclear_speed_up_of_a_contended_candidate_stands(tmp_path):
    """Contention slows and blurs; it cannot make a candidate look faster."""
    base, cand = files(tmp_path, [0.010, 0.030], [0.004, 0.016], cand=BUSY)
    row = compare_files(base, cand, Rules()).rows[0]
    assert row.change < 0 and row.verdict == "not significant"


def test_rounds_that_do_not_split_the_samples_are_refused(tmp_path):
    run = timing_run(0, {"forward": draws(1, n=10)})
    run["metrics"]["forward"]["rounds"] = [{"n": 4}, {"n": 0}, {"n": 6}]
    bad = write(tmp_path / "bad.json", [run])
    good = write(tmp_path / "good.json", [timing_run(0, {"forward": draws(2)})])
    code, output = bench_compare(good, bad)
    assert code == 2 and "its rounds do not split its samples" in output


def test_a_clean_regression_elsewhere_still_exits_1(tmp_path):
    samples = {"forward": draws(1), "train_step": draws(2)}
    slower = {"forward": [2 * s for s in draws(3)], "train_step": [2 * s for s in draws(4)]}
    base = write(tmp_path / "base.json", [timing_run(0, samples)])
    run = with_contention(timing_run(0, slower), forward=QUIET, train_step=BUSY)
    cand = write(tmp_path / "cand.json", [run])
    verdicts = {row.metric: row.verdict for row in compare_files(base, cand, Rules()).rows}
    assert verdicts == {"forward": REGRESSION, "train_step": CONTENDED}
    assert bench_compare(base, cand)[0] == 1


# Interleaved rounds -------------------------------------------------------------------------


def rounds(rng, medians, n=8, spread=0.03):
    """One round of ``n`` log-normal samples around each of ``medians``."""
    return [list(m * np.exp(rng.normal(0.0, spread, n))) for m in medians]


def measurement(round_samples, contended=()):
    flags = tuple(i in contended for i in range(len(round_samples)))
    samples = [x for r in round_samples for x in r]
    return Measurement.of(
        TIME, samples, rounds=tuple(map(tuple, round_samples)), round_contended=flags
    )


def drifting_machine(rounds_count=10, step_at=5, slow=1.47):
    """The machine's speed over time: quiet for the first rounds, 47% slower afterwards."""
    return [0.00224 * (slow if r >= step_at else 1.0) for r in range(rounds_count)]


def test_case_3_measured_one_after_the_other_is_a_false_regression():
    """The same code, the baseline measured before the machine changed, the candidate after:
    nothing in two independent files can tell that from a slower candidate."""
    rng = np.random.default_rng(3)
    quiet, slowed = drifting_machine()[0], drifting_machine()[-1]
    base = Measurement.of(TIME, [x for r in rounds(rng, [quiet] * 5) for x in r])
    cand = Measurement.of(TIME, [x for r in rounds(rng, [slowed] * 5) for x in r])
    assert judge("run", "forward_backward", base, cand, Rules()).verdict == REGRESSION


def test_case_3_interleaved_the_drift_hits_both_sides_and_cancels():
    rng = np.random.default_rng(3)
    machine = drifting_machine()
    base, cand = measurement(rounds(rng, machine)), measurement(rounds(rng, machine))
    row = judge("run", "forward_backward", base, cand, Rules(), interleaved=True)
    assert row.verdict == OK and "Wilcoxon signed-rank, 10 interleaved rounds" in row.test
    assert row.threshold == 0.05  # interleaving earns a tighter default threshold


def test_interleaved_rounds_catch_a_10_percent_slowdown_through_the_drift():
    rng = np.random.default_rng(4)
    machine = drifting_machine()
    base = measurement(rounds(rng, machine))
    cand = measurement(rounds(rng, [1.10 * m for m in machine]))
    row = judge("run", "forward", base, cand, Rules(), interleaved=True)
    assert row.verdict == REGRESSION and row.change == pytest.approx(0.10, abs=0.02)


def test_contended_rounds_are_dropped_in_pairs_and_the_rest_decide():
    rng = np.random.default_rng(5)
    machine = [0.002] * 12
    base_rounds, cand_rounds = rounds(rng, machine), rounds(rng, [1.2 * m for m in machine])
    base_rounds[2] = [3 * x for x in base_rounds[2]]  # contended on the baseline's side
    cand_rounds[7] = [5 * x for x in cand_rounds[7]]  # and on the candidate's
    base, cand = measurement(base_rounds, {2}), measurement(cand_rounds, {7})
    row = judge("run", "forward", base, cand, Rules(), interleaved=True)
    assert row.verdict == REGRESSION and "2 contended rounds dropped" in row.test
    assert "10 interleaved rounds" in row.test


def test_too_few_clean_rounds_leave_no_verdict():
    rng = np.random.default_rng(6)
    machine = [0.002] * 10
    contended = set(range(10 - MIN_ROUNDS + 1))
    base = measurement(rounds(rng, machine), contended)
    cand = measurement(rounds(rng, [2 * m for m in machine]))
    row = judge("run", "forward", base, cand, Rules(), interleaved=True)
    assert row.verdict == CONTENDED and f"{MIN_ROUNDS} needed" in row.test


def test_a_paired_change_the_medians_contradict_shows_both_and_says_why(tmp_path):
    """Five of nine rounds 5% faster, but the slow stretch of the machine holds most of the
    candidate's samples and few of the baseline's: the pooled medians rise while the rounds say
    faster. The table shows the change the test judged, the medians' own, and a note on why."""
    quiet, busy = [[1.0]] * 5, [[10.0]] * 4
    base = measurement(quiet + busy)
    cand = measurement([[0.95]] * 4 + [[9.5]] + [[9.5]] * 4)
    row = judge("run", "epoch", base, cand, Rules(), interleaved=True)
    assert row.change == pytest.approx(-0.05) and base.median == 1.0 and cand.median == 9.5
    (shown,) = table_rows([row])
    assert shown["change"] == "-5.0% (medians +850.0%)"
    sides = [ResultSet(tmp_path / side, "bench", {}, {}, session="s1") for side in ("b", "c")]
    comparison = Comparison(*sides, Rules(), [row], [], [], [])
    assert f"note: {PAIRED_NOTE}" in to_text(comparison)
    assert PAIRED_NOTE in to_markdown(comparison)
    (data,) = json.loads(to_json(comparison))["rows"]
    assert data["paired"] and data["medians_change"] == pytest.approx(8.5)


def test_independent_files_are_never_paired(tmp_path):
    """Rounds pair only within one bench ab session: files of two sessions are independent."""
    rng = np.random.default_rng(7)
    machine = drifting_machine()

    def ab_file(path, session, medians):
        run = timing_run(0, {"forward": [x for r in rounds(rng, medians) for x in r]})
        run["metrics"]["forward"]["rounds"] = [{"n": 8, "contended": False}] * len(medians)
        document = json.loads(write(path, [run]).read_text())
        document["execution"] = {"interleaved": {"session": session, "side": path.stem}}
        path.write_text(json.dumps(document))
        return path

    base = ab_file(tmp_path / "base.json", "s1", machine)
    same = ab_file(tmp_path / "cand.json", "s1", machine)
    other = ab_file(tmp_path / "other.json", "s2", machine[5:] * 2)
    paired = compare_files(base, same, Rules())
    assert paired.interleaved and "Wilcoxon" in paired.rows[0].test
    assert "interleaved: both sides measured in alternating rounds" in bench_compare(base, same)[1]
    unpaired = compare_files(base, other, Rules())
    assert not unpaired.interleaved and "Mann-Whitney" in unpaired.rows[0].test


# Case 2, measured for real -------------------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux's /proc")
def test_case_2_measured_for_real_a_loaded_candidate_never_passes(tmp_path):
    """A quiet baseline, then the same model measured beside busy processes: the slowdown is
    real on the clock, the code is the same, and bench compare refuses to call it either way."""
    # batch 512: a forward of several ms, longer than the scheduler's slice, so that sharing a
    # CPU shows in the median and not only in a few samples (a 1 ms forward often finishes
    # before it is preempted)
    time_args = ["time", "--model", "lenet5", "--dataset", "digits", "--batch-size", "512"]
    time_args += ["--threads", "2", "--mode", "forward", "--warmup", "1", "--repeats", "8"]
    time_args += ["--min-time", "0", "--max-time", "3", "--quiet"]
    runner = CliRunner()
    assert runner.invoke(cli, [*time_args, "--out", str(tmp_path / "base")]).exit_code == 0
    # Three busy processes per CPU leave the two torch threads about a fifth of the machine.
    hogs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(3 * usable_cpus() + 1)
    ]
    try:
        assert runner.invoke(cli, [*time_args, "--out", str(tmp_path / "cand")]).exit_code == 0
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    comparison = compare_files(tmp_path / "base", tmp_path / "cand", Rules())
    (row,) = [row for row in comparison.rows if row.kind == TIME]
    # the same code counts the same on a loaded machine: every counter is ok
    assert {r.verdict for r in comparison.rows if r.kind == COUNT} == {OK}
    assert row.candidate.contended
    # slower on the clock than a quiet baseline; a baseline itself measured on a busy machine
    # (the run records it contended) may have been slowed as much, and vouches for nothing
    assert row.change > 0.10 or row.baseline.contended
    assert row.verdict == CONTENDED and comparison.exit_code == 3
