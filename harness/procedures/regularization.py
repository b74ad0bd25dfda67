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

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.experiment import open_splits, split_metrics, train_and_test
from harness.options import Option
from harness.plots import plot_heatmap, plot_loss_curves, plot_sweep
from harness.procedure import Procedure, Report, RunContext, Table
from harness.registry import Registry
from harness.report import (
    context_line,
    failures_section,
    group,
    markdown_table,
    mean_std,
    mean_std_text,
    pct,
)
from harness.suites import Run, Suite, safe_name, subject
from harness.tasks import HIGHER
from harness.training import TrainConfig, penalized_weights

VARIED_TRAIN_KEYS = ("weight_decay", "l1", "l2_loss", "patience")  # [train] may not set these
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
    "quick": Option(
        False,
        "one seed; the first and last dropouts, weight decays and L1 values; "
        f"at most {QUICK_EPOCHS} epochs",
        "bool",
    ),
}


def study_cells(settings: dict[str, Any], mode: str) -> dict[str, list[dict[str, Any]]]:
    """Each study's cells in display order; ``mode`` is the grid's weight-decay mode."""
    base = {
        "dropout": 0.0,
        "dropout_impl": "torch",
        "weight_decay": 0.0,
        "weight_decay_mode": mode,
        "l1": 0.0,
        "l2_loss": 0.0,
        "patience": 0,
    }
    pick = _ends if settings["quick"] else list
    studies = {
        "grid": [
            base | {"dropout": d, "weight_decay": w}
            for d in pick(settings["dropouts"])
            for w in pick(settings["weight_decays"])
        ],
        "l1": [base | {"l1": x} for x in pick(settings["l1"])],
    }
    if lam := settings["l2"]:
        studies["l2"] = [
            base | {"weight_decay": lam, "weight_decay_mode": "coupled"},
            base | {"l2_loss": lam},
            base | {"weight_decay": lam, "weight_decay_mode": "decoupled"},
        ]
    if p := settings["compare_dropout"]:
        studies["dropout"] = [
            base | {"dropout": p},
            base | {"dropout": p, "dropout_impl": "bernoulli"},
        ]
    if settings["patience"]:
        studies["early_stopping"] = [base, base | {"patience": settings["patience"]}]
    return studies


def _ends(values: tuple[float, ...]) -> list[float]:
    """The first and last values (one if they are the same; none of an empty sweep)."""
    return list(dict.fromkeys(values[:1] + values[-1:]))


def cell_label(cell: dict[str, Any]) -> str:
    """The cell's regularization in a few words ('none' when it has none)."""
    parts = []
    if cell["dropout"]:
        parts.append(f"dropout={cell['dropout']:g}")
        if cell["dropout_impl"] != "torch":
            parts.append(cell["dropout_impl"])
    if cell["weight_decay"]:
        parts.append(f"wd={cell['weight_decay']:g}")
        if cell["weight_decay_mode"] != "coupled":
            parts.append(cell["weight_decay_mode"])
    parts += [f"{k}={cell[k]:g}" for k in ("l1", "l2_loss", "patience") if cell[k]]
    return ",".join(parts) or "none"


def _cell_key(cell: dict[str, Any]) -> str:
    return json.dumps(cell, sort_keys=True)


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
            cells.setdefault(_cell_key(cell), (cell, []))[1].append(study)
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
                        "train": train | {key: cell[key] for key in TRAIN_KEYS},
                        "cell": cell,
                        "studies": studies,
                        "zero_threshold": settings["zero_threshold"],
                        "seed": seed,
                    }
                    runs.append(Run(len(runs), "regularization", config))
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
                "l2, patience), or --set KEY=VALUE on the command line",
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
    splits = open_splits(ctx, config["dataset"], config["dataset_options"], config["seed"])
    train_config = TrainConfig.from_options(config["train"])
    train_eval = split_metrics(ctx, model, splits, "train", train_config.eval_batch_size)
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


# The report: everything below reads only stored results.

