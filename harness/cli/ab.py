"""``bench ab``: a baseline and a candidate measured in alternating rounds, then compared."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.cli._sessions import Request, session_options
from harness.cli._shared import EXIT_SIGNAL
from harness.results.store import atomic_write_text

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
@session_options
@click.option("--out", type=click.Path(path_type=Path), help="Output directory.")
@click.option(
    "--markdown-out",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Also write the verdict as markdown (a pull-request comment) to FILE.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object, not a table.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Check both sides and the suite and print the plan of runs; start no worker, install "
    "no revision, measure nothing.",
)
@click.pass_context
def ab_command(ctx, baseline, candidate, out, markdown_out, as_json, dry_run, **flags) -> None:
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
    from harness.comparing.ab.session import SessionInterrupted, run_session
    from harness.comparing.ab.sides import resolve_side
    from harness.comparing.github import report_to_github
    from harness.comparing.output import to_json, to_markdown, to_text
    from harness.execution.runner import default_out_dir

    request = Request.of(flags, "ab")
    out = out or default_out_dir(request.name)
    sides = [
        resolve_side(role, spec, out / "sides", install=not dry_run)
        for role, spec in (("baseline", baseline), ("candidate", candidate))
    ]
    if dry_run:
        return _show_plan(ctx, sides, request, as_json)
    session = request.session(ctx, sides)
    try:
        shown = not (flags["quiet"] or as_json)
        outcome = run_session(
            session,
            out,
            request.rules,
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
        click.echo(to_json(comparison, ab_rounds=session.rounds, suite=request.suite), nl=False)
    else:
        click.echo(to_text(comparison), nl=False)
        click.echo(f"results: {out / 'baseline'}  {out / 'candidate'}")
        click.echo(f"report:  bench report {out / 'baseline'} {out / 'candidate'}")
    report_to_github(comparison)
    ctx.exit(comparison.exit_code)


def _show_plan(ctx, sides, request: Request, as_json: bool) -> None:
    """What the session would measure, planned as each side's worker would plan it where this
    process can (a ``plugin:`` side adds its plugin; another interpreter or revision plans with
    its own code when it runs). The candidate's plan is shown."""
    from harness.cli._shared import plugin_names, show_plan
    from harness.execution.plan import plan_suite
    from harness.measuring.workload import timing_suite
    from harness.registry.loading import load_plugins

    device = None if request.flags["device"] == "auto" else request.flags["device"]
    for side in sides:
        registry = load_plugins([*plugin_names(ctx), *side.plugins]).registry
        planned = timing_suite(request.suite, request.overrides, registry, request.name)
        if side.role == "baseline":
            plan_suite(planned, registry, device=device)
            continue
        if not as_json:
            for each in sides:
                commit = f" (commit {each.commit[:12]})" if each.commit else ""
                click.echo(f"{each.role}: {each.spec}{commit}")
            click.echo(f"rounds: {request.rounds}, each side in a fresh worker process every round")
        show_plan(planned, registry, as_json=as_json, device=device)
