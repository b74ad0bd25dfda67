"""Running a suite: plan its runs, execute each in turn, record every outcome, render the report."""

from __future__ import annotations

import sys
import time
import traceback
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.data import DataContext
from harness.devices import resolve_device
from harness.environment import capture_environment
from harness.options import BenchError
from harness.procedure import Report, RunContext
from harness.registry import Registry
from harness.results import RESULTS_NAME, ResultsStore, atomic_write_text, now
from harness.suites import Run, Suite
from harness.training import DivergedError


@dataclass
class SuiteOutcome:
    store: ResultsStore
    report: Report
    out_dir: Path

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.store.runs if r["status"] != "ok"]


def default_out_dir(label: str, root: Path = Path("results")) -> Path:
    return root / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{label}"


def run_suite(
    suite: Suite,
    registry: Registry,
    *,
    out_dir: Path,
    device: str | None = None,
    data: DataContext | None = None,
    command: list[str] | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> SuiteOutcome:
    """Execute every run of ``suite``; results are saved after each run, whatever its outcome."""
    procedure = registry.procedures.get(suite.procedure)
    if threads:
        torch.set_num_threads(threads)
    ctx = RunContext(
        registry=registry,
        device=resolve_device(device or suite.device),
        data=data or DataContext(),
        out_dir=out_dir,
        quiet=quiet,
    )
    check_datasets(suite, registry, ctx.data)
    runs = procedure.plan(suite, registry)
    store = ResultsStore.create(
        out_dir / RESULTS_NAME,
        command=command or sys.argv,
        suite=suite.header(),
        environment=capture_environment(ctx.device),
    )
    show = not quiet and sys.stderr.isatty()
    try:
        with tqdm(runs, desc=suite.name, unit="run", disable=not show, file=sys.stderr) as bar:
            for run in bar:
                bar.set_postfix_str(run.name)
                store.add(execute_run(procedure, run, ctx))
    except KeyboardInterrupt:
        store.finish("interrupted", f"interrupted after {len(store.runs)} of {len(runs)} runs")
        raise
    store.finish("complete")
    report = procedure.report(store.data, out_dir)
    atomic_write_text(out_dir / "report.md", report.markdown)
    return SuiteOutcome(store=store, report=report, out_dir=out_dir)


def check_datasets(suite: Suite, registry: Registry, data: DataContext) -> None:
    """Stop before any run (a usage error) when a suite's dataset cannot be loaded here."""
    for entry in suite.datasets:
        spec = registry.datasets.get(entry.name)
        reason = spec.unavailable(spec.resolve(entry.options), data)
        if reason:
            raise BenchError(f"dataset '{entry.name}' is not available: {reason}")


def execute_run(procedure, run: Run, ctx: RunContext) -> dict[str, Any]:
    """Run one configuration; any failure becomes a recorded status instead of an exception."""
    started, start = now(), time.perf_counter()
    status, error, metrics, trace = "ok", None, {}, None
    try:
        metrics = procedure.execute(run, ctx)
    except DivergedError as exc:
        status, error = "diverged", str(exc)
    except torch.cuda.OutOfMemoryError as exc:
        status, error = "oom", str(exc).splitlines()[0]
    except Exception as exc:  # recorded, and the suite goes on
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        trace = traceback.format_exc(limit=-3)
    return {
        "id": run.id,
        "hash": run.hash,
        "procedure": run.procedure,
        "config": run.config,
        "status": status,
        "error": error,
        "traceback": trace,
        "metrics": metrics,
        "started_at": started,
        "wall_time_s": round(time.perf_counter() - start, 3),
    }
