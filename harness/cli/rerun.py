"""``bench rerun RESULTS RUN_ID``: repeat one recorded run and check its numbers match."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from harness.execution.rerun import Rerun

from harness.cli._shared import (
    data_root_option,
    echo_json,
    get_plugins,
    isolate_option,
    plugin_option,
    run_timeout_option,
)
from harness.reporting.tables import plural


@click.command("rerun")
@click.argument("results", type=click.Path(path_type=Path))
@click.argument("run_id")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Output directory (default results/<timestamp>-rerun-<run>).",
)
@data_root_option(
    "Where on-disk datasets live, if not where the original run found them (or BENCH_DATA_ROOT)."
)
@isolate_option
@run_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@plugin_option
@click.pass_context
def rerun_command(ctx, results, run_id, out, data_root, isolate, run_timeout, as_json) -> None:
    """Run RUN_ID of RESULTS (a results.json or its directory) again, exactly as recorded.

    The run repeats with its recorded configuration and seed, on its recorded device, thread
    count and --deterministic setting, with the plugins it was run with, into a new output
    directory. Its accuracies, losses, parameter and FLOP counts are then compared with the
    original's (timings are not); exit 0 if all match within 1e-6, 1 if not.

    \b
    Examples:
      bench rerun results/20260101-120000-quickstart 001-cnn-small-digits-s0
      bench rerun results/20260101-120000-quickstart/results.json 1 --out /tmp/again
    """
    from harness.execution.rerun import find_run, rerun
    from harness.execution.runner import default_out_dir
    from harness.results.store import load_results

    data = load_results(results)
    original = find_run(data, run_id)
    root = ctx.find_root()
    root.meta.setdefault("bench.plugins", []).extend(data.get("execution", {}).get("plugins", []))
    outcome = rerun(
        data,
        results,
        run_id,
        get_plugins(ctx).registry,
        out_dir=out or default_out_dir(f"rerun-{original['id']}"),
        command=["bench", *sys.argv[1:]],
        data_root=data_root,
        isolate=isolate,
        run_timeout=run_timeout,
    )
    if as_json:
        echo_json(
            {
                "results": str(outcome.store.path),
                "run": outcome.original["id"],
                "status": outcome.record["status"],
                "original_status": outcome.original["status"],
                "reproduced": outcome.reproduced,
                "compared": len(outcome.before),
                "differences": outcome.differences,
                "context_changes": outcome.context_changes,
            }
        )
    else:
        _show(outcome)
    if not outcome.reproduced:
        ctx.exit(1)


def _show(outcome: Rerun) -> None:
    from harness.execution.rerun import TOLERANCE
    from harness.reporting.tables import markdown_table

    original, record = outcome.original, outcome.record
    click.echo(f"rerun of {original['id']}: status {record['status']} (was {original['status']})")
    if record["error"]:
        click.echo(f"error: {record['error']}")
    before, after = outcome.before, outcome.after
    differing = {key for key, _, _ in outcome.differences}
    rows = [
        {
            "metric": key,
            "original": f"{value:.9g}",
            "rerun": f"{after[key]:.9g}" if key in after else "—",
            "same": "NO" if key in differing else "yes",
        }
        for key, value in before.items()
        if not key.startswith(("history.", "finetune_history."))  # compared, not listed
    ]
    if rows:
        click.echo(markdown_table(rows))
    for key, (then, now) in outcome.context_changes.items():
        click.echo(f"note: {key} differs from the original's: {then} -> {now}")
    if outcome.differences:
        differ = "differs" if len(outcome.differences) == 1 else "differ"
        click.echo(
            f"{plural(len(outcome.differences), 'metric')} {differ} by more than {TOLERANCE:g}:"
        )
        for key, value, new in outcome.differences:
            click.echo(f"  {key}: {value} -> {new}")
    click.echo(
        f"{'reproduced' if outcome.reproduced else 'NOT reproduced'}: "
        f"{plural(len(before), 'metric')} "
        f"compared (history included, timings not) within {TOLERANCE:g}"
    )
    click.echo(f"results: {outcome.store.path}")
