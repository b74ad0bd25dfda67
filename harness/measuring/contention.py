"""Did a timing measurement have the CPU to itself? Evidence from the kernel, and a verdict.

A busy machine can slow a measurement by orders of magnitude without making it noisy: two torch
threads on two cores that another process also wants spend most of their time waiting for each
other, and every iteration is slow by the same amount (an IQR of 5% around a median 50x too
high). The spread of the samples cannot tell; the kernel can. :func:`watch` reads, before and
after a measurement:

- each of this process's threads' time on a CPU and time spent *runnable but waiting* for one
  (``/proc/self/task/*/schedstat``): the direct evidence;
- the busy and stolen time of each CPU this process may run on (``/proc/stat``), from which the
  CPU time other processes took on those CPUs follows (their busy time minus ours), and the
  hypervisor's steal;
- the CPU pressure stall time (``/proc/pressure/cpu``), the load average and the number of
  runnable tasks (``/proc/loadavg``), and the CPU clock (``/proc/cpuinfo``): context;
- on CUDA, the other processes that used the GPU meanwhile (NVML's per-process utilization,
  when its Python bindings ``pynvml`` are installed; otherwise the GPU is not checked).

A measurement is **contended** when any of these holds over its duration:

1. this process's threads waited for a CPU more than :data:`WAIT_LIMIT` of the time they were
   runnable;
2. other processes used more of this process's CPUs than the threads asked for left free: their
   average busy cores there exceed ``cpus - min(threads, cpus) + SLACK_CORES``;
3. the hypervisor stole more than :data:`STEAL_LIMIT` of those CPUs' time;
4. another process used the same GPU's multiprocessors during the measurement.

Limits: only Linux exposes these files (elsewhere nothing is checked, the record says so, and
the measurement counts as clean); contention that does not take CPU time (memory bandwidth,
shared caches, a sibling hyperthread, another virtual machine on the same core, thermal
throttling) is not detected, which is why the clock is recorded; a measurement shorter than
:data:`MIN_WINDOW_S` is not judged (the kernel accounts CPU time in ticks of a few ms). On CUDA,
NVML samples utilization over periods that can straddle the start of a measurement, and inside a
container it reports the host's process ids, so the GPU rule counts processes rather than
recognising this one: two or more busy on the device is contention.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.reporting.tables import plural

PROC = Path("/proc")
WAIT_LIMIT = 0.05  # of the threads' runnable time spent waiting for a CPU
SLACK_CORES = 0.25  # background daemons and our own bookkeeping use a little
STEAL_LIMIT = 0.05  # of the machine's CPU time
MIN_WINDOW_S = 0.02  # shorter windows are below the kernel's accounting resolution


@dataclass(frozen=True)
class Snapshot:
    """What the kernel says at one instant; every field is ``None`` where it cannot be read."""

    wall_s: float
    tasks: dict[str, tuple[int, int]] | None  # thread id -> (ns on a CPU, ns waiting for one)
    cpu_ticks: dict[int, tuple[int, int, int]] | None  # CPU -> (total, idle + iowait, steal)
    process_cpu_s: float
    pressure_us: int | None  # /proc/pressure/cpu "some" total, microseconds
    load: float | None  # one-minute load average
    runnable: int | None  # tasks runnable right now, machine-wide
    cpu_mhz: float | None  # mean clock over the CPUs


def snapshot(proc: Path = PROC) -> Snapshot:
    load, runnable = _load(proc)
    return Snapshot(
        wall_s=time.perf_counter(),
        tasks=_tasks(proc),
        cpu_ticks=_cpu_ticks(proc),
        process_cpu_s=time.process_time(),
        pressure_us=_pressure(proc),
        load=load,
        runnable=runnable,
        cpu_mhz=_cpu_mhz(proc),
    )


def usable_cpu_ids() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask), else all of the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


def usable_cpus() -> int:
    return len(usable_cpu_ids())


def assess(
    before: Snapshot,
    after: Snapshot,
    threads: int,
    cpus: tuple[int, ...],
    gpu_busy: list[str] | None = None,
) -> dict[str, Any]:
    """The contention record of the window between two snapshots (see the module's rules);
    ``cpus`` are the CPUs this process may use, ``gpu_busy`` the processes seen computing on its
    GPU (``None``: not known)."""
    wall = after.wall_s - before.wall_s
    record: dict[str, Any] = {"threads": threads, "cpus": len(cpus), "window_s": round(wall, 6)}
    if wall < MIN_WINDOW_S:
        return {**record, "contended": False, "checked": False, "evidence": "window too short"}
    on_cpu, waited = _task_deltas(before.tasks, after.tasks)
    own_cores = (
        on_cpu / 1e9 / wall
        if on_cpu is not None
        else (after.process_cpu_s - before.process_cpu_s) / wall
    )
    wait_fraction = waited / (on_cpu + waited) if on_cpu is not None and on_cpu + waited else None
    others, steal = _on_our_cpus(before.cpu_ticks, after.cpu_ticks, cpus, own_cores)
    pressure = (
        (after.pressure_us - before.pressure_us) / 1e6 / wall
        if before.pressure_us is not None and after.pressure_us is not None
        else None
    )
    record.update(
        own_cores=_round(own_cores),
        run_queue_wait=_round(wait_fraction),
        other_cores=_round(others),
        steal=_round(steal),
        cpu_pressure=_round(pressure),
        load_before=before.load,
        load_after=after.load,
        runnable_before=before.runnable,
        runnable_after=after.runnable,
        cpu_mhz_before=before.cpu_mhz,
        cpu_mhz_after=after.cpu_mhz,
        gpu_busy=gpu_busy,
    )
    reasons = _reasons(record)
    checked = wait_fraction is not None or others is not None
    evidence = (
        "; ".join(reasons + _context(record))
        if checked
        else "not checked: the kernel's scheduler statistics are not readable here"
    )
    return {**record, "contended": bool(reasons), "checked": checked, "evidence": evidence}


def _reasons(r: dict[str, Any]) -> list[str]:
    """The rules that fired, each in words."""
    reasons = []
    if r["run_queue_wait"] is not None and r["run_queue_wait"] > WAIT_LIMIT:
        reasons.append(
            f"this process's threads waited for a CPU {100 * r['run_queue_wait']:.0f}% of the "
            "time they were ready to run"
        )
    free = r["cpus"] - min(r["threads"], r["cpus"])
    if r["other_cores"] is not None and r["other_cores"] > free + SLACK_CORES:
        reasons.append(
            f"other processes kept {r['other_cores']:.1f} of the {plural(r['cpus'], 'CPU')} it "
            f"may use busy beside the {plural(r['threads'], 'thread')} asked for"
        )
    if r["steal"] is not None and r["steal"] > STEAL_LIMIT:
        reasons.append(f"the hypervisor stole {100 * r['steal']:.0f}% of the CPU time")
    if r["gpu_busy"] and len(r["gpu_busy"]) > 1:
        reasons.append(f"several processes computed on the GPU: {', '.join(r['gpu_busy'])}")
    return reasons


def _context(r: dict[str, Any]) -> list[str]:
    """What is worth reading beside the verdict: load, and a clock that moved."""
    parts = []
    if r["load_before"] is not None:
        parts.append(f"load average {r['load_before']:.2f} -> {r['load_after']:.2f}")
    before, after = r["cpu_mhz_before"], r["cpu_mhz_after"]
    if before and after and abs(after / before - 1) > 0.10:
        parts.append(f"CPU clock changed {before:.0f} -> {after:.0f} MHz")
    return parts


@contextmanager
def watch(device: torch.device, threads: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield a dict that holds the contention record of the ``with`` block once it has ended."""
    record: dict[str, Any] = {}
    threads = threads or torch.get_num_threads()
    gpu = _gpu_probe(device)
    before = snapshot()
    yield record
    after = snapshot()
    record.update(assess(before, after, threads, usable_cpu_ids(), gpu() if gpu else None))


def summarize_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One record for several windows (rounds, seeds): contended if any was, with its words."""
    contended = [r for r in records if r.get("contended")]
    if not contended:
        return {"contended": False, "evidence": "", "windows": len(records)}
    first = contended[0].get("evidence", "")
    return {
        "contended": True,
        "evidence": f"{len(contended)} of {len(records)} measured windows contended; {first}",
        "windows": len(records),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _task_deltas(
    before: dict[str, tuple[int, int]] | None, after: dict[str, tuple[int, int]] | None
) -> tuple[int | None, int]:
    """Nanoseconds on a CPU and waiting for one, summed over the threads alive at the end (a
    thread started in between counts from zero)."""
    if before is None or after is None:
        return None, 0
    on = wait = 0
    for tid, (cpu_ns, wait_ns) in after.items():
        cpu0, wait0 = before.get(tid, (0, 0))
        on += max(0, cpu_ns - cpu0)
        wait += max(0, wait_ns - wait0)
    return on, wait


def _on_our_cpus(
    before: dict[int, tuple[int, int, int]] | None,
    after: dict[int, tuple[int, int, int]] | None,
    cpus: tuple[int, ...],
    own_cores: float,
) -> tuple[float | None, float | None]:
    """Cores of ``cpus`` kept busy by other processes, and the fraction of their time stolen."""
    if not before or not after:
        return None, None
    busy_cores, stolen, total = 0.0, 0, 0
    for cpu in cpus:
        if cpu not in before or cpu not in after or after[cpu][0] <= before[cpu][0]:
            continue
        ticks = after[cpu][0] - before[cpu][0]
        busy_cores += (ticks - (after[cpu][1] - before[cpu][1])) / ticks
        stolen += after[cpu][2] - before[cpu][2]
        total += ticks
    if not total:
        return None, None
    return max(0.0, busy_cores - own_cores), stolen / total


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _tasks(proc: Path) -> dict[str, tuple[int, int]] | None:
    task_dir = proc / "self" / "task"
    try:
        ids = os.listdir(task_dir)
    except OSError:
        return None
    tasks = {}
    for tid in ids:
        text = _read(task_dir / tid / "schedstat")
        if text is None:
            continue  # the thread ended meanwhile
        fields = text.split()
        if len(fields) >= 2:
            tasks[tid] = (int(fields[0]), int(fields[1]))
    return tasks or None


def _cpu_ticks(proc: Path) -> dict[int, tuple[int, int, int]] | None:
    """Each CPU's (total, idle + iowait, steal) ticks from its ``cpuN`` line of /proc/stat."""
    text = _read(proc / "stat")
    if not text:
        return None
    ticks = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and len(fields) >= 8:
            # user nice system idle iowait irq softirq steal (guest time is already in user)
            values = [int(v) for v in fields[:8]]
            ticks[int(name[3:])] = (sum(values), values[3] + values[4], values[7])
    return ticks or None


def _pressure(proc: Path) -> int | None:
    text = _read(proc / "pressure" / "cpu")
    if not text or "total=" not in text:
        return None
    return int(text.splitlines()[0].rsplit("total=", 1)[1])


def _load(proc: Path) -> tuple[float | None, int | None]:
    text = _read(proc / "loadavg")
    if not text:
        return None, None
    fields = text.split()
    return float(fields[0]), int(fields[3].split("/")[0])


def _cpu_mhz(proc: Path) -> float | None:
    text = _read(proc / "cpuinfo")
    if not text:
        return None
    clocks = [float(line.split(":")[1]) for line in text.splitlines() if line.startswith("cpu MHz")]
    return round(sum(clocks) / len(clocks), 1) if clocks else None


def _gpu_probe(device: torch.device) -> Callable[[], list[str]] | None:
    """Start watching ``device``; the returned callable lists the processes that used its
    streaming multiprocessors since then (this one among them). ``None`` when that cannot be
    known: not CUDA, or NVML's Python bindings (``pynvml``, package ``nvidia-ml-py``) are not
    installed."""
    if device.type != "cuda":
        return None
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
        # torch numbers the visible devices, NVML all of them: the UUID names the same one
        uuid = str(torch.cuda.get_device_properties(device).uuid)
        handle = pynvml.nvmlDeviceGetHandleByUUID(
            uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        )
    except (pynvml.NVMLError, AttributeError, RuntimeError, TypeError):
        return None
    since_us = int(time.time() * 1e6)

    def busy() -> list[str]:
        try:
            samples = pynvml.nvmlDeviceGetProcessUtilization(handle, since_us)
        except pynvml.NVMLError:  # NOT_FOUND: no process sampled in the window
            return []
        peak: dict[int, int] = {}
        for sample in samples:
            if sample.timeStamp >= since_us and sample.smUtil > 0:
                peak[sample.pid] = max(peak.get(sample.pid, 0), sample.smUtil)
        return [f"pid {pid} at {util}% SM" for pid, util in sorted(peak.items())]

    return busy
