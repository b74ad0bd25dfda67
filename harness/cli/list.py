"""``bench list ...``: what the loaded plugins provide."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from harness.cli._shared import echo_json, get_plugins, plugin_option
from harness.options import Option

if TYPE_CHECKING:
    from harness.data import DataContext
from harness.reporting.tables import markdown_table


def _shape(shape) -> str:
    return "x".join(map(str, shape))


def option_row(option: Option) -> dict:
    """An option as ``bench list`` shows it: its type (and choices), default and help."""
    row = {"type": option.kind, "default": option.default, "help": option.help}
    if option.choices is not None:
        row["choices"] = list(option.choices)
    return row


def _as_typed(value) -> str:
    """A default as one would type it after ``--model-opt key=``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return '""' if value == "" else str(value)


def _kind(option: dict) -> str:
    choices = option.get("choices")
    return f"{option['type']}: {', '.join(map(str, choices))}" if choices else option["type"]


def options_table(rows: list[dict]) -> str:
    """Every model's options, one row each: what ``--model-opt KEY=VALUE`` accepts."""
    return markdown_table(
        [
            {
                "model": r["name"],
                "option": key,
                "type": _kind(o),
                "default": _as_typed(o["default"]),
                "help": o["help"],
            }
            for r in rows
            for key, o in r["options"].items()
        ]
    )


def model_rows(registry) -> list[dict]:
    import torch

    from harness.measuring.flops import count_params, forward_flops

    rows = []
    for spec in registry.models:
        with torch.device("meta"):  # shapes only: no memory, no compute
            model = spec.create(spec.input_shape, spec.num_classes)
            params, flops = count_params(model), forward_flops(model, spec.input_shape)
        rows.append(
            {
                "name": spec.name,
                "description": spec.description,
                "input_shape": list(spec.input_shape),
                "accepts": spec.accepts,
                "num_classes": spec.num_classes,
                "params": params,
                "flops": flops,
                "tasks": list(spec.tasks),
                "options": {k: option_row(o) for k, o in spec.options.items()},
                "source": registry.models.source(spec.name),
            }
        )
    return rows


def dataset_rows(registry, context: DataContext) -> list[dict]:
    rows = []
    for spec in registry.datasets:
        options = spec.resolve({})
        reason = spec.unavailable(options, context)
        row = {
            "name": spec.name,
            "description": spec.description,
            "task": spec.task,
            **spec.describe(options),
            "available": reason is None,
            "source": registry.datasets.source(spec.name),
        }
        if reason:
            row["reason"] = reason
        rows.append(row)
    return rows


json_option = click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")


@click.group("list")
@plugin_option
def list_group() -> None:
    """List models, datasets, suites, procedures, pruning methods or plugins."""


@list_group.command("models")
@json_option
@plugin_option
@click.pass_context
def list_models(ctx, as_json: bool) -> None:
    """Models: the tasks each supports, and its parameters and forward FLOPs (batch 1) for the
    input and outputs shown, then every option with its type, default and help (for
    --model-opt KEY=VALUE)."""
    rows = model_rows(get_plugins(ctx).registry)
    if as_json:
        return echo_json(rows)
    click.echo(
        markdown_table(
            [
                {
                    "name": r["name"],
                    "tasks": ", ".join(r["tasks"]),
                    "input": _shape(r["input_shape"]),
                    "outputs": r["num_classes"],
                    "accepts": r["accepts"],
                    "params": f"{r['params']:,}",
                    "FLOPs": f"{r['flops']:,}",
                    "description": r["description"],
                }
                for r in rows
            ]
        )
    )
    if any(r["options"] for r in rows):
        click.echo("\nOptions (--model-opt KEY=VALUE):\n")
        click.echo(options_table(rows))


@list_group.command("datasets")
@json_option
@plugin_option
@click.option(
    "--data-root",
    type=click.Path(path_type=Path),
    envvar="BENCH_DATA_ROOT",
    help="Where on-disk datasets live (or BENCH_DATA_ROOT).",
)
@click.pass_context
def list_datasets(ctx, as_json: bool, data_root: Path | None) -> None:
    """Datasets: task, geometry, model outputs (classes, targets or vocabulary), split sizes,
    and whether they can be loaded here."""
    from harness.data import DataContext

    rows = dataset_rows(get_plugins(ctx).registry, DataContext(data_root=data_root))
    if as_json:
        return echo_json(rows)
    click.echo(
        markdown_table(
            [
                {
                    "name": r["name"],
                    "task": r["task"],
                    "input": _shape(r["input_shape"]),
                    "outputs": r["num_classes"]
                    if r["num_classes"] is not None
                    else "from the data",
                    "train/val/test": "/".join(str(v) for v in r["sizes"].values())
                    if r["sizes"]
                    else "—",
                    "available": "yes" if r["available"] else f"no: {r['reason']}",
                    "description": r["description"],
                }
                for r in rows
            ]
        )
    )


