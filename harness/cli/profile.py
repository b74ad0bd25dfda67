"""``bench profile``: one step of a model under torch.profiler, as a one-off ``throughput`` suite
with ``bench time``'s options."""

from __future__ import annotations

import click

from harness.cli.time import model_option, run_timing, shared_options
from harness.measuring import STEP_MODES


@click.command("profile")
@model_option(required=True)
@shared_options
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Batch size."
)
@click.option(
    "--mode",
    type=click.Choice(STEP_MODES),
    default="train_step",
    show_default=True,
    help="The step to profile.",
)
@click.pass_context
def profile_command(ctx, batch_size, mode, **shared) -> None:
    """Profile one step of --model with torch.profiler; print the top operators.

    The trace goes to OUT/traces/<run-name>/: view it with `tensorboard --logdir OUT/traces`
    (pip install 'bench-harness[tensorboard]') or open the .pt.trace.json in https://ui.perfetto.dev.
    The step is also timed briefly (--quick settings).

    \b
    Example:
      bench profile --model cnn --dataset digits --out /tmp/prof
    """
    settings = {
        "batch_sizes": (batch_size,),
        "modes": (mode,),
        "profile": True,
        "profile_mode": mode,
        "quick": True,
    }
    run_timing(ctx, "profile", settings, **shared)
