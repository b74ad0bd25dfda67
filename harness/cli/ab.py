"""``bench ab``: a baseline and a candidate measured in alternating rounds, then compared."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.cli._shared import EXIT_SIGNAL, data_root_option, plugin_names, plugin_option
from harness.comparing.verdicts import MIN_ROUNDS
from harness.measuring import MODES
from harness.options import parse_assignments
from harness.results.store import atomic_write_text

ROUNDS = 20  # without --rounds or a settings file's ab_rounds

SIDE_HELP = (
    "'current' (this installation), a Python interpreter or virtual environment, "
    "'git:REV' (a revision of the repository here: of bench's own, that revision's bench; of a "
    "plugin package's, this bench with that revision of the package) or "
    "'plugin:PATH_OR_MODULE' (this installation plus that plugin)."
)


@click.command("ab")
@click.option("--baseline", required=True, metavar="SIDE", help=f"The baseline: {SIDE_HELP}")
@click.option(
    "--candidate", default="current", show_default=True, metavar="SIDE", help="The candidate."
)
@click.option(
    "--suite",
    metavar="NAME_OR_PATH",
    help="A timing suite (procedure throughput) [default without --model: the settings "
    "file's suite].",
)
@click.option("--model", "--models", "models", multiple=True, metavar="NAME", help="Model.")
@click.option(
    "--dataset",
    "--datasets",
    "datasets",
    multiple=True,
    metavar="NAME",
    help="Dataset (default: synthetic).",
)
@click.option("--model-opt", multiple=True, metavar="KEY=VALUE", help="Model option.")
@click.option("--dataset-opt", multiple=True, metavar="KEY=VALUE", help="Dataset option.")
@click.option(
    "--batch-size", "batch_sizes", multiple=True, type=click.IntRange(min=1), help="Batch size."
)
@click.option("--mode", "modes", multiple=True, type=click.Choice(MODES), help="What to measure.")
@click.option(
    "--device",
    metavar="auto|cpu|cuda[:N]",
    default="auto",
    show_default=True,
    help="Device both sides measure on.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="torch CPU threads of each side (one thread cannot wait for another).",
)
@click.option(
    "--cpus",
    default="auto",
    show_default=True,
    metavar="auto|any|N,M",
    help="CPUs both sides are pinned to, so that neither runs on a faster core: auto = the "
    "last --threads usable CPUs; any = no pinning.",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=MIN_ROUNDS),
    help=f"Rounds, each in fresh worker processes (at least {MIN_ROUNDS}, the fewest the "
    f"paired test can decide on) [default: the settings file's ab_rounds, else {ROUNDS}].",
)
@click.option(
    "--round-time",
    type=click.FloatRange(min=0),
    default=0.05,
    show_default=True,
    help="Seconds of samples per side, mode and round, at least.",
)
@click.option(
    "--max-round-time",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help="Stop a block after this many seconds of samples (there is always one sample).",
)
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Suite setting.")
@click.option(
    "--threshold",
    "thresholds",
    multiple=True,
    metavar="[GLOB=]VALUE",
    help="Slowdown that counts as a regression (default 5%), for every metric or those GLOB "
    "matches (repeatable), as bench compare takes it.",
)
@click.option(
    "--metric", "metrics", multiple=True, metavar="GLOB", help="Judge only metrics GLOB matches."
)
@click.option(
    "--gate",
    multiple=True,
    metavar="GLOB",
    help="Only metrics GLOB matches decide the exit code (repeatable), as bench compare takes it.",
)
@click.option("--strict", is_flag=True, help="Fail noisy regressions too.")
@click.option("--out", type=click.Path(path_type=Path), help="Output directory.")
@click.option(
    "--markdown-out",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Also write the verdict as markdown (a pull-request comment) to FILE.",
)
@data_root_option()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, not a table.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check both sides and the suite and print the plan of runs; start no worker, install "
    "no revision, measure nothing.",
)
@plugin_option
@click.pass_context
def ab_command(
    ctx,
    baseline,
    candidate,
    suite,
    models,
    datasets,
    model_opt,
    dataset_opt,
    batch_sizes,
    modes,
    device,
    threads,
    cpus,
    rounds,
    round_time,
    max_round_time,
    settings,
    thresholds,
    metrics,
    gate,
    strict,
    out,
    markdown_out,
    data_root,
    as_json,
    quiet,
    dry_run,
) -> None:
    """Measure BASELINE and CANDIDATE code in alternating rounds on this machine, then compare.

    Every round starts a fresh worker process per side (the same code in two long-lived
    processes can time several percent apart) and measures every run's every mode on one side
    and then on the other, the order alternating, so a machine that drifts slows both alike.
    Rounds in which a side was contended are dropped in pairs. The verdict pairs the rounds
    (Wilcoxon signed-rank test; default threshold 5%) and the exit code is bench compare's.
    The rounds, thresholds, gate and (without --suite or --model) the suite also come from the
    project's settings file ([tool.bench] in pyproject.toml, or bench.toml); flags override it.

    \b
    Examples:
      bench ab --baseline git:main --model lenet5 --batch-size 32
      bench ab --baseline git:HEAD~1 --candidate git:HEAD --model my-model
      bench ab --baseline /opt/venv-base --candidate /opt/venv-new --suite throughput \\
               --set batch_sizes=1,32
      bench ab --baseline plugin:old_models.py --candidate plugin:new_models.py --model mine

    \b
    Exit codes: 0 no regression, 1 a regression, 2 usage error, 3 a failed run or no
    trustworthy verdict (too many contended rounds).
    """
    from harness.comparing.ab.session import Session, SessionInterrupted, run_session
    from harness.comparing.ab.sides import resolve_side
    from harness.comparing.github import report_to_github
    from harness.comparing.output import to_json, to_markdown, to_text
    from harness.comparing.settings_file import find_settings
    from harness.execution.runner import default_out_dir
    from harness.measuring.affinity import pinned_cpus
    from harness.planning.overrides import Overrides

    project = find_settings()
    suite = suite or (None if models else project.suite)
    if not suite and not models:
        raise click.UsageError(
            "give --suite NAME_OR_PATH or at least one --model (or a suite in the settings file)"
        )
    rounds = rounds or project.ab_rounds or ROUNDS
    rules = project.rules(thresholds, metrics, strict, gate)
    name = "ab-" + (Path(suite).stem if suite else "-".join(models))
    out = out or default_out_dir(name)
    overrides = Overrides(
        models=list(models),
        datasets=list(datasets),
        model_options=parse_assignments(model_opt, "--model-opt"),
        dataset_options=parse_assignments(dataset_opt, "--dataset-opt"),
        settings={
            **dict(parse_assignments(settings, "--set")),
            **({"batch_sizes": batch_sizes} if batch_sizes else {}),
            **({"modes": modes} if modes else {}),
        },
    )
    sides = [
        resolve_side(role, spec, out / "sides", install=not dry_run)
        for role, spec in (("baseline", baseline), ("candidate", candidate))
    ]
    if dry_run:
        return _show_plan(ctx, sides, suite, overrides, name, rounds, device, as_json)
    session = Session(
        baseline=sides[0],
        candidate=sides[1],
        suite=suite,
        overrides=overrides,
        default_name=name,
        rounds=rounds,
        round_time=round_time,
        max_round_time=max_round_time,
        threads=threads,
        device=device,
        cpus=pinned_cpus(cpus, threads),
        plugins=tuple(plugin_names(ctx)),
        data_root=data_root,
        command=["bench", *sys.argv[1:]],
    )
    try:
        shown = not (quiet or as_json)
        outcome = run_session(
            session,
            out,
            rules,
            progress=shown and sys.stderr.isatty(),
            log=shown and not sys.stderr.isatty(),
        )
    except SessionInterrupted as stop:
        click.echo(
            f"interrupted by {stop.signal_name}; partial results in {stop.out_dir}", err=True
        )
        ctx.exit(EXIT_SIGNAL[stop.signal_name])
    for warning in outcome.warnings:
        click.echo(f"warning: {warning}", err=True)
    comparison = outcome.comparison
    atomic_write_text(out / "compare.md", to_markdown(comparison))
    if markdown_out:
        atomic_write_text(markdown_out, to_markdown(comparison))
    if as_json:
        click.echo(to_json(comparison, ab_rounds=rounds, suite=suite), nl=False)
    else:
        click.echo(to_text(comparison), nl=False)
        click.echo(f"results: {out / 'baseline'}  {out / 'candidate'}")
        click.echo(f"report:  bench report {out / 'baseline'} {out / 'candidate'}")
    report_to_github(comparison)
    ctx.exit(comparison.exit_code)


def _show_plan(ctx, sides, suite, overrides, name, rounds, device, as_json) -> None:
    """What the session would measure, planned as each side's worker would plan it where this
    process can (a ``plugin:`` side adds its plugin; another interpreter or revision plans with
    its own code when it runs). The candidate's plan is shown."""
    from harness.cli._shared import plugin_names, show_plan
    from harness.execution.plan import plan_suite
    from harness.measuring.workload import timing_suite
    from harness.registry.loading import load_plugins

    device = None if device == "auto" else device
    for side in sides:
        registry = load_plugins([*plugin_names(ctx), *side.plugins]).registry
        planned = timing_suite(suite, overrides, registry, default_name=name)
        if side.role == "baseline":
            plan_suite(planned, registry, device=device)
            continue
        if not as_json:
            for each in sides:
                commit = f" (commit {each.commit[:12]})" if each.commit else ""
                click.echo(f"{each.role}: {each.spec}{commit}")
            click.echo(f"rounds: {rounds}, each side in a fresh worker process every round")
        show_plan(planned, registry, as_json=as_json, device=device)
