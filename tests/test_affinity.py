"""``bench time --cpus``: each run pinned to the same CPUs, whichever process performs it, and the
CPUs recorded; and ``bench time`` of the settings file's suite.

Nothing here asserts a speed: only where the runs ran and what the results file says.
"""

import json
import os
import threading

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.measuring.affinity import pinned, pinned_cpus

affinity = pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity"), reason="no CPU affinity calls on this platform"
)
QUICK = "--model lenet5 --dataset synthetic --dataset-opt shape=1x28x28 --batch-size 2"
QUICK += " --mode forward --warmup 0 --repeats 2 --min-time 0 --max-time 1 --min-repeats 1"


def bench(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


@affinity
def test_pinned_moves_every_thread_of_the_process_and_then_back():
    """Not only the calling thread (all that sched_setaffinity(0) moves on Linux): a pool
    thread started before, as torch's are by an earlier run, is pinned too."""
    usable = os.sched_getaffinity(0)
    if len(usable) < 2:
        pytest.skip("one usable CPU: pinning to it changes nothing")
    target = max(usable)
    started, stop = threading.Event(), threading.Event()
    pool = threading.Thread(target=lambda: (started.set(), stop.wait()))
    pool.start()
    started.wait()
    try:
        with pinned((target,)):
            assert os.sched_getaffinity(0) == {target}
            assert os.sched_getaffinity(pool.native_id) == {target}
        assert os.sched_getaffinity(0) == usable == os.sched_getaffinity(pool.native_id)
    finally:
        stop.set()
        pool.join()


@affinity
@pytest.mark.parametrize("executor", [[], ["--isolate"]], ids=["in-process", "worker-process"])
def test_bench_time_pins_each_run_to_the_cpus_given_and_records_them(tmp_path, executor):
    before = os.sched_getaffinity(0)
    cpu = max(before)
    out = tmp_path / "t"
    result = bench("time", *QUICK.split(), "--cpus", cpu, *executor, "--json", "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["execution"]["cpus"] == [cpu]
    (run,) = data["runs"]
    assert run["placement"]["cpus"] == [cpu]  # read in the process that measured
    assert run["placement"]["threads"] == 1  # --threads: one per CPU given
    assert os.sched_getaffinity(0) == before  # this process runs where it did


@affinity
def test_cpus_auto_takes_the_last_usable_cpu_per_thread_and_any_pins_nothing(tmp_path):
    usable = sorted(os.sched_getaffinity(0))
    out = tmp_path / "auto"
    result = bench("time", *QUICK.split(), "--cpus", "auto", "--out", out)
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    assert data["execution"]["cpus"] == list(pinned_cpus("auto", 1)) == [usable[-1]]
    result = bench("time", *QUICK.split(), "--out", tmp_path / "any")
    data = json.loads((tmp_path / "any" / "results.json").read_text())
    assert data["execution"]["cpus"] == [] and data["runs"][0]["placement"]["cpus"] == usable


@pytest.mark.parametrize(
    "args, message",
    [
        (["--cpus", "9999"], "--cpus 9999: CPU 9999 is not usable here"),
        (["--cpus", "fast"], "--cpus fast: expected auto, any or CPU numbers like 0,1"),
        (["--cpus", "auto", "--threads", "9999"], "--threads 9999 needs 9999 CPUs"),
    ],
)
@affinity
def test_cpus_that_cannot_be_had_are_a_usage_error(tmp_path, args, message):
    result = bench("time", *QUICK.split(), *args, "--dry-run")
    assert result.exit_code == 2 and message in result.output


SUITE = """
name = "ci"
procedure = "throughput"
models = ["lenet5", "mlp"]
datasets = ["synthetic"]

[throughput]
batch_sizes = [2]
modes = ["forward"]
"""


def test_bench_time_without_a_model_times_the_settings_file_suite(tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    result = bench("time", "--dry-run")
    assert result.exit_code == 2 and "give --model NAME" in result.output
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "ci.toml").write_text(SUITE)
    (tmp_path / "bench.toml").write_text('suite = "suites/ci.toml"\n')
    monkeypatch.chdir(tmp_path / "suites")  # the path is the settings file's, not the cwd's
    result = bench("time", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    runs = [row["run"] for row in plan["plan"]]
    assert plan["suite"] == "ci" and runs == ["lenet5-synthetic-cpu-b2", "mlp-synthetic-cpu-b2"]
    result = bench("time", "--model", "cnn", "--dry-run", "--json")  # --model: not the suite
    assert json.loads(result.output)["suite"] == "time-cnn"
