"""Contention detection: the rules on kernel figures written by hand, then the real thing, a
measurement taken while busy processes hold every core (the issue's 87.7 ms case)."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cli import cli
from harness.measuring import contention
from harness.measuring.contention import assess, snapshot, usable_cpu_ids, usable_cpus


def fake_proc(root: Path, *, tasks, cpu, load="0.50 0.40 0.30 1/90 123", mhz=(2400.0, 2400.0)):
    """A /proc with the files :mod:`harness.measuring.contention` reads: ``tasks`` maps a thread id
    to (ns on a CPU, ns waiting for one); ``cpu`` maps a CPU to its /proc/stat ticks."""
    for tid, (on, wait) in tasks.items():
        (root / "self" / "task" / str(tid)).mkdir(parents=True, exist_ok=True)
        (root / "self" / "task" / str(tid) / "schedstat").write_text(f"{on} {wait} 7\n")
    total = [sum(column) for column in zip(*cpu.values(), strict=True)]
    lines = [f"cpu  {' '.join(map(str, total))} 0 0"]
    lines += [f"cpu{n} {' '.join(map(str, t))} 0 0" for n, t in cpu.items()]
    (root / "stat").write_text("\n".join([*lines, "intr 1 2 3", "ctxt 99"]) + "\n")
    (root / "loadavg").write_text(load + "\n")
    (root / "pressure").mkdir(exist_ok=True)
    (root / "pressure" / "cpu").write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n")
    (root / "cpuinfo").write_text(
        "".join(f"processor\t: {i}\ncpu MHz\t\t: {m}\n\n" for i, m in enumerate(mhz))
    )


def window(tmp_path, before, after, seconds=1.0):
    """Snapshots of two fake /procs (``fake_proc`` arguments), ``seconds`` apart."""
    tmp_path.mkdir(exist_ok=True)
    fake_proc(tmp_path / "a", **before)
    fake_proc(tmp_path / "b", **after)
    first = snapshot(tmp_path / "a")
    return first, replace(snapshot(tmp_path / "b"), wall_s=first.wall_s + seconds)


# /proc/stat ticks: user nice system idle iowait irq softirq steal; 100 ticks = 1 CPU-second
def ticks(busy, idle, steal=0):
    return [busy, 0, 0, idle, 0, 0, 0, steal]


def machine(*cpus):
    """Two CPUs' (busy, idle[, steal]) ticks."""
    return dict(enumerate(ticks(*c) for c in cpus))


START = machine((0, 0), (0, 0))
BOTH = (0, 1)


def test_a_quiet_measurement_is_not_contended(tmp_path):
    # one thread on a CPU the whole second, never waiting; the machine's other CPU idle
    before, after = window(
        tmp_path,
        {"tasks": {1: (0, 0)}, "cpu": START},
        {"tasks": {1: (1_000_000_000, 1_000_000)}, "cpu": machine((100, 0), (0, 100))},
    )
    record = assess(before, after, threads=1, cpus=BOTH)
    assert record["contended"] is False and record["checked"] is True
    assert record["run_queue_wait"] == pytest.approx(0.001, abs=1e-4)
    assert record["other_cores"] == pytest.approx(0.0, abs=1e-3)
    assert record["own_cores"] == pytest.approx(1.0)
    assert "waited" not in record["evidence"] and "load average 0.50" in record["evidence"]


def test_threads_waiting_for_a_cpu_mark_the_measurement(tmp_path):
    # two threads, each on a CPU half the second and waiting the other half: the 87.7 ms case
    before, after = window(
        tmp_path,
        {"tasks": {1: (0, 0), 2: (0, 0)}, "cpu": START},
        {
            "tasks": {1: (500_000_000,) * 2, 2: (500_000_000,) * 2},
            "cpu": machine((100, 0), (100, 0)),
        },
    )
    record = assess(before, after, threads=2, cpus=BOTH)
    assert record["contended"] is True
    assert record["run_queue_wait"] == pytest.approx(0.5)
    assert record["other_cores"] == pytest.approx(1.0)
    assert "waited for a CPU 50%" in record["evidence"]
    assert "other processes kept 1.0 of the 2 CPUs it may use busy" in record["evidence"]


def test_a_busy_neighbour_on_the_free_core_is_no_contention_for_one_thread(tmp_path):
    before, after = window(
        tmp_path,
        {"tasks": {1: (0, 0)}, "cpu": START},
        {"tasks": {1: (1_000_000_000, 0)}, "cpu": machine((100, 0), (100, 0))},
    )
    assert assess(before, after, threads=1, cpus=BOTH)["contended"] is False
    # the same neighbour beside two threads leaves them no free core
    record = assess(before, after, threads=2, cpus=BOTH)
    assert record["contended"] is True and "beside the 2 threads" in record["evidence"]