METRICS = {  # summary name: metric of a run
    "train": "train_eval_accuracy",
    "val": "val_accuracy",
    "test": "test_accuracy",
    "gap": "gap",
    "stopped": "stopped_epoch",
    "best_epoch": "best_epoch",
    "weight_l1": "weight_l1",
    "weight_l2": "weight_l2",
    "near_zero": "near_zero_fraction",
}


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per model x dataset x cell: its studies and every metric's per-seed values."""

    def key(run: dict[str, Any]) -> tuple[str, str, str]:
        config = run["config"]
        return config["model_label"], config["dataset_label"], _cell_key(config["cell"])

    cells = []
    for (model, dataset, _), members in group(results["runs"], key).items():
        ok = [r["metrics"] for r in members if r["status"] == "ok"]
        config = members[0]["config"]
        cells.append(
            {
                "model": model,
                "dataset": dataset,
                "cell": config["cell"],
                "studies": config["studies"],
                "train_config": config["train"],
                "seeds": len(ok),
                "runs": len(members),
                "histories": [m["history"] for m in ok],
                **{name: [m[metric] for m in ok] for name, metric in METRICS.items()},
            }
        )
    return cells


def best_cell(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cell with the highest mean validation accuracy, the first listed on a tie (the test
    split plays no part).

    Chosen among the grid's cells when there is a grid: the grid is the search, the other
    studies are side-by-side comparisons, and the early-stopped cell's validation accuracy is
    biased upwards (validation already picked its epoch).
    """
    trained = [c for c in cells if c["seeds"]]
    candidates = [c for c in trained if "grid" in c["studies"]] or trained
    return max(candidates, key=lambda c: mean_std(c["val"])[0], default=None)


def unregularized(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in cells if c["seeds"] and cell_label(c["cell"]) == "none"), None)


def _epochs(values: list[int]) -> str:
    """An epoch number, or mean ± std when the seeds differ."""
    return str(values[0]) if len(set(values)) == 1 else mean_std_text(values, 1)


def _percent(values: list[float]) -> tuple[float, float]:
    mean, std = mean_std(values)
    return 100 * mean, 100 * std


def cell_row(cell: dict[str, Any], best: dict[str, Any] | None) -> dict[str, Any]:
    """A long-form table row: the cell's settings, then its metrics as mean ± std over seeds."""
    c = cell["cell"]
    return {
        "cell": cell_label(c) + (" ★" if cell is best else ""),
        "dropout": f"{c['dropout']:g}" + (f" ({c['dropout_impl']})" if c["dropout"] else ""),
        "weight decay": f"{c['weight_decay']:g}"
        + (f" ({c['weight_decay_mode']})" if c["weight_decay"] else ""),
        "L1 λ": f"{c['l1']:g}",
        "L2-loss λ": f"{c['l2_loss']:g}",
        "patience": c["patience"] or "off",
        "train acc %": pct(cell["train"]),
        "val acc %": pct(cell["val"]),
        "test acc %": pct(cell["test"]),
        "gap pp": pct(cell["gap"]),
        "stop epoch": _epochs(cell["stopped"]),
        "best epoch": _epochs(cell["best_epoch"]),
        "weight L1": mean_std_text(cell["weight_l1"], 1),
        "weight L2": mean_std_text(cell["weight_l2"]),
        "near-zero %": pct(cell["near_zero"]),
        "seeds": f"{cell['seeds']}/{cell['runs']}",
    }


GRID_TABLES = (  # title, file-name slug, how a cell reads
    ("Test accuracy %", "test-accuracy", lambda cell: pct(cell["test"])),
    ("Generalization gap (train − test accuracy), pp", "gap", lambda cell: pct(cell["gap"])),
    (
        "Weight L2 norm (Linear/Conv weights)",
        "weight-l2",
        lambda cell: mean_std_text(cell["weight_l2"]),
    ),
)
ACCURACY = ["train acc %", "val acc %", "test acc %", "gap pp"]
STUDY_TABLES = {  # study: title, the long-form columns it shows
    "l1": ("L1 sweep: λ·Σ|w| added to the loss", ["L1 λ", *ACCURACY, "weight L1", "near-zero %"]),
    "l2": (
        "L2 two ways: the optimizer's coupled weight decay and an explicit λ/2·Σw² loss term "
        "(the same update for SGD), with decoupled weight decay beside them",
        ["weight decay", "L2-loss λ", *ACCURACY, "weight L2"],
    ),
    "dropout": (
        "Dropout two ways: nn.Dropout and the hand-written BernoulliDropout",
        ["dropout", *ACCURACY],
    ),
    "early_stopping": (
        "Early stopping on validation loss (best weights restored) vs the full budget",
        ["patience", "stop epoch", "best epoch", *ACCURACY],
    ),
}
LONG_FORM = (
    "Accuracies and gap as mean ± std over seeds; train accuracy is measured after training, in "
    "eval mode, on the whole train split; gap = train − test accuracy; stop epoch = epochs "
    "trained; best epoch = lowest validation loss; norms and near-zero fraction "
    "(|w| < threshold) over Linear/Conv weights."
)
CORNER = "dropout \\ weight decay"


def grid_cells(cells: list[dict[str, Any]]) -> dict[tuple[float, float], dict[str, Any]]:
    """The grid study's cells by (dropout, weight decay), in display order."""
    return {
        (c["cell"]["dropout"], c["cell"]["weight_decay"]): c
        for c in cells
        if "grid" in c["studies"]
    }


def grid_axes(grid: dict[tuple[float, float], Any]) -> tuple[list[float], list[float]]:
    return list(dict.fromkeys(d for d, _ in grid)), list(dict.fromkeys(w for _, w in grid))


def grid_rows(
    cells: list[dict[str, Any]],
    best: dict[str, Any] | None,
    value: Callable[[dict[str, Any]], str],
) -> list[dict[str, str]]:
    """The trade-off table: dropout rows, weight-decay columns, ``value(cell)`` in each."""
    grid = grid_cells(cells)
    dropouts, decays = grid_axes(grid)
    rows = []
    for dropout in dropouts:
        row = {CORNER: f"{dropout:g}"}
        for decay in decays:
            cell = grid.get((dropout, decay))
            text = value(cell) if cell and cell["seeds"] else "—"
            row[f"{decay:g}"] = text + (" ★" if cell is best else "")
        rows.append(row)
    return rows


def decay_caption(train: dict[str, Any]) -> str:
    """Which weight decay the grid's columns are, and the budget every cell had."""
    config = TrainConfig.from_options(train)
    how = {
        "coupled": "coupled L2: the optimizer adds wd·w to the gradient",
        "decoupled": "decoupled (AdamW-style): before each step the weights shrink by a factor "
        "1 − lr·wd, apart from the gradient",
    }[config.weight_decay_kind]
    optimizer = f"{config.optimizer}, lr {config.lr:g}"
    if config.optimizer == "sgd":
        optimizer += f", momentum {config.momentum:g}"
    return (
        f"Weight decay is {how}; it acts on Linear/Conv weights, not biases. Every cell: "
        f"{optimizer}, {config.epochs} epochs, batch {config.batch_size}."
    )


def section(model: str, dataset: str, cells: list[dict[str, Any]]) -> tuple[str, list[Table]]:
    """The markdown and the tables of one model on one dataset."""
    best, plain = best_cell(cells), unregularized(cells)
    prefix = f"{model}-{dataset}"
    text = f"### {model} on {dataset}\n\n"
    if plain:
        text += (
            f"Unregularized: train {pct(plain['train'])}%, test {pct(plain['test'])}%, "
            f"gap {pct(plain['gap'])} pp. "
        )
    if best:
        text += (
            f"Best {'grid ' if 'grid' in best['studies'] else ''}cell on validation accuracy "
            f"(★): **{cell_label(best['cell'])}**: "
            f"val {pct(best['val'])}%, test {pct(best['test'])}%, gap {pct(best['gap'])} pp."
        )
    text += "\n\n"
    tables = []
    grid = grid_cells(cells)
    if grid:
        caption = decay_caption(next(iter(grid.values()))["train_config"])
        text += f"**Trade-off grid**: dropout rows × weight decay columns. {caption}\n\n"
        for title, slug, value in GRID_TABLES:
            rows = grid_rows(cells, best, value)
            tables.append(Table(f"{prefix}-grid-{slug}", rows, (CORNER,), f"{title}. {caption}"))
            text += f"#### {title}\n\n{markdown_table(rows)}\n\n"
    for study, (title, columns) in STUDY_TABLES.items():
        members = [c for c in cells if study in c["studies"]]
        if members:
            rows = [cell_row(c, best) for c in members]
            tables.append(Table(f"{prefix}-{study}", rows, ("cell",), title))
            text += f"#### {title}\n\n{markdown_table(rows, ['cell', *columns, 'seeds'])}\n\n"
    rows = [cell_row(c, best) for c in cells]
    tables.append(Table(f"{prefix}-cells", rows, ("cell",), LONG_FORM))
    text += f"#### Every cell\n\n{LONG_FORM}\n\n{markdown_table(rows)}\n\n"
    return text, tables


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    cells = summarize(results)
    runs = results["runs"]
    seeds = len({r["config"]["seed"] for r in runs})
    text = (
        f"## {results['suite']['name']}: regularization trade-offs\n\n"
        f"{context_line(results)}\n\n"
        f"Mean ± std over {seeds} seed(s). Every cell had the same training budget; the test split "
        "was evaluated once per trained model; the best cell (★) is chosen among the grid's cells "
        "on validation accuracy.\n\n"
    )
    tables, files = [], []
    for (model, dataset), members in group(cells, lambda c: (c["model"], c["dataset"])).items():
        markdown, section_tables = section(model, dataset, members)
        text += markdown
        tables += section_tables
        if plots_dir:
            files += plot_section(model, dataset, members, plots_dir)
    text += failures_section(runs) + "\n"
    for path in files:
        text += f"\n![{path.stem}]({path.name})\n"
    return Report(markdown=text, files=files, tables=tables)


def plot_section(
    model: str, dataset: str, cells: list[dict[str, Any]], out_dir: Path
) -> list[Path]:
    """Heatmaps of test accuracy and gap over the grid, the L1 sweep, and the loss curves of the
    unregularized and the best cell."""
    # labels come from a results file, which may have been edited since bench wrote it
    prefix = safe_name(f"regularization-{model}-{dataset}")
    title = f"{model} on {dataset}"
    best = best_cell(cells)
    grid = {key: c for key, c in grid_cells(cells).items() if c["seeds"]}
    sweep = [c for c in cells if "l1" in c["studies"] and c["seeds"]]
    files = [
        _heatmap(grid, metric, best, f"{title}: {label}", out_dir / f"{prefix}-{slug}.png")
        for slug, metric, label in HEATMAPS
        if grid
    ]
    if len(sweep) > 1:
        files.append(_l1_plot(sweep, title, out_dir / f"{prefix}-l1.png"))
    plain = unregularized(cells)
    curves = {f"unregularized ({cell_label(plain['cell'])})": plain["histories"]} if plain else {}
    if best and best is not plain:
        curves[f"best on validation ({cell_label(best['cell'])})"] = best["histories"]
    if curves:
        path = out_dir / f"{prefix}-curves.png"
        files.append(
            plot_loss_curves(curves, title=f"{title}: train vs validation loss", path=path)
        )
    return files


HEATMAPS = (  # file-name slug, metric, label
    ("test-accuracy", "test", "test accuracy %"),
    ("gap", "gap", "generalization gap (train − test), pp"),
)


def _heatmap(grid: dict[tuple[float, float], dict], metric: str, best, title: str, path: Path):
    dropouts, decays = grid_axes(grid)
    values = [
        [100 * mean_std(grid[(d, w)][metric])[0] if (d, w) in grid else math.nan for w in decays]
        for d in dropouts
    ]
    marked = [(dropouts.index(d), decays.index(w)) for (d, w), c in grid.items() if c is best]
    kind = TrainConfig.from_options(next(iter(grid.values()))["train_config"]).weight_decay_kind
    return plot_heatmap(
        values,
        [f"{d:g}" for d in dropouts],
        [f"{w:g}" for w in decays],
        title=f"{title}\nmean over seeds; outlined: best on validation",
        xlabel=f"weight decay ({kind})",
        ylabel="dropout",
        mark=marked[0] if marked else None,
        path=path,
    )


def _l1_plot(sweep: list[dict[str, Any]], title: str, path: Path) -> Path:
    return plot_sweep(
        [c["cell"]["l1"] for c in sweep],
        {name: [_percent(c[name]) for c in sweep] for name in ("train", "val", "test")},
        {"near-zero weights": [_percent(c["near_zero"]) for c in sweep]},
        title=f"{title}: L1 penalty λ·Σ|w| (mean ± std)",
        xlabel="L1 λ",
        left_label="accuracy %",
        right_label="weights with |w| < threshold, %",
        path=path,
    )


PROCEDURE = Procedure(
    name="regularization",
    description="dropout x weight decay grid, L1 sweep, L2 and dropout two ways, early stopping",
    plan=plan,
    execute=execute,
    report=report,
    settings=SETTINGS,
    default_models=["mlp"],
    default_datasets=["mnist1d"],
)
