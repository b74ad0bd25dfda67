"""What the CLI commands share: the --plugin option, loading plugins once, printing."""

from __future__ import annotations

import json
from typing import Any

import click

from harness.plugins import Plugins, extra_plugin_names, load_plugins


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
