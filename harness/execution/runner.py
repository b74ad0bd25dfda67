"""Running a suite: plan its runs, hand them to an executor, record each outcome, report.

Nothing is lost: the results file is rewritten atomically after every run (by this process
only, in plan order, whichever executor ran it: :mod:`harness.execution.scheduler`); Ctrl-C or
SIGTERM marks it ``interrupted`` (every finished run kept) and raises :class:`SuiteInterrupted`;
with ``resume=True`` the runs already recorded as ``ok`` (matched by configuration hash) are skipped
and the others run and join the same file, so that the file and report end as an uninterrupted
run's, with any executor.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from harness.data import DataContext
from harness.errors import BenchError
from harness.execution.executor import (
    Executor,
    ExecutorRequest,
    create_executor,
    usable_cores,
)
from harness.execution.forkserver import worker_context
from harness.execution.interrupts import sigterm_as_interrupt
from harness.execution.jobs import Job
from harness.execution.plan import plan_suite
from harness.execution.scheduler import Interrupted, run_all
from harness.execution.stacking import Stacking, plan_stacking
from harness.planning.protocol import Report, RunContext
from harness.planning.suite_files import Run, Suite, safe_name
from harness.registry.specs import Registry
from harness.reporting.run_figures import RUN_PLOTS, plot_runs, run_plots_note
from harness.reporting.tables import plural
from harness.results.environment import capture_environment
from harness.results.sinks import Sinks
from harness.results.store import (
    RESULTS_NAME,
    ResultsStore,
    atomic_write_text,
    free_directory,
    resume_command,
)


@dataclass(frozen=True)
class RunPolicy:
    """How runs are executed and kept apart.

    ``executor``: where runs execute, ``NAME`` or ``NAME://ADDRESS``
    (:mod:`harness.execution.executor`); ``jobs``: how many at once, where the executor takes a
    number (``processes``, local ``dask``). ``retries``: how often a run whose worker was lost is
    started again. ``run_timeout``: seconds a run may take (in-process: an alarm stops it at the
    next Python bytecode; a worker process is also killed if that is not enough). ``fail_fast``:
    stop the suite after the first run that is not ``ok``. ``isolate``: a fresh worker process for
    every run (``processes`` only), rather than workers that perform one run after another.
    ``deterministic``: ``torch.use_deterministic_algorithms(True)``
    (:mod:`harness.execution.determinism`). ``plugins``: what a worker loads besides the installed
    ones (``--plugin``, ``BENCH_PLUGINS``). ``cpus``: the CPUs every run is pinned to, in whichever
    process performs it (``bench time --cpus``; empty: wherever the kernel places it).
    ``stack``: ``auto`` trains runs that differ only in seed and regularization together as one
    stacked model, with the numbers each has alone (:mod:`harness.execution.stacking`); ``off``
    trains every run alone; ``None``: as the suite says (``stack``, default ``auto``).
    """

    executor: str = "local"
    jobs: int | None = None
    retries: int = 0
    run_timeout: float | None = None
    fail_fast: bool = False
    isolate: bool = False
    deterministic: bool = False
    plugins: tuple[str, ...] = field(default_factory=tuple)
    cpus: tuple[int, ...] = field(default_factory=tuple)
    stack: str | None = None  # None: the suite's (auto unless its file says off)

    @classmethod
    def of(
        cls, executor: str | None = None, jobs: int | None = None, isolate: bool = False, **rest
    ) -> RunPolicy:
        """A policy as the flags say it: ``jobs`` alone means the ``processes`` executor,
        ``isolate`` means ``processes``, a fresh process per run, one at a time unless ``jobs``
        says more."""
        if isolate:
            if executor not in (None, "processes"):
                raise BenchError(f"--isolate is --executor processes; it cannot go with {executor}")
            executor, jobs = "processes", jobs or 1
        executor = executor or ("processes" if jobs else "local")
        return cls(executor=executor, jobs=jobs, isolate=isolate, **rest)


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
    """``results/<timestamp>-<label>``, with a suffix when a command started in the same second
    already took that name."""
    path = root / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{safe_name(label)}"
    return free_directory(path) if path.exists() else path


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
    sinks: Sequence[str] = (),
) -> SuiteOutcome:
    """Execute every run of ``suite``; results are saved after each run, whatever its outcome.

    With ``resume``, ``out_dir`` holds the results of an earlier, unfinished invocation of the
    same suite; runs it recorded as ``ok`` are not repeated. ``device`` and ``threads`` default
    to the suite's own. ``sinks`` (``NAME[=TARGET]``, :mod:`harness.results.sinks`) receive each
    run's record as it is written. ``quiet`` hides the progress bar, which is otherwise shown on a
    terminal and in Jupyter.
    """
    policy, data = policy or RunPolicy(), data or DataContext()
    policy = replace(policy, stack=policy.stack or suite.stack)
    plan = plan_suite(
        suite, registry, device=device, data=data, executor=policy.executor, sinks=sinks
    )
    procedure, runs = registry.procedures.get(suite.procedure), plan.runs
    ctx = RunContext(registry=registry, device=plan.device, data=data, out_dir=out_dir, quiet=quiet)
    command = command or sys.argv
    outputs = Sinks.open(registry, sinks, out_dir, procedure.hyperparameters)
    with closing(open_executor(registry, policy, threads, suite.threads)) as executor:
        environment = capture_environment(ctx.device)
        execution = _execution(ctx, policy, executor)
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
        store.listeners.append(outputs.record)
        try:
            with sigterm_as_interrupt():
                show = not quiet and (sys.stderr.isatty() or in_notebook())
                log = not quiet and not show  # piped: lines a CI log shows as they come
                stacking = plan_stacking(
                    runs, registry, policy.stack, threads=executor.threads, device=str(ctx.device)
                )
                _run_pending(
                    runs, store, executor, job_maker(ctx, policy, executor), policy, show, log,
                    stacking,
                )  # fmt: skip
        finally:
            outputs.close(store.data)
        workers = min(executor.slots, usable_cores())  # the plots use the runs' parallelism
    report = procedure.report(store.data, out_dir)
    context = worker_context() if workers > 1 else None
    drawn = plot_runs(store.data, out_dir / RUN_PLOTS, workers, context)
    if drawn:
        report = replace(report, markdown=report.markdown + f"\n{run_plots_note(drawn)}\n")
    atomic_write_text(out_dir / "report.md", report.markdown)
    return SuiteOutcome(store=store, report=report, out_dir=out_dir, run_plots=drawn)


def open_executor(
    registry: Registry,
    policy: RunPolicy,
    threads: int | None = None,
    suite_threads: int | None = None,
) -> Executor:
    """The executor ``policy`` names, with the threads per run it will give each run; this
    process's own torch threads follow, so that the recorded environment says the same."""
    request = ExecutorRequest(
        registry=registry,
        jobs=policy.jobs,
        threads=threads,
        suite_threads=suite_threads,
        run_timeout=policy.run_timeout,
        isolate=policy.isolate,
    )
    executor = create_executor(registry, policy.executor, request)
    if executor.threads:
        torch.set_num_threads(executor.threads)
    return executor


