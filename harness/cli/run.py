"""``bench run``: a suite, or one-off training runs of models on datasets."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.cli._shared import (
    data_root_option,
    dry_run_option,
    get_plugins,
    make_policy,
    plugin_option,
    policy_options,
    refuse_written_out,
    run_and_show,
    sink_options,
)
from harness.errors import BenchError
from harness.options import parse_assignments
from harness.planning.train_settings import (
    AUGMENTATIONS,
    OPTIMIZERS,
    TRAIN_OPTIONS,
    WEIGHT_DECAY_MODES,
)


def shown_default(value: object) -> str:
    """A default as help and README show it: ``0.01``, ``0``, ``sgd``."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def with_default(text: str, key: str) -> str:
    """``text`` and the default of training option ``key`` (from ``TRAIN_OPTIONS``, the one
    source). The flag itself defaults to None, so that a suite's ``[train]`` value stands unless
    the flag is given."""
    return f"{text} [default: {shown_default(TRAIN_OPTIONS[key].default)}]"


@click.command("run")
@click.option("--suite", metavar="NAME_OR_PATH", help="A built-in suite name or a suite TOML file.")
@click.option(
    "--model",
    "--models",
    "models",
    multiple=True,
    metavar="NAME",
    help="Model to run (repeatable); overrides a suite's models.",
)
@click.option(
    "--dataset",
    "--datasets",
    "datasets",
    multiple=True,
    metavar="NAME",
    help="Dataset to use (repeatable); overrides a suite's datasets.",
)
@click.option("--model-opt", multiple=True, metavar="KEY=VALUE", help="Model option (repeatable).")
@click.option(
    "--dataset-opt", multiple=True, metavar="KEY=VALUE", help="Dataset option (repeatable)."
)
@click.option("--epochs", type=int, help=with_default("Training epochs.", "epochs"))
@click.option("--batch-size", type=int, help=with_default("Training batch size.", "batch_size"))
@click.option(
    "--optimizer", type=click.Choice(OPTIMIZERS), help=with_default("Optimizer.", "optimizer")
)
@click.option("--lr", type=float, help=with_default("Learning rate.", "lr"))
@click.option("--momentum", type=float, help=with_default("SGD momentum.", "momentum"))
@click.option(
    "--weight-decay",
    type=float,
    help=with_default(
        "Weight decay of Linear/Conv weights (see --weight-decay-mode).", "weight_decay"
    ),
)
@click.option(
    "--weight-decay-mode",
    type=click.Choice(WEIGHT_DECAY_MODES),
    help=with_default(
        "How --weight-decay acts. coupled: L2 through the optimizer, wd*w added to the gradient; "
        "decoupled: the weights shrink by a factor 1-lr*wd before each step, as in AdamW (adamw "
        "is always decoupled).",
        "weight_decay_mode",
    ),
)
@click.option(
    "--l1",
    type=float,
    help=with_default("L1 penalty: adds L1 * sum|w| of Linear/Conv weights to the loss.", "l1"),
)
@click.option(
    "--l2-loss",
    type=float,
    help=with_default(
        "Explicit L2 penalty: adds L2_LOSS/2 * sum w^2 of Linear/Conv weights to the loss.",
        "l2_loss",
    ),
)
@click.option(
    "--patience",
    type=int,
    help=with_default(
        "Early stopping: stop after this many epochs without a lower validation loss and "
        "restore the best weights (0 = off).",
        "patience",
    ),
)
@click.option(
    "--augment",
    type=click.Choice(AUGMENTATIONS),
    help=with_default(
        "Augment training images: affine = a random rotation, shift and scale of each image, "
        "on the device (the augment_* options of [train] set the ranges).",
        "augment",
    ),
)
@click.option(
    "--save-checkpoint",
    is_flag=True,
    default=None,
    help="Keep each run's final model, optimizer and generator states as "
    "OUT/checkpoints/<run>.pt, to continue with --from-checkpoint.",
)
@click.option(
    "--from-checkpoint",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="PATH",
    help="Continue a saved training for --epochs N more epochs; the checkpoint names the "
    "model, dataset, options and seed.",
)
@click.option("--seed", "seeds", multiple=True, type=int, help="Seed (repeatable for several).")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="KEY=VALUE",
    help="Setting of the suite's procedure table, e.g. --set targets=50,75.",
)
@click.option("--quick", is_flag=True, help="The suite's quick variant (--set quick=true).")
@click.option("--device", metavar="auto|cpu|cuda[:N]", help="Device (default: the suite's, auto).")
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="torch CPU threads (default: the suite's threads key, else one per core less one "
    "core left free, at least 1).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="Output directory (default results/<timestamp>-<name>).",
)
@click.option(
    "--resume",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="RESULTS_DIR",
    help="Finish an interrupted run of the same suite in RESULTS_DIR: runs recorded ok are "
    "skipped, the others run and join its results file.",
)
@data_root_option()
@click.option("--download", is_flag=True, help="Allow on-disk datasets to be downloaded.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option(
    "--stack",
    type=click.Choice(["auto", "off"]),
    help="auto: train runs that differ only in seed and regularization together as one stacked "
    "model, each with the numbers it has alone (at one thread, on the CPU); off: each alone "
    "[default: the suite's stack, else auto].",
)
@dry_run_option
@policy_options
@sink_options
@plugin_option
@click.pass_context
def run_command(
    ctx,
    suite,
    models,
    datasets,
    model_opt,
    dataset_opt,
    epochs,
    batch_size,
    optimizer,
    lr,
    momentum,
    weight_decay,
    weight_decay_mode,
    l1,
    l2_loss,
    patience,
    augment,
    save_checkpoint,
    from_checkpoint,
    seeds,
    settings,
    quick,
    device,
    threads,
    out,
    resume,
    data_root,
    download,
    as_json,
    quiet,
    stack,
    dry_run,
    tensorboard,
    sinks,
    **policy,
) -> None:
    """Run a suite, or train --model(s) on --dataset(s) and test them.

    Training flags override a suite's [train] table; the defaults shown apply where neither
    sets a value.

    \b
    Examples:
      bench run --suite quickstart
      bench run --suite ./my-suite.toml --epochs 3
      bench run --model lenet5 --dataset digits --epochs 10 --seed 0
      bench run --model mlp --dataset mnist1d --epochs 60 --weight-decay 1e-3 --patience 5
      bench run --suite regularization --weight-decay-mode decoupled
      bench run --model mlp --dataset mnist1d --model-opt hidden=100 --json --out /tmp/r
      bench run --suite cnn-pruning --resume results/20260101-120000-cnn-pruning
      bench run --model lenet5 --dataset mnist-5k --epochs 5 --save-checkpoint --out /tmp/a
      bench run --from-checkpoint /tmp/a/checkpoints/lenet5-mnist-5k-s0.pt --epochs 5
      bench run --suite regularization --quick --tensorboard runs/tb
    """
    from harness.data import DataContext
    from harness.execution.runner import default_out_dir
    from harness.planning.overrides import Overrides, load_suite_with
    from harness.results.sinks import requested_sinks
    from harness.training.checkpoints import continuing

    if out and resume:
        raise BenchError("--resume continues in RESULTS_DIR; it cannot be combined with --out")
    command = ["bench", *sys.argv[1:]]
    if out and not dry_run:
        refuse_written_out(out, command)
    registry = get_plugins(ctx).registry
    train = {
        "epochs": epochs,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "lr": lr,
        "momentum": momentum,
        "weight_decay": weight_decay,
        "weight_decay_mode": weight_decay_mode,
        "l1": l1,
        "l2_loss": l2_loss,
        "patience": patience,
        "augment": augment,
        "save_checkpoint": save_checkpoint,
    }
    procedure_settings = dict(parse_assignments(settings, "--set"))
    if quick:
        procedure_settings["quick"] = "true"
    overrides = Overrides(
        models=list(models),
        datasets=list(datasets),
        model_options=parse_assignments(model_opt, "--model-opt"),
        dataset_options=parse_assignments(dataset_opt, "--dataset-opt"),
        train={k: v for k, v in train.items() if v is not None},
        seeds=list(seeds),
        settings=procedure_settings,
        device=device,
    )
    if from_checkpoint:
        if suite:
            raise BenchError(
                "--from-checkpoint continues one run: give it without --suite (the checkpoint "
                "names the model, dataset, options and seed)"
            )
        overrides = continuing(from_checkpoint, overrides)
    parsed = load_suite_with(suite, registry, overrides)
    run_and_show(
        ctx,
        parsed,
        registry,
        as_json=as_json,
        dry_run=dry_run,
        out_dir=resume or out or default_out_dir(parsed.name),
        resume=resume is not None,
        device=parsed.device,
        data=DataContext(data_root=data_root, download=download),
        command=command,
        quiet=quiet,
        threads=threads,
        policy=make_policy(ctx, stack=stack, **policy),
        sinks=requested_sinks(tensorboard, sinks),
    )