@list_group.command("suites")
@json_option
@plugin_option
@click.pass_context
def list_suites(ctx, as_json: bool) -> None:
    """Suites that ``bench run --suite NAME`` accepts."""
    registry = get_plugins(ctx, hooks=("register_suites",)).registry
    rows = [
        {
            "name": s.name,
            "description": s.description,
            "path": str(s.path),
            "source": registry.suites.source(s.name),
        }
        for s in registry.suites
    ]
    if as_json:
        return echo_json(rows)
    click.echo(markdown_table([{k: r[k] for k in ("name", "description", "path")} for r in rows]))


@list_group.command("procedures")
@json_option
@plugin_option
@click.pass_context
def list_procedures(ctx, as_json: bool) -> None:
    """Procedures a suite file can name, with their settings."""
    registry = get_plugins(ctx).registry
    rows = [
        {
            "name": p.name,
            "description": p.description,
            "settings": {k: o.default for k, o in p.settings.items()},
        }
        for p in registry.procedures
    ]
    if as_json:
        return echo_json(rows)
    click.echo(
        markdown_table(
            [
                {**r, "settings": ", ".join(f"{k}={v}" for k, v in r["settings"].items())}
                for r in rows
            ]
        )
    )


@list_group.command("plugins")
@json_option
@plugin_option
@click.pass_context
def list_plugins(ctx, as_json: bool) -> None:
    """Loaded plugins, where each came from, and what it provides (or why it failed, or which
    name it registers that another plugin also does)."""
    plugins = get_plugins(ctx, allow_conflicts=True)
    for conflict in plugins.conflicts:
        click.echo(f"warning: {conflict}", err=True)
    rows = [
        {
            "name": p.name,
            "source": p.source,
            "status": p.status,
            "error": p.error,
            "provides": p.provides,
            "conflicts": p.conflicts,
        }
        for p in plugins.plugins
    ]
    if as_json:
        return echo_json(rows)
    click.echo(
        markdown_table(
            [
                {
                    "name": r["name"],
                    "status": r["status"],
                    "source": r["source"],
                    "provides": "; ".join(
                        filter(None, [r["error"], ", ".join(r["provides"]), *r["conflicts"]])
                    ),
                }
                for r in rows
            ]
        )
    )


@list_group.command("pruning-methods")
@json_option
@plugin_option
@click.pass_context
def list_pruning_methods(ctx, as_json: bool) -> None:
    """Pruning methods a pruning suite can name (besides ``scratch``)."""
    registry = get_plugins(ctx).registry
    rows = [
        {
            "name": m.name,
            "structure": m.structure,
            "description": m.description,
            "source": registry.pruning_methods.source(m.name),
        }
        for m in registry.pruning_methods
    ]
    if as_json:
        return echo_json(rows)
    click.echo(
        markdown_table([{k: r[k] for k in ("name", "structure", "description")} for r in rows])
    )


@list_group.command("executors")
@json_option
@plugin_option
@click.pass_context
def list_executors(ctx, as_json: bool) -> None:
    """Executors --executor can name (NAME, or NAME://ADDRESS where an address is taken)."""
    executors = get_plugins(ctx).registry.executors
    _list_named(executors, lambda e: f"{e.name}[://ADDRESS]" if e.address else e.name, as_json)


@list_group.command("sinks")
@json_option
@plugin_option
@click.pass_context
def list_sinks(ctx, as_json: bool) -> None:
    """Result sinks --sink can name (NAME, or NAME=TARGET where a target is needed)."""
    sinks = get_plugins(ctx).registry.sinks
    _list_named(sinks, lambda s: f"{s.name}=TARGET" if s.needs_target else s.name, as_json)


def _list_named(collection, shown: Callable[[Any], str], as_json: bool) -> None:
    """Name (as a flag takes it), description and source of each spec in ``collection``."""
    rows = [
        {
            "name": shown(spec),
            "description": spec.description,
            "source": collection.source(spec.name),
        }
        for spec in collection
    ]
    if as_json:
        return echo_json(rows)
    click.echo(markdown_table([{k: r[k] for k in ("name", "description")} for r in rows]))
