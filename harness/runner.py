"""Running a suite: plan its runs, execute each in turn, record every outcome, render the report.

Nothing is lost: the results file is rewritten atomically after every run; Ctrl-C or SIGTERM
marks it ``interrupted`` (every finished run kept) and raises :class:`SuiteInterrupted`; with
``resume=True`` the runs already recorded as ``ok`` (matched by configuration hash) are skipped and
the others run and join the same file, so that the file and report end as an uninterrupted run's.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.data import DataContext
from harness.determinism import determinism
from harness.devices import resolve_device
from harness.environment import capture_environment
from harness.execution import execute_run, make_record
from harness.interrupts import Terminated, sigterm_as_interrupt, time_limit_supported
from harness.options import BenchError
from harness.procedure import Procedure, Report, RunContext
from harness.registry import Registry
from harness.results import RESULTS_NAME, ResultsStore, atomic_write_text, now
from harness.run_plots import RUN_PLOTS, plot_runs, run_plots_note
from harness.suites import Run, Suite, safe_name
from harness.worker import job_for, run_in_worker


@dataclass(frozen=True)
class RunPolicy:
    """How runs are executed and kept apart.

    ``run_timeout``: seconds a run may take (in-process: an alarm stops it at the next Python
    bytecode; with ``isolate`` the worker is also killed if that is not enough).
    ``fail_fast``: stop the suite after the first run that is not ``ok``.
    ``isolate``: each run in a fresh worker process (:mod:`harness.worker`).
    ``deterministic``: ``torch.use_deterministic_algorithms(True)`` (:mod:`harness.determinism`).
    ``plugins``: what a worker loads besides the installed ones (``--plugin``, ``BENCH_PLUGINS``).
    """

    run_timeout: float | None = None
    fail_fast: bool = False
    isolate: bool = False
    deterministic: bool = False
    plugins: tuple[str, ...] = field(default_factory=tuple)


@dataclass
class SuiteOutcome:
    store: ResultsStore
    report: Report
    out_dir: Path
    run_plots: list[Path] = field(default_factory=list)  # each configuration's, in out_dir/runs

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.store.runs if r["status"] != "ok"]


class SuiteInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the suite; ``store`` holds every run finished before it."""

    def __init__(self, store: ResultsStore, signal_name: str):
        super().__init__(store.data.get("note", "interrupted"))
        self.store = store
        self.signal_name = signal_name


def default_out_dir(label: str, root: Path = Path("results")) -> Path:
    return root / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{safe_name(label)}"


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
    policy: RunPolicy | None = None,
    resume: bool = False,
) -> SuiteOutcome:
    """Execute every run of ``suite``; results are saved after each run, whatever its outcome.

    With ``resume``, ``out_dir`` holds the results of an earlier, unfinished invocation of the
    same suite; runs it recorded as ``ok`` are not repeated. ``device`` and ``threads`` default
    to the suite's own.
    """
    procedure = registry.procedures.get(suite.procedure)
    check_checkpoint_options(suite, procedure, registry)
    policy = policy or RunPolicy()
    if policy.run_timeout is not None and not policy.isolate and not time_limit_supported():
        raise BenchError("--run-timeout needs SIGALRM (POSIX, main thread) here; add --isolate")
    threads = threads or suite.threads
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
    _check_distinct(runs)
    command = command or sys.argv
    environment = capture_environment(ctx.device)
    execution = _execution(ctx, policy)
    if resume:
        store = ResultsStore.reopen(out_dir, command=command, environment=environment)
        check_resumable(store, suite, runs, execution)
    else:
        store = ResultsStore.create(
            out_dir / RESULTS_NAME,
            command=command,
            suite=suite.header(),
            environment=environment,
            execution=execution,
        )
    with determinism(policy.deterministic, ctx.device), sigterm_as_interrupt():
        _run_pending(procedure, runs, store, ctx, policy, show=not quiet and sys.stderr.isatty())
    report = procedure.report(store.data, out_dir)
    drawn = plot_runs(store.data, out_dir / RUN_PLOTS)
    if drawn:
        report = replace(report, markdown=report.markdown + f"\n{run_plots_note(drawn)}\n")
    atomic_write_text(out_dir / "report.md", report.markdown)
    return SuiteOutcome(store=store, report=report, out_dir=out_dir, run_plots=drawn)


def _run_pending(
    procedure: Procedure,
    runs: list[Run],
    store: ResultsStore,
    ctx: RunContext,
    policy: RunPolicy,
    *,
    show: bool,
) -> None:
    """Execute the runs ``store`` does not hold as ``ok``, recording each, and set the final
    status: complete, stopped (``fail_fast``) or interrupted (raises :class:`SuiteInterrupted`)."""
    pending = [run for run in runs if not store.completed(run.hash)]
    name = store.data["suite"].get("name")
    try:
        with tqdm(pending, desc=name, unit="run", disable=not show, file=sys.stderr) as bar:
            for run in bar:
                bar.set_postfix_str(run.name)
                if show:
                    ctx.on_epoch = partial(_show_epoch, bar, run.name)
                record = unmet_needs(run, runs, store) or execute_with(procedure, run, ctx, policy)
                store.add(record)
                if policy.fail_fast and record["status"] != "ok":
                    left = len(runs) - len(store.runs)
                    store.finish(
                        "stopped",
                        f"stopped by --fail-fast: run {run.id} {record['status']}; "
                        f"{left} of {len(runs)} runs not started",
                    )
                    return
        store.finish("complete")
    except KeyboardInterrupt as exc:
        signal_name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        done = sum(r["status"] == "ok" for r in store.runs)
        store.finish(
            "interrupted",
            f"interrupted by {signal_name}: {len(store.runs)} of {len(runs)} runs "
            f"recorded ({done} ok)",
        )
        raise SuiteInterrupted(store, signal_name) from None