def job_maker(
    ctx: RunContext, policy: RunPolicy, executor: Executor, extra: dict[str, bytes] | None = None
) -> Callable[[Run, dict[str, bytes]], Job]:
    """Turns a run and its input files (plus ``extra`` ones) into a job for ``executor``."""

    def make(run: Run, inputs: dict[str, bytes]) -> Job:
        return Job(
            index=run.index,
            procedure=run.procedure,
            config=run.config,
            device=str(ctx.device),
            threads=executor.threads_alone if run.exclusive else executor.threads,
            out_dir=str(ctx.out_dir),
            plugins=policy.plugins,
            deterministic=policy.deterministic,
            timeout=policy.run_timeout,
            data_root=str(ctx.data.data_root) if ctx.data.data_root else None,
            download=ctx.data.download,
            inputs={**(extra or {}), **inputs},
            alone=run.exclusive,
            cpus=policy.cpus,
        )

    return make


def _run_pending(
    runs: list[Run],
    store: ResultsStore,
    executor: Executor,
    make_job: Callable[[Run, dict[str, bytes]], Job],
    policy: RunPolicy,
    show: bool,
    log: bool,
    stacking: Stacking | None = None,
) -> None:
    """Execute the runs ``store`` does not hold as ``ok``, recording each, and set the final
    status: complete, stopped (``fail_fast``) or interrupted (raises :class:`SuiteInterrupted`)."""

    def on_start(bar: tqdm, run: Run):
        bar.set_postfix_str(run.name)
        return partial(_show_epoch, bar, run.name) if show or log else None

    try:
        stopped = run_all(
            runs,
            store,
            executor,
            make_job,
            retries=policy.retries,
            fail_fast=policy.fail_fast,
            show=show,
            log=log,
            on_start=on_start,
            stacking=stacking,
        )
    except Interrupted as exc:
        done = sum(r["status"] == "ok" for r in store.runs)
        store.finish(
            "interrupted",
            f"interrupted by {exc.signal_name}: {len(store.runs)} of {plural(len(runs), 'run')} "
            f"recorded ({done} ok)",
        )
        executor.close()  # what is in flight goes now; the file already says what finished
        raise SuiteInterrupted(store, exc.signal_name) from None
    except Exception as exc:  # a bug or a broken executor: the file says so, and what finished
        store.finish("stopped", f"stopped by an error: {type(exc).__name__}: {exc}")
        raise
    if stopped:
        left = len(runs) - len(store.runs)
        store.finish(
            "stopped",
            f"stopped by --fail-fast: {stopped}; {left} of {plural(len(runs), 'run')} not started",
        )
    else:
        store.finish("complete")


def _show_epoch(bar: tqdm, name: str, record: dict[str, float]) -> None:
    """The epoch and its first validation metric (accuracy, RMSE, ...), else the training loss
    (a dataset without a validation split)."""
    validation = [k for k in record if k.startswith("val_")]
    metric = next((k for k in validation if k != "val_loss"), "val_loss" if validation else "")
    metric = metric or "train_loss"
    value = record[metric]
    shown = f"{value:.1%}" if metric.endswith("accuracy") else f"{value:.4g}"
    label = "val acc" if metric == "val_accuracy" else metric.replace("_", " ")
    bar.set_postfix_str(f"{name}: epoch {record['epoch']}, {label} {shown}", refresh=True)


def check_resumable(
    store: ResultsStore, suite: Suite, runs: list[Run], execution: dict[str, Any]
) -> None:
    """Refuse to mix results: the file must hold runs of this very plan, made the same way."""
    data = store.data
    command = resume_command(data, store.path.parent) or data["command"]
    again = f"resume with the options of the original command: {shlex.join(command)}"
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


def _execution(ctx: RunContext, policy: RunPolicy, executor: Executor) -> dict[str, Any]:
    """How the runs were executed: with a run's config, what ``bench rerun`` needs to repeat it."""
    return {
        "device": str(ctx.device),
        "threads": executor.threads,
        **asdict(policy),
        "executor": executor.describe(),
        "data_root": str(ctx.data.data_root) if ctx.data.data_root else None,
    }


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (whose progress bars are widgets, not text)."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return bool(get and getattr(get(), "kernel", None) is not None)
