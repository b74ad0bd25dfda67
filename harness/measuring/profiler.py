"""Profiling one step with ``torch.profiler``: a trace for TensorBoard/Perfetto and a top-ops table.

The trace is written by ``torch.profiler.tensorboard_trace_handler`` into ``<trace_dir>`` as
``<worker>.<timestamp>.pt.trace.json``. Traces of several runs under ``<out>/traces/<run-name>/``
appear as runs in ``tensorboard --logdir <out>/traces`` (with the ``torch-tb-profiler`` plugin), and
each JSON file opens as it is in https://ui.perfetto.dev or ``chrome://tracing``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

from harness.reporting.tables import markdown_table

WAIT, WARMUP, ACTIVE = 1, 1, 3


def profile_step(
    step: Callable[[], object],
    device: torch.device,
    trace_dir: Path,
    *,
    worker: str = "bench",
    top_k: int = 15,
    active: int = ACTIVE,
) -> dict[str, Any]:
    """Run ``step`` through a wait/warm-up/active schedule and write one trace into ``trace_dir``.

    Shapes, memory and FLOPs are recorded. Returns where the trace went and the ``top_k``
    operators by self time (device time when profiling CUDA), totalled over the active steps.
    """
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    trace_dir.mkdir(parents=True, exist_ok=True)
    before = set(trace_dir.glob("*.pt.trace.json"))
    with profile(
        activities=activities,
        schedule=schedule(wait=WAIT, warmup=WARMUP, active=active, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(trace_dir), worker_name=worker),
        record_shapes=True,
        profile_memory=True,
        with_flops=True,
    ) as profiler:
        for _ in range(WAIT + WARMUP + active):
            step()
            profiler.step()
    traces = sorted(set(trace_dir.glob("*.pt.trace.json")) - before)
    return {
        "trace_dir": str(trace_dir),
        "traces": [str(t) for t in traces],
        "active_steps": active,
        "sort": "self_device" if device.type == "cuda" else "self_cpu",
        "top_ops": top_operators(profiler, cuda=device.type == "cuda", k=top_k),
    }


def top_operators(profiler: profile, *, cuda: bool, k: int) -> list[dict[str, Any]]:
    """The ``k`` operators with the most self time; times in microseconds, totals over all steps."""
    events = [e for e in profiler.key_averages() if not e.key.startswith("ProfilerStep")]
    sort = "self_device_time_total" if cuda else "self_cpu_time_total"
    events.sort(key=lambda e: getattr(e, sort), reverse=True)
    rows = []
    for event in events[:k]:
        row = {
            "name": event.key,
            "calls": event.count,
            "self_cpu_us": event.self_cpu_time_total,
            "cpu_total_us": event.cpu_time_total,
        }
        if cuda:
            row.update(
                self_cuda_us=event.self_device_time_total, cuda_total_us=event.device_time_total
            )
        row["flops"] = event.flops
        rows.append(row)
    return rows


def top_ops_markdown(record: dict[str, Any]) -> str:
    """The saved top-ops table as markdown (milliseconds, totals over the active steps)."""
    columns = {
        "name": "operator",
        "self_cpu_us": "self CPU ms",
        "cpu_total_us": "CPU total ms",
        "self_cuda_us": "self CUDA ms",
        "cuda_total_us": "CUDA total ms",
        "calls": "calls",
        "flops": "FLOPs",
    }
    rows = []
    for op in record["top_ops"]:
        rows.append({label: _cell(key, op[key]) for key, label in columns.items() if key in op})
    return markdown_table(rows)


def _cell(key: str, value: Any) -> str:
    if key.endswith("_us"):
        return f"{value / 1e3:.3f}"
    if key == "flops":
        return f"{value:,}" if value else "—"
    return str(value)
