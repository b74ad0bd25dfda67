"""What the CLI commands share: the --plugin option, loading plugins once, the run-policy flags,
running a suite and printing its outcome."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harness.errors import BenchError, DuplicateNameError
from harness.registry.loading import Plugins, load_plugins, resolve_plugin_names
from harness.reporting.tables import plural

if TYPE_CHECKING:  # the runner imports torch: imported when a command runs, not for --help
    from harness.execution.runner import RunPolicy, SuiteInterrupted, SuiteOutcome
    from harness.planning.suite_files import Suite
    from harness.registry.specs import Registry

EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}  # 128 + signal number, as shells report it


def _remember_plugins(ctx: click.Context, _param, values: tuple[str, ...]) -> tuple[str, ...]:
    root = ctx.find_root()
    root.meta.setdefault("bench.plugins", []).extend(values)
    return values


plugin_option = click.option(
    "--plugin",
    "plugins",
    multiple=True,
    metavar="PATH_OR_MODULE",
    expose_value=False,
    callback=_remember_plugins,
    help="Load a plugin from a .py file or an importable module (repeatable; "
    "also BENCH_PLUGINS=a,b).",
)


def plugin_names(ctx: click.Context) -> list[str]:
    """The extra plugins of this invocation (--plugin, BENCH_PLUGINS), resolved by
    :func:`harness.registry.loading.resolve_plugin_names`."""
    return resolve_plugin_names(ctx.find_root().meta.get("bench.plugins", []), "--plugin")


def get_plugins(
    ctx: click.Context, *, allow_conflicts: bool = False, hooks: tuple[str, ...] | None = None
) -> Plugins:
    """Load plugins once per invocation and warn (on stderr) about any that failed.

    A name two plugins register is an error naming both (exit 2), unless ``allow_conflicts``:
    ``bench list plugins`` shows every plugin and the conflict instead.
    """
    root, key = ctx.find_root(), f"bench.loaded.{hooks}"
    if key not in root.meta:
        plugins = load_plugins(plugin_names(ctx), strict=False, hooks=hooks)
        for failure in plugins.failures:
            click.echo(
                f"warning: plugin '{failure.name}' ({failure.source}) failed to load: "
                f"{failure.error}",
                err=True,
            )
        root.meta[key] = plugins
    plugins = root.meta[key]
    if plugins.conflicts and not allow_conflicts:
        raise DuplicateNameError(
            "; ".join(plugins.conflicts) + " (bench list plugins shows both plugins)"
        )
    return plugins


def data_root_option(
    help: str = "Where on-disk datasets live (or BENCH_DATA_ROOT).",
) -> Callable[[Callable], Callable]:
    """--data-root, read from BENCH_DATA_ROOT when not given."""
    return click.option(
        "--data-root", type=click.Path(path_type=Path), envvar="BENCH_DATA_ROOT", help=help
    )


run_timeout_option = click.option(
    "--run-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop a run after this long and record it as timeout (a worker process is killed if "
    "it does not stop).",
)
isolate_option = click.option(
    "--isolate",
    is_flag=True,
    help="Each run in a fresh worker process: one at a time, or --jobs N at once "
    "(--executor processes).",
)


def _jobs(ctx, _param, value: str | None) -> int | None:
    if value is None:
        return None
    if value == "auto":
        from harness.execution.executor import usable_cores

        return usable_cores()
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise click.BadParameter(f"{value!r} is not a number of runs (1, 2, ...) or 'auto'")


POLICY_OPTIONS = [
    click.option(
        "--executor",
        metavar="NAME[://ADDRESS]",
        help="Where runs execute: local (default), processes, dask (a local cluster), "
        "dask://HOST:PORT (an existing scheduler); bench list executors.",
    ),
    click.option(
        "--jobs",
        "-j",
        metavar="N|auto",
        callback=_jobs,
        help="Runs at once (auto: the usable cores); alone, it means --executor processes: N "
        "worker processes, each performing one run after another (a crash fails only its run).",
    ),
    click.option(
        "--retries",
        type=click.IntRange(min=0),
        default=0,
        show_default=True,
        help="Start a run again this often when its worker dies (never when the run fails).",
    ),
    run_timeout_option,
    click.option("--fail-fast", is_flag=True, help="Stop the suite at the first run that fails."),
    isolate_option,
    click.option(
        "--deterministic",
        is_flag=True,
        help="torch.use_deterministic_algorithms(True) (slower on CUDA; see the README).",
    ),
]


def policy_options(command: Callable) -> Callable:
    """Add --executor, --jobs, --retries, --run-timeout, --fail-fast, --isolate and
    --deterministic to a command."""
    for option in reversed(POLICY_OPTIONS):
        command = option(command)
    return command


SINK_OPTIONS = [
    click.option(
        "--tensorboard",
        type=click.Path(path_type=Path, file_okay=False),
        metavar="DIR",
        help="Write each run's per-epoch scalars and timings (and a grid's HParams) as "
        "TensorBoard event files under DIR/<results folder>/ (--sink tensorboard=DIR).",
    ),
    click.option(
        "--sink",
        "sinks",
        multiple=True,
        metavar="NAME[=TARGET]",
        help="Also send each run's record to this result sink (repeatable; bench list sinks).",
    ),
]


def sink_options(command: Callable) -> Callable:
    """Add --tensorboard and --sink to a command."""
    for option in reversed(SINK_OPTIONS):
        command = option(command)
    return command


def make_policy(ctx: click.Context, **flags: Any) -> RunPolicy:
    """The run policy of the policy flags (:meth:`harness.execution.runner.RunPolicy.of`)."""
    from harness.execution.runner import RunPolicy

    return RunPolicy.of(**flags, plugins=tuple(plugin_names(ctx)))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


dry_run_option = click.option(
    "--dry-run",
    is_flag=True,
    help="Load the plugins, check the suite and print its plan of runs; train nothing, download "
    "nothing, connect to no cluster, write no file.",
)


def run_and_show(
    ctx: click.Context,
    suite: Suite,
    registry: Registry,
    *,
    as_json: bool,
    quiet: bool,
    notes: Callable[[], Sequence[str]] = tuple,
    dry_run: bool = False,
    **run: Any,
) -> None:
    """:func:`harness.execution.runner.run_suite`, then print the outcome; exit 1 if a run failed,
    and 130 or 143 after Ctrl-C or SIGTERM (with the completed runs saved and how to resume).
    With ``dry_run``, print the plan (:func:`harness.execution.plan.plan_suite`) instead."""
    if dry_run:
        return show_plan(suite, registry, as_json=as_json, **run)
    from harness.execution.runner import SuiteInterrupted, run_suite

    try:
        outcome = run_suite(suite, registry, quiet=quiet or as_json, **run)
    except SuiteInterrupted as stop:
        _show_interrupted(stop, as_json)
        ctx.exit(EXIT_SIGNAL[stop.signal_name])
    show_outcome(ctx, outcome, as_json, notes())


def show_plan(suite: Suite, registry: Registry, *, as_json: bool, **run: Any) -> None:
    """Print what ``run`` would execute: the suite, its procedure, device, executor and runs."""
    from harness.execution.plan import plan_suite
    from harness.reporting.tables import markdown_table

    policy = run.get("policy")
    plan = plan_suite(
        suite,
        registry,
        device=run.get("device"),
        data=run.get("data"),
        executor=policy.executor if policy else "local",
        sinks=run.get("sinks", ()),
    )
    head = {"suite": suite.name, "procedure": plan.procedure, "device": str(plan.device)}
    head |= {"executor": plan.executor, "runs": len(plan.runs)}
    if as_json:
        return echo_json({**head, "dry_run": True, "plan": plan.rows()})
    click.echo(", ".join(f"{key}: {value}" for key, value in head.items()))
    click.echo(markdown_table(plan.rows()))
    click.echo("dry run: nothing was trained or written; run it without --dry-run.")


def show_outcome(
    ctx: click.Context, outcome: SuiteOutcome, as_json: bool, notes: Sequence[str] = ()
) -> None:
    """Print a finished suite: its report, files and ``notes``, or one JSON object; then a
    summary of the runs that failed (exit 1 if any)."""
    results_path = outcome.store.path
    if as_json:
        echo_json(
            {
                **_summary(outcome.store.data, results_path),
                "report": str(outcome.out_dir / "report.md"),
            }
        )
    else:
        click.echo(outcome.report.markdown)
        click.echo(f"results: {results_path}")
        click.echo(f"report:  {outcome.out_dir / 'report.md'}")
        for path in outcome.report.files:
            click.echo(f"plot:    {path}")
        if outcome.run_plots:
            plots = plural(len(outcome.run_plots), "PNG")
            click.echo(f"plots:   {outcome.run_plots[0].parent}/ ({plots})")
        for note in notes:
            click.echo(note)
    if outcome.failures:
        click.echo(
            f"{len(outcome.failures)} of {plural(len(outcome.store.runs), 'run')} did not succeed:",
            err=True,
        )
        for run in outcome.failures:
            error = (run.get("error") or "").strip().splitlines()
            click.echo(f"  {run['id']}  {run['status']}: {error[0] if error else ''}", err=True)
    if outcome.store.data["status"] == "stopped":
        click.echo(
            f"{outcome.store.data['note']}; {_resume_hint(outcome.store.data, results_path)}",
            err=True,
        )
    if outcome.failures:
        ctx.exit(1)


def _show_interrupted(stop: SuiteInterrupted, as_json: bool) -> None:
    data, path = stop.store.data, stop.store.path
    if as_json:
        echo_json(_summary(data, path))
    click.echo(f"{data['note']}; saved in {path}", err=True)
    click.echo(_resume_hint(data, path), err=True)


def _summary(data: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        "results": str(path),
        "status": data["status"],
        "note": data.get("note"),
        "runs": [
            {k: r[k] for k in ("id", "status", "error", "config", "metrics")} for r in data["runs"]
        ],
    }


def _resume_hint(data: dict[str, Any], path: Path) -> str:
    """How to finish the suite: the original ``bench run`` command with --resume."""
    from harness.results.store import resume_command

    command = resume_command(data, path.parent)
    if command is None:
        return "the completed runs are kept in the results file"
    return f"finish it with: {shlex.join(command)}"


def refuse_written_out(out: Path, command: list[str]) -> None:
    """Refuse, before anything runs, an --out directory that already holds a results file,
    naming the commands that work instead: the ``bench run`` that wrote it with ``--resume``,
    and ``command`` with an --out directory that is free."""
    from harness.results.store import (
        RESULTS_NAME,
        free_directory,
        load_results,
        redirected,
        resume_command,
    )

    path = out / RESULTS_NAME
    if not path.exists():
        return
    elsewhere = redirected(command, "--out", free_directory(out))
    hint = f"keep it and write elsewhere with `{shlex.join(elsewhere)}`"
    try:
        resume = resume_command(load_results(path), out)
    except BenchError:  # damaged or foreign: nothing to resume
        resume = None
    if resume:
        hint = f"resume it with `{shlex.join(resume)}`, or {hint}"
    raise BenchError(f"{path} already exists; {hint}")
