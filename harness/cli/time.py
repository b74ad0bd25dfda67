"""``bench time``: a one-off ``throughput`` suite from the command line (``bench profile`` shares
its options and runner).

Both build a suite document, validate it with :func:`harness.planning.suite_files.parse_suite` and
run it with :func:`harness.execution.runner.run_suite`, so their results file has the same schema as
``bench run``'s and ``bench report``/``bench compare`` read it the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from harness.cli._shared import (
    data_root_option,
    dry_run_option,
    get_plugins,
    make_policy,
    plugin_option,
    policy_options,
    run_and_show,
    sink_options,
)
from harness.measuring import AMP_NAMES, MODES
from harness.options import parse_assignments


def model_option(required: bool, help: str = "Model to measure (repeatable).") -> Callable:
    return click.option(
        "--model", "--models", "models", multiple=True, required=required, metavar="NAME", help=help
    )


SHARED_OPTIONS = [
    click.option(
        "--dataset",
        "--datasets",
        "datasets",
        multiple=True,
        metavar="NAME",
        help="Dataset (repeatable; default: synthetic, shaped like each model's input).",
    ),
    click.option("--model-opt", multiple=True, metavar="KEY=VALUE", help="Model option."),
    click.option(
        "--dataset-opt",
        multiple=True,
        metavar="KEY=VALUE",
        help="Dataset option, e.g. shape=3x224x224 for synthetic.",
    ),
    click.option(
        "--device",
        metavar="auto|all|cpu|cuda[:N]",
        default="auto",
        show_default=True,
        help="Device; 'all' measures on every available one.",
    ),
    click.option("--threads", type=click.IntRange(min=1), help="torch CPU threads."),
    click.option(
        "--amp", type=click.Choice(["none", *AMP_NAMES]), help="Autocast dtype (fp16 needs CUDA)."
    ),
    click.option("--channels-last", is_flag=True, help="Channels-last memory format."),
    click.option("--compile", "compile_", is_flag=True, help="Run the model via torch.compile."),
    click.option(
        "--out",
        type=click.Path(path_type=Path),
        help="Output directory (default results/<timestamp>-<name>).",
    ),
    data_root_option(),
    click.option("--json", "as_json", is_flag=True, help="Print one JSON object, not tables."),
    click.option("-q", "--quiet", is_flag=True, help="No progress bar."),
    dry_run_option,
    plugin_option,
]


def shared_options(command: Callable) -> Callable:
    for option in reversed(SHARED_OPTIONS):
        command = option(command)
    return policy_options(sink_options(command))


@click.command("time")
@model_option(
    required=False,
    help="Model to measure (repeatable) [default: the runs of the settings file's suite].",
)
@shared_options
@click.option(
    "--cpus",
    default="any",
    show_default=True,
    metavar="auto|any|N,M",
    help="CPUs each run is pinned to, recorded in the results, so that measurements taken at "
    "different times run on the same cores: auto = the last --threads usable CPUs; N,M = "
    "those (--threads defaults to their number); any = no pinning.",
)
@click.option(
    "--batch-size",
    "batch_sizes",
    multiple=True,
    type=click.IntRange(min=1),
    help="Batch size (repeatable; default 1, 32 and 128). Never changed by bench.",
)
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice(MODES),
    help="What to measure (repeatable; default all).",
)
@click.option("--warmup", type=click.IntRange(min=0), help="Warm-up iterations, at least.")
@click.option("--warmup-time", type=click.FloatRange(min=0), help="Warm-up seconds, at least.")
@click.option("--repeats", type=click.IntRange(min=1), help="Samples to record, at least.")
@click.option("--min-time", type=click.FloatRange(min=0), help="Seconds of samples, at least.")
@click.option(
    "--max-time",
    type=click.FloatRange(min=0),
    help="Stop after this many seconds of samples even if --repeats/--min-time are not "
    "met, once there are --min-repeats samples (reported as capped; default 10).",
)
@click.option(
    "--min-repeats",
    type=click.IntRange(min=1),
    help="Samples that --max-time does not cut below (--repeats, if fewer; default 5).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=0),
    help="Hard ceiling: stop after this many seconds of samples even below --min-repeats "
    "(default 60; never below --max-time).",
)
@click.option("--profile", is_flag=True, help="Also write a torch.profiler trace of one step.")
@click.option("--quick", is_flag=True, help="Smoke test: 1 warm-up, 3 repeats, capped at 1 s.")
@click.pass_context
def time_command(
    ctx,
    batch_sizes,
    modes,
    warmup,
    warmup_time,
    repeats,
    min_time,
    max_time,
    min_repeats,
    time_limit,
    profile,
    quick,
    cpus,
    **shared,
) -> None:
    """Time forward, forward+backward, training steps and an epoch of --model(s).

    Without --model, the runs of the suite named by the project's settings file (`suite` in
    [tool.bench] of pyproject.toml, or in bench.toml) are timed.

    \b
    Examples:
      bench time --model resnet18 --dataset synthetic --dataset-opt shape=3x224x224 \\
                 --batch-size 32 --device cpu
      bench time --model lenet5 --dataset digits --device auto --threads 2 --json
      bench time --model cnn --batch-size 1 --batch-size 64 --mode forward --amp bf16
      bench time --model lenet5 --quick --tensorboard runs/tb
      bench time --model lenet5 --threads 1 --cpus auto
    """
    from harness.comparing.settings_file import find_settings

    suite = None if shared["models"] else find_settings().suite
    if not suite and not shared["models"]:
        raise click.UsageError("give --model NAME (or a suite in the project's settings file)")
    pinned, shared["threads"] = _pinning(cpus, shared["threads"])
    settings = {
        "batch_sizes": batch_sizes,
        "modes": modes,
        "warmup": warmup,
        "warmup_time": warmup_time,
        "repeats": repeats,
        "min_time": min_time,
        "max_time": max_time,
        "min_repeats": min_repeats,
        "time_limit": time_limit,
        "profile": profile,
        "quick": quick,
    }
    run_timing(ctx, "time", settings, suite=suite, cpus=pinned, **shared)


def _pinning(spec: str, threads: int | None) -> tuple[tuple[int, ...], int | None]:
    """The CPUs ``--cpus`` names, and the thread count: ``--threads``, else one per CPU."""
    from harness.measuring.affinity import pinned_cpus

    if spec == "any":
        return (), threads
    cpus = pinned_cpus(spec, threads or 1)
    return cpus, threads or len(cpus) or None


def run_timing(
    ctx: click.Context,
    command: str,
    settings: dict[str, Any],
    *,
    suite: str | None = None,
    cpus: tuple[int, ...] = (),
    models,
    datasets,
    model_opt,
    dataset_opt,
    device,
    threads,
    amp,
    channels_last,
    compile_,
    out,
    data_root,
    as_json,
    quiet,
    dry_run,
    tensorboard,
    sinks,
    **policy,
) -> None:
    from harness.data import DataContext
    from harness.execution.runner import default_out_dir
    from harness.measuring.workload import timing_suite
    from harness.planning.overrides import Overrides
    from harness.results.sinks import requested_sinks

    registry = get_plugins(ctx).registry
    settings = {
        **settings,
        "devices": (device,),
        "amp": amp,
        "channels_last": channels_last,
        "compile": compile_,
    }
    overrides = Overrides(
        models=list(models),
        datasets=list(datasets),
        model_options=parse_assignments(model_opt, "--model-opt"),
        dataset_options=parse_assignments(dataset_opt, "--dataset-opt"),
        settings={k: v for k, v in settings.items() if v is not None and v != ()},
    )
    suite = timing_suite(suite, overrides, registry, default_name="-".join([command, *models]))
    out = out or default_out_dir(suite.name)
    traces = out / "traces"
    run_and_show(
        ctx,
        suite,
        registry,
        as_json=as_json,
        dry_run=dry_run,
        notes=lambda: (
            [
                f"traces:  {traces}  (tensorboard --logdir {traces}, or open a *.pt.trace.json in "
                "https://ui.perfetto.dev)"
            ]
            if traces.is_dir()
            else []
        ),
        out_dir=out,
        data=DataContext(data_root=data_root),
        command=["bench", *sys.argv[1:]],
        quiet=quiet,
        threads=threads,
        policy=make_policy(ctx, cpus=cpus, **policy),
        sinks=requested_sinks(tensorboard, sinks),
    )
