"""``bench new-plugin``: write a ready-to-install plugin package."""

from __future__ import annotations

import click


@click.command("new-plugin")
@click.argument("name")
def new_plugin_command(name: str) -> None:
    """Write a plugin package skeleton NAME."""
    raise click.ClickException("not implemented yet")
