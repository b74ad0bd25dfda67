"""The ``regularization`` procedure: dropout x weight decay, L1, L2 two ways, dropout two ways and
early stopping (after DeepOBS: the same budget for every cell, train and test reported, selection
on validation).

Each study is a list of *cells*: training configurations that differ only in their regularization
(the keys of the unregularized cell in :func:`study_cells`). A cell that several studies share
(the unregularized one is in most of them) is trained once per seed. Each trained model is tested
exactly once; its train accuracy is measured afterwards in eval mode on the whole train split, so
the generalization gap (train minus test accuracy) compares like with like. The best cell is the
grid cell with the highest mean validation accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from bench_plugins.procedures.regularization.figures import plot_section
from bench_plugins.procedures.regularization.grid_cells import cell_key, cell_label, study_cells
from bench_plugins.procedures.regularization.interleaved_cost import measure_augmentation_cost
from bench_plugins.procedures.regularization.report import Headline, section, summarize
from torch import nn

from harness.options import Option
from harness.planning.protocol import Procedure, Report, RunContext
from harness.planning.run_configs import entry_train, subject
from harness.planning.suite_files import Run, Suite
from harness.planning.train_settings import AUGMENTATIONS
from harness.registry.specs import Registry
from harness.reporting.tables import context_line, failures_section, group, plural
from harness.tasks import HIGHER
from harness.training.loop import TrainConfig, penalized_weights
from harness.training.steps import run_splits, split_metrics, task_of, train_and_test

# [train] may not set these: the studies set them per cell
VARIED_TRAIN_KEYS = ("weight_decay", "l1", "l2_loss", "patience", "augment")
TRAIN_KEYS = (*VARIED_TRAIN_KEYS, "weight_decay_mode")  # what a cell sets in its training
QUICK_EPOCHS = 30

SETTINGS = {
    "dropouts": Option(
        (0.0, 0.1, 0.25, 0.5), "grid rows: dropout rates", "floats", minimum=0.0, below=1.0
    ),
    "weight_decays": Option(
        (0.0, 1e-5, 1e-4, 1e-3, 1e-2), "grid columns: weight decays", "floats", minimum=0.0
    ),
    "l1": Option((0.0, 1e-6, 1e-5, 1e-4), "L1 sweep: penalty lambdas", "floats", minimum=0.0),
    "l2": Option(
        1e-3,
        "lambda at which L2 is compared two ways (and decoupled); 0 = skip",
        "float",
        minimum=0.0,
    ),
    "compare_dropout": Option(
        0.5,
        "rate at which nn.Dropout and BernoulliDropout are compared; 0 = skip",
        "float",
        minimum=0.0,
        below=1.0,
    ),
    "patience": Option(
        5, "patience of the early-stopping cell (vs the full budget); 0 = skip", "int", minimum=0
    ),
    "zero_threshold": Option(1e-3, "|w| below this counts as near zero", "float", minimum=0.0),
    "augment": Option(
        "none",
        "augmentation study: every grid cell trained again with this augmentation (affine: "
        "[train]'s augment_* ranges); none = skip",
        "str",
        choices=AUGMENTATIONS,
    ),
    "train_per_class": Option(
        0,
        "train on this many samples of each class (a small training subset); 0 = all",
        "int",
        minimum=0,
    ),
    "quick": Option(
        False,
        "one seed; the first and last dropouts, weight decays and L1 values; "
        f"at most {QUICK_EPOCHS} epochs",
        "bool",
    ),
}


def plan(suite: Suite, registry: Registry) -> list[Run]:
    _check_suite(suite, registry)
    settings = suite.settings
    train = dict(suite.train)
    if settings["quick"]:
        train["epochs"] = min(TrainConfig.from_options(train).epochs, QUICK_EPOCHS)
    mode = TrainConfig.from_options(train).weight_decay_mode
    cells: dict[str, tuple[dict[str, Any], list[str]]] = {}
    for study, members in study_cells(settings, mode).items():
        for cell in members:
            cells.setdefault(cell_key(cell), (cell, []))[1].append(study)
    seeds = suite.seeds[:1] if settings["quick"] else suite.seeds
    runs: list[Run] = []
    for model in suite.models:
        for dataset in suite.datasets:
            for cell, studies in cells.values():
                dropout = {"dropout": cell["dropout"], "dropout_impl": cell["dropout_impl"]}
                for seed in seeds:
                    config = {
                        "name": f"{model.label}-{dataset.label}-{cell_label(cell)}-s{seed}",
                        **subject(model, dataset, model.options | dropout),
                        "train": entry_train(model, dataset, train)
                        | {key: cell[key] for key in TRAIN_KEYS},
                        "cell": cell,
                        "studies": studies,
                        "zero_threshold": settings["zero_threshold"],
                        "train_per_class": settings["train_per_class"],
                        "seed": seed,
                    }
                    # augmentation's throughput cost is timed, so such a cell runs alone
                    timed = config["train"].get("augment", "none") != "none"
                    runs.append(Run(len(runs), "regularization", config, exclusive=timed))
    return runs


def _check_suite(suite: Suite, registry: Registry) -> None:
    """Refuse what the studies would silently override, and models without dropout options."""
    for key in VARIED_TRAIN_KEYS:
        if key in suite.train:
            flag = "--" + key.replace("_", "-")
            raise suite.error(
                f"train.{key}",
                f"the regularization studies set {key} per cell, so neither this key nor "
                f"{flag} can; use the [regularization] settings (dropouts, weight_decays, l1, "
                "l2, patience, augment), or --set KEY=VALUE on the command line",
            )
    if suite.grid:
        raise suite.error("grid", "use [regularization] dropouts and weight_decays")
    if TrainConfig.from_options(suite.train).optimizer == "adamw":
        raise suite.error(
            "train.optimizer",
            "adamw's weight decay is always decoupled, so the L2 study could not compare; use "
            'optimizer = "adam" with weight_decay_mode = "decoupled", which is the same thing',
        )
    for index, model in enumerate(suite.models):
        missing = {"dropout", "dropout_impl"} - set(registry.models.get(model.name).options)
        if missing:
            raise suite.error(
                f"models[{index}]",
                f"model '{model.name}' has no {' or '.join(sorted(missing))} option, which the "
                "dropout studies set (mlp, cnn, cnn-small, lenet5 and convnet have)",
            )


def execute(run: Run, ctx: RunContext) -> dict[str, Any]:
    config = run.config
    model, metrics = train_and_test(ctx, config)
    splits = run_splits(ctx, config)
    train_config = TrainConfig.from_options(config["train"])
    train_eval = split_metrics(ctx, model, splits, "train", train_config.eval_batch_size)
    cost = {}
    if train_config.augment != "none":  # measured after testing, on a copy of the model
        cost["augmentation_cost"] = measure_augmentation_cost(
            model,
            splits,
            train_config,
            task=task_of(ctx, splits),
            device=ctx.device,
            seed=config["seed"],
        )
    headline = metrics["task"]["headline"]
    sign = 1 if metrics["task"]["metrics"][headline]["direction"] == HIGHER else -1
    return {
        **metrics,
        f"train_eval_{headline}": train_eval[headline],
        # how much worse the test split is than the train split, in the headline's direction
        "gap": sign * (train_eval[headline] - metrics[f"test_{headline}"]),
        "stopped_epoch": metrics["epochs"],
        "weight_decay_kind": train_config.weight_decay_kind,
        **weight_stats(model, config["zero_threshold"]),
        **cost,
    }


def weight_stats(model: nn.Module, threshold: float) -> dict[str, float]:
    """L1 and L2 norms of the penalized weights (Linear/Conv weights, no biases) and the fraction
    of their entries with ``|w| < threshold``."""
    with torch.no_grad():
        flat = torch.cat([w.detach().flatten() for w in penalized_weights(model)])
        return {
            "weight_l1": flat.abs().sum().item(),
            "weight_l2": flat.norm().item(),
            "near_zero_fraction": (flat.abs() < threshold).float().mean().item(),
            "weight_count": flat.numel(),
        }


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    cells = summarize(results)
    h = Headline.of(results)
    runs = results["runs"]
    seeds = len({r["config"]["seed"] for r in runs})
    text = (
        f"## {results['suite']['name']}: regularization trade-offs\n\n"
        f"{context_line(results)}\n\n"
        f"Mean ± std over {plural(seeds, 'seed')}. Every cell had the same training budget; the "
        "test split was evaluated once per trained model; the best cell (★) is chosen among the "
        f"grid's cells on validation {h.title}.\n\n"
    )
    tables, files = [], []
    for (model, dataset), members in group(cells, lambda c: (c["model"], c["dataset"])).items():
        markdown, section_tables = section(model, dataset, members, h)
        text += markdown
        tables += section_tables
        if plots_dir:
            files += plot_section(model, dataset, members, plots_dir, h)
    text += failures_section(runs) + "\n"
    for path in files:
        text += f"\n![{path.stem}]({path.name})\n"
    return Report(markdown=text, files=files, tables=tables)


PROCEDURE = Procedure(
    name="regularization",
    description="dropout x weight decay grid, L1 sweep, L2 and dropout two ways, early stopping",
    plan=plan,
    execute=execute,
    report=report,
    settings=SETTINGS,
    default_models=["mlp"],
    default_datasets=["mnist1d"],
    checkpoints=True,
    stacks=True,
    selects_on_validation=True,
    hyperparameters=lambda config: dict(config["cell"]),
)