def unmet_needs(run: Run, runs: list[Run], store: ResultsStore) -> dict[str, Any] | None:
    """A ``skipped`` record for a run whose needed runs are not all ``ok``, with the first
    one's status and reason; ``None`` when it can run."""
    by_index = {r.index: r for r in runs}
    for index in run.needs:
        needed = by_index[index]
        if store.completed(needed.hash):
            continue
        record = next((r for r in store.runs if r["hash"] == needed.hash), None)
        status = record["status"] if record else "not recorded"
        reason = ((record or {}).get("error") or "").strip().splitlines()
        return make_record(
            run,
            status="skipped",
            error=f"not run: it needs run {needed.id}, which is {status}"
            + (f" ({reason[0]})" if reason else ""),
            started_at=now(),
            wall_time_s=0.0,
        )
    return None


def _show_epoch(bar: tqdm, name: str, record: dict[str, float]) -> None:
    """The epoch and its first validation metric beside the loss (accuracy, RMSE, ...)."""
    metric = next((k for k in record if k.startswith("val_") and k != "val_loss"), "val_loss")
    value = record[metric]
    shown = f"{value:.1%}" if metric.endswith("accuracy") else f"{value:.4g}"
    label = "val acc" if metric == "val_accuracy" else metric.replace("_", " ")
    bar.set_postfix_str(f"{name}: epoch {record['epoch']}, {label} {shown}", refresh=True)


def check_datasets(suite: Suite, registry: Registry, data: DataContext) -> None:
    """Stop before any run (a usage error) when a suite's dataset cannot be loaded here."""
    for entry in suite.datasets:
        spec = registry.datasets.get(entry.name)
        reason = spec.unavailable(spec.resolve(entry.options), data)
        if reason:
            raise BenchError(f"dataset '{entry.name}' is not available: {reason}")


def check_checkpoint_options(suite: Suite, procedure: Procedure, registry: Registry) -> None:
    """Refuse checkpoint options a procedure would ignore, before any run."""
    tables = [suite.train, *(entry.train for entry in (*suite.models, *suite.datasets))]
    asked = [k for k in ("save_checkpoint", "from_checkpoint") for t in tables if t.get(k)]
    if "from_checkpoint" in asked and suite.source != "command line":
        raise BenchError(
            f"suite file {suite.source}: from_checkpoint continues one run; use "
            "bench run --from-checkpoint PATH --epochs N, without --suite"
        )
    if asked and not procedure.checkpoints:
        able = ", ".join(p.name for p in registry.procedures if p.checkpoints)
        raise BenchError(
            f"procedure '{procedure.name}' does not keep training checkpoints ({asked[0]}); "
            f"these do: {able}"
        )


def check_resumable(
    store: ResultsStore, suite: Suite, runs: list[Run], execution: dict[str, Any]
) -> None:
    """Refuse to mix results: the file must hold runs of this very plan, made the same way."""
    data = store.data
    again = f"resume with the options of the original command: {shlex.join(data['command'])}"
    recorded = data.get("suite", {})
    if (recorded.get("name"), recorded.get("procedure")) != (suite.name, suite.procedure):
        raise BenchError(
            f"cannot resume {store.path}: it holds suite '{recorded.get('name')}' "
            f"({recorded.get('procedure')}), not '{suite.name}' ({suite.procedure})"
        )
    made = recorded_execution(data)
    for key in ("device", "threads", "deterministic"):
        if made[key] != execution[key]:
            raise BenchError(
                f"cannot resume {store.path}: it was run with {key} {made[key]}, "
                f"this run would use {execution[key]}; {again}"
            )
    planned = {run.hash: run.id for run in runs}
    for record in store.runs:
        if planned.get(record["hash"]) != record["id"]:
            raise BenchError(
                f"cannot resume {store.path}: its run {record['id']} is not in this suite's "
                f"plan; {again}"
            )


def _check_distinct(runs: list[Run]) -> None:
    """Runs are matched by configuration hash (``--resume``), so no two may share one."""
    seen: dict[str, str] = {}
    for run in runs:
        if run.hash in seen:
            raise BenchError(f"runs {seen[run.hash]} and {run.id} have the same configuration")
        seen[run.hash] = run.id


def recorded_execution(results: dict[str, Any]) -> dict[str, Any]:
    """How a results file's runs were executed: its ``execution``, over the environment's device
    and thread count and ``deterministic`` off (a file may predate ``execution``)."""
    environment = results.get("environment", {})
    return {
        "device": environment.get("device"),
        "threads": environment.get("threads"),
        "deterministic": False,
        **results.get("execution", {}),
    }


def _execution(ctx: RunContext, policy: RunPolicy) -> dict[str, Any]:
    """How the runs were executed: with a run's config, what ``bench rerun`` needs to repeat it."""
    return {
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        **asdict(policy),
        "data_root": str(ctx.data.data_root) if ctx.data.data_root else None,
    }


def execute_with(procedure: Procedure, run: Run, ctx: RunContext, policy: RunPolicy) -> dict:
    """One run's record: in this process, or in a worker process with ``policy.isolate``."""
    if not policy.isolate:
        return execute_run(procedure, run, ctx, timeout=policy.run_timeout)
    job = job_for(
        run,
        ctx,
        plugins=policy.plugins,
        deterministic=policy.deterministic,
        timeout=policy.run_timeout,
    )
    return run_in_worker(run, job)
