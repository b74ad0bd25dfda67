"""``bench new-plugin``: write a ready-to-install plugin package."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from harness.registry.skeleton import PluginNames, write_plugin


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to write the package (default ./bench-NAME); must be new or empty.",
)
def new_plugin_command(name: str, directory: Path | None) -> None:
    """Write a plugin package NAME: a model, a dataset, a test and its entry points.

    \b
    Example:
      bench new-plugin my-models
      pip install -e 'bench-my-models[test]' && pytest bench-my-models && bench list models
    """
    names = PluginNames(name)
    directory = directory or Path(names.project)
    for path in write_plugin(name, directory):
        click.echo(f"wrote {path}")
    steps = {
        f"pip install -e {shlex.quote(f'{directory}[test]')}": (
            f"installs {names.package} and its [test] extra (pytest)"
        ),
        f"pytest {directory}": "runs the plugin's own tests",
        "bench list models": f"shows {names.model}; bench list datasets shows {names.dataset}",
    }
    width = max(map(len, steps))
    click.echo("\nNext steps:")
    for command, why in steps.items():
        click.echo(f"  {command.ljust(width)}  # {why}")
