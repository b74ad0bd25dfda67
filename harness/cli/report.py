"""``bench report``: the tables of stored results files; never re-runs anything."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli._shared import get_plugins, plugin_option
from harness.reporting import FORMATS
from harness.results.store import atomic_write_text


@click.command("report")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="markdown",
    show_default=True,
    help="Output format.",
)
@click.option("--out", type=click.Path(path_type=Path), help="Write to this file, not stdout.")
@click.option(
    "--plots",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="Regenerate the suites' plots into DIR (a folder per file when there are several).",
)
@plugin_option
@click.pass_context
def report_command(ctx, files, fmt, out, plots) -> None:
    """Render the tables of one or more results files (FILE or its directory).

    Several files are shown side by side: one table per suite with a `results` column naming
    the file, rows of the same configuration next to each other.

    \b
    Examples:
      bench report results/20261123-quickstart
      bench report a/results.json b/results.json --format csv --out table.csv
      bench report results/pruning --plots plots/
    """
    from harness.reporting.render import build, formatted, load_sources

    sources = load_sources(files)
    sections = build(sources, get_plugins(ctx).registry, plots)
    text = formatted(sources, sections, fmt)
    if out:
        atomic_write_text(out, text)
        click.echo(f"report: {out}", err=True)
    else:
        click.echo(text, nl=False)
    if plots is not None:
        drawn = [path for section in sections for path in section.files]
        for path in drawn:
            click.echo(f"plot:    {path}", err=True)
        if not drawn:
            procedures = ", ".join(sorted({section.procedure for section in sections}))
            click.echo(f"plots: none, the {procedures} procedure draws no plots", err=True)