def test_pinned_to_one_cpu_only_that_cpu_counts(tmp_path):
    """Pinned to CPU 1 (as bench ab pins its workers): a neighbour busy on CPU 0 is no
    contention, one sharing CPU 1 is, though the machine as a whole is just as busy."""
    elsewhere = window(
        tmp_path / "a",
        {"tasks": {1: (0, 0)}, "cpu": START},
        {"tasks": {1: (1_000_000_000, 0)}, "cpu": machine((100, 0), (100, 0))},
    )
    record = assess(*elsewhere, threads=1, cpus=(1,))
    assert record["contended"] is False and record["other_cores"] == pytest.approx(0.0)
    shared = window(
        tmp_path / "b",
        {"tasks": {1: (0, 0)}, "cpu": START},
        {"tasks": {1: (500_000_000, 0)}, "cpu": machine((0, 100), (100, 0))},
    )
    record = assess(*shared, threads=1, cpus=(1,))
    assert record["contended"] is True and record["other_cores"] == pytest.approx(0.5)
    assert "of the 1 CPU it may use" in record["evidence"]


def test_stolen_time_and_a_moving_clock_are_reported(tmp_path):
    before, after = window(
        tmp_path,
        {"tasks": {1: (0, 0)}, "cpu": START, "mhz": (3000.0, 3000.0)},
        {
            "tasks": {1: (900_000_000, 0)},
            "cpu": machine((90, 0, 10), (0, 90, 10)),
            "mhz": (2000.0, 2000.0),
        },
    )
    record = assess(before, after, threads=1, cpus=BOTH)
    assert record["contended"] is True and record["steal"] == pytest.approx(0.1)
    assert "hypervisor stole 10%" in record["evidence"]
    assert "CPU clock changed 3000 -> 2000 MHz" in record["evidence"]


def test_without_the_kernel_files_nothing_is_claimed(tmp_path):
    (tmp_path / "empty").mkdir()
    before = snapshot(tmp_path / "empty")
    after = replace(snapshot(tmp_path / "empty"), wall_s=before.wall_s + 1.0)
    record = assess(before, after, threads=1, cpus=BOTH)
    assert record["contended"] is False and record["checked"] is False
    assert record["evidence"].startswith("not checked")


def test_a_window_below_the_kernels_resolution_is_not_judged(tmp_path):
    before, after = window(
        tmp_path,
        {"tasks": {1: (0, 0)}, "cpu": START},
        {"tasks": {1: (0, 9_000_000)}, "cpu": machine((1, 0), (0, 1))},
        seconds=0.001,
    )
    record = assess(before, after, threads=1, cpus=BOTH)
    assert record["contended"] is False and record["evidence"] == "window too short"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the kernel files are Linux's")
def test_this_machine_exposes_the_evidence():
    """The rules need /proc/self/task/*/schedstat and /proc/stat; on Linux both are there."""
    now = snapshot()
    assert now.tasks and set(usable_cpu_ids()) <= set(now.cpu_ticks) and usable_cpus() >= 1


@pytest.fixture
def busy_cores():
    """One busy-loop process per usable CPU, and one more: every core is taken."""
    code = "while True: pass"
    hogs = [subprocess.Popen([sys.executable, "-c", code]) for _ in range(usable_cpus() + 1)]
    yield
    for hog in hogs:
        hog.kill()
        hog.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux's /proc")
def test_bench_time_beside_busy_processes_is_marked_contended(tmp_path, busy_cores):
    """Case 1 of the issue: two torch threads on cores that other processes want. Whatever the
    spread of the samples, every measurement is marked, with the evidence in words."""
    out = tmp_path / "t"
    result = CliRunner().invoke(
        cli,
        ["time", "--model", "cnn-small", "--dataset", "digits", "--batch-size", "32"]
        + ["--threads", "2", "--mode", "forward", "--quick", "--quiet", "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    record = json.loads((out / "results.json").read_text())["runs"][0]["metrics"]["forward"]
    assert record["contention"]["contended"] is True
    assert "waited for a CPU" in record["contention"]["evidence"]
    assert "forward contended" in result.output  # the table's flags column
    assert "taken under contention" in (out / "report.md").read_text()


def test_watch_records_into_the_dict_it_yields():
    import torch

    with contention.watch(torch.device("cpu"), threads=1) as record:
        assert record == {}
        sum(i * i for i in range(200_000))
    assert {"contended", "checked", "evidence", "threads", "cpus"} <= set(record)
    assert record["threads"] == 1
