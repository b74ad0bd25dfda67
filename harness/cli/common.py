"""What the CLI commands share: the --plugin option, loading plugins once, printing."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from harness.plugins import Plugins, extra_plugin_names, load_plugins
from harness.runner import SuiteOutcome


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


def get_plugins(ctx: click.Context) -> Plugins:
    """Load plugins once per invocation and warn (on stderr) about any that failed."""
    root = ctx.find_root()
    if "bench.loaded" not in root.meta:
        plugins = load_plugins(extra_plugin_names(root.meta.get("bench.plugins", [])))
        for failure in plugins.failures:
            click.echo(
                f"warning: plugin '{failure.name}' ({failure.source}) failed to load: "
                f"{failure.error}",
                err=True,
            )
        root.meta["bench.loaded"] = plugins
    return root.meta["bench.loaded"]


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def show_outcome(
    ctx: click.Context, outcome: SuiteOutcome, as_json: bool, notes: Sequence[str] = ()
) -> None:
    """Print a finished suite: its report, files and ``notes``, or one JSON object; exit 1 if a
    run failed."""
    results_path = outcome.store.path
    if as_json:
        echo_json(
            {
                "results": str(results_path),
                "report": str(outcome.out_dir / "report.md"),
                "status": outcome.store.data["status"],
                "runs": [
                    {k: r[k] for k in ("id", "status", "error", "config", "metrics")}
                    for r in outcome.store.runs
                ],
            }
        )
    else:
        click.echo(outcome.report.markdown)
        click.echo(f"results: {results_path}")
        click.echo(f"report:  {outcome.out_dir / 'report.md'}")
        for path in outcome.report.files:
            click.echo(f"plot:    {path}")
        for note in notes:
            click.echo(note)
    if outcome.failures:
        click.echo(
            f"{len(outcome.failures)} of {len(outcome.store.runs)} run(s) failed; "
            "see the results file for errors",
            err=True,
        )
        ctx.exit(1)
