"""The ``regularization`` procedure's report: trade-off tables, study tables and heatmaps, read
only from stored results.

Everything is shown in the task's headline metric (:class:`Headline`, taken from the task the
results record): accuracy in % for classification, exactly as before tasks existed; RMSE in the
data's units for regression, and so on. The generalization gap is how much worse the test split
is than the train split in that metric's direction (train − test accuracy; test − train RMSE).
The best cell is the grid cell with the best mean validation value.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench_plugins.procedures.regularization.grid_cells import cell_key, cell_label

from harness.planning.protocol import Table
from harness.planning.train_settings import TrainConfig
from harness.reporting.tables import (
    group,
    markdown_table,
    mean_std,
    mean_std_text,
    metric_text,
    pct,
    plural,
)


@dataclass(frozen=True)
class Headline:
    """The metric the tables show: its stored name, how columns name it, and its direction."""

    name: str = "accuracy"
    label: str = "acc"
    title: str = "accuracy"
    unit: str = "%"
    higher: bool = True

    @classmethod
    def of(cls, results: dict[str, Any]) -> Headline:
        """From the task the first successful run recorded (classification before tasks)."""
        task = next(
            (r["metrics"]["task"] for r in results["runs"] if r["metrics"].get("task")), None
        )
        if not task or task["headline"] == "accuracy":
            return cls()
        name = task["headline"]
        metric = task["metrics"][name]
        unit = metric.get("unit", "")
        if unit == "target":
            unit = next(
                (
                    r["metrics"]["target_unit"]
                    for r in results["runs"]
                    if r["metrics"].get("target_unit")
                ),
                "",
            )
        fraction = unit == "fraction"
        label = metric.get("label") or name
        return cls(name, label, label, "%" if fraction else unit, metric["direction"] == "higher")

    @property
    def fraction(self) -> bool:
        return self.unit == "%"

    def column(self, split: str) -> str:
        """'test acc %', 'test RMSE (USD/barrel)'."""
        return (
            f"{split} {self.label} %"
            if self.fraction
            else f"{split} {self.label} ({self.unit})".replace(" ()", "")
        )

    @property
    def gap_column(self) -> str:
        return "gap pp" if self.fraction else f"gap ({self.unit})".replace(" ()", "")

    @property
    def gap_words(self) -> str:
        better, worse = ("train", "test") if self.higher else ("test", "train")
        return f"{better} − {worse} {self.title}"

    def text(self, values: list[float]) -> str:
        return pct(values) if self.fraction else metric_text(values, {"unit": ""})

    def mean(self, values: list[float]) -> float:
        """The mean, in the tables' scale (percent for fractions)."""
        return (100 if self.fraction else 1) * mean_std(values)[0]


CLASSIFICATION_HEADLINE = Headline()


METRICS = {  # summary name: metric of a run ({} is the headline metric's name)
    "train": "train_eval_{}",
    "val": "val_{}",
    "test": "test_{}",
    "gap": "gap",
    "stopped": "stopped_epoch",
    "best_epoch": "best_epoch",
    "weight_l1": "weight_l1",
    "weight_l2": "weight_l2",
    "near_zero": "near_zero_fraction",
}


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per model x dataset x cell: its studies and every metric's per-seed values."""
    headline = Headline.of(results)

    def key(run: dict[str, Any]) -> tuple[str, str, str]:
        config = run["config"]
        return config["model_label"], config["dataset_label"], cell_key(config["cell"])

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
                "augmentation_cost": [
                    m["augmentation_cost"] for m in ok if "augmentation_cost" in m
                ],
                **{
                    name: [m[metric.format(headline.name)] for m in ok]
                    for name, metric in METRICS.items()
                },
            }
        )
    return cells


def augmentation_cost(cells: list[dict[str, Any]]) -> str:
    """What augmentation costs in training throughput: each augmented run's interleaved
    measurement (:mod:`bench_plugins.procedures.regularization.interleaved_cost`), as the median
    over runs."""
    records = [r for cell in cells for r in cell.get("augmentation_cost", [])]
    if not records:
        return ""
    ratios = [r["ratio"] for r in records]
    plain = statistics.median(r["plain_pass_s"] for r in records)
    augmented = statistics.median(r["augmented_pass_s"] for r in records)
    size = records[0]["train_size"]
    contended = sum(bool(r["contention"].get("contended")) for r in records)
    return (
        f"**Augmentation cost**: a training pass over {size:,} samples took "
        f"{augmented * 1000:.1f} ms with augmentation and {plain * 1000:.1f} ms without: "
        f"{statistics.median(ratios) - 1:+.0%} time, {size / augmented:,.0f} vs "
        f"{size / plain:,.0f} samples/s (median of {plural(len(records), 'run')}, each "
        f"{records[0]['rounds']} interleaved pairs of passes on a copy of its trained model; "
        f"per-run cost {min(ratios) - 1:+.0%} to {max(ratios) - 1:+.0%}"
        + (f"; {contended} of {plural(len(records), 'measurement')} contended" if contended else "")
        + ").\n\n"
    )


def _cost(cell: dict[str, Any]) -> str:
    ratios = [r["ratio"] for r in cell.get("augmentation_cost", [])]
    return f"{statistics.median(ratios) - 1:+.0%}" if ratios else "—"


def best_cell(cells: list[dict[str, Any]], higher: bool = True) -> dict[str, Any] | None:
    """The cell with the best mean validation value (highest, or lowest when lower is better),
    the first listed on a tie (the test split plays no part).

    Chosen among the grid's cells when there is a grid: the grid is the search, the other
    studies are side-by-side comparisons, and the early-stopped cell's validation accuracy is
    biased upwards (validation already picked its epoch).
    """
    trained = [c for c in cells if c["seeds"]]
    candidates = [c for c in trained if "grid" in c["studies"]] or trained
    sign = 1 if higher else -1
    return max(candidates, key=lambda c: sign * mean_std(c["val"])[0], default=None)


def unregularized(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((c for c in cells if c["seeds"] and cell_label(c["cell"]) == "none"), None)


def _epochs(values: list[int]) -> str:
    """An epoch number, or mean ± std when the seeds differ."""
    return str(values[0]) if len(set(values)) == 1 else mean_std_text(values, 1)


def cell_row(
    cell: dict[str, Any], best: dict[str, Any] | None, h: Headline = CLASSIFICATION_HEADLINE
) -> dict[str, Any]:
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
        "augment": c.get("augment", "none"),
        h.column("train"): h.text(cell["train"]),
        h.column("val"): h.text(cell["val"]),
        h.column("test"): h.text(cell["test"]),
        h.gap_column: h.text(cell["gap"]),
        "stop epoch": _epochs(cell["stopped"]),
        "best epoch": _epochs(cell["best_epoch"]),
        "weight L1": mean_std_text(cell["weight_l1"], 1),
        "weight L2": mean_std_text(cell["weight_l2"]),
        "near-zero %": pct(cell["near_zero"]),
        "pass time": _cost(cell),
        "seeds": f"{cell['seeds']}/{cell['runs']}",
    }


def grid_tables(h: Headline) -> tuple:
    """Title, file-name slug, and how a cell reads, of each trade-off table."""
    return (
        (f"Test {h.title} {h.unit}".strip(), f"test-{h.name}", lambda cell: h.text(cell["test"])),
        (
            f"Generalization gap ({h.gap_words}), {'pp' if h.fraction else h.unit}".rstrip(", "),
            "gap",
            lambda cell: h.text(cell["gap"]),
        ),
        (
            "Weight L2 norm (Linear/Conv weights)",
            "weight-l2",
            lambda cell: mean_std_text(cell["weight_l2"]),
        ),
    )


def study_tables(h: Headline) -> dict[str, tuple[str, list[str]]]:
    """Each study's title and the long-form columns it shows."""
    scores = [h.column("train"), h.column("val"), h.column("test"), h.gap_column]
    return {
        "l1": ("L1 sweep: λ·Σ|w| added to the loss", ["L1 λ", *scores, "weight L1", "near-zero %"]),
        "l2": (
            "L2 two ways: the optimizer's coupled weight decay and an explicit λ/2·Σw² loss "
            "term (the same update for SGD), with decoupled weight decay beside them",
            ["weight decay", "L2-loss λ", *scores, "weight L2"],
        ),
        "dropout": (
            "Dropout two ways: nn.Dropout and the hand-written BernoulliDropout",
            ["dropout", *scores],
        ),
        "early_stopping": (
            "Early stopping on validation loss (best weights restored) vs the full budget",
            ["patience", "stop epoch", "best epoch", *scores],
        ),
        "augmentation": (
            "Augmentation: each grid cell without and with random affine augmentation of the "
            "training images (pass time: what augmentation adds to a training pass)",
            ["dropout", "weight decay", "augment", *scores, "pass time"],
        ),
    }


def long_form(h: Headline) -> str:
    what = "Accuracies" if h.name == "accuracy" else f"{h.title} values"
    return (
        f"{what} and gap as mean ± std over seeds; train {h.title} is measured after training, "
        f"in eval mode, on the whole train split; gap = {h.gap_words}; stop epoch = epochs "
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
        f"{optimizer}, {plural(config.epochs, 'epoch')}, batch {config.batch_size}."
    )


def section(
    model: str, dataset: str, cells: list[dict[str, Any]], h: Headline = CLASSIFICATION_HEADLINE
) -> tuple[str, list[Table]]:
    """The markdown and the tables of one model on one dataset."""
    best, plain = best_cell(cells, h.higher), unregularized(cells)
    prefix = f"{model}-{dataset}"
    text = f"### {model} on {dataset}\n\n"
    unit = "%" if h.fraction else f" {h.unit}".rstrip()
    gap_unit = " pp" if h.fraction else f" {h.unit}".rstrip()
    if plain:
        text += (
            f"Unregularized: train {h.text(plain['train'])}{unit}, test "
            f"{h.text(plain['test'])}{unit}, gap {h.text(plain['gap'])}{gap_unit}. "
        )
    if best:
        text += (
            f"Best {'grid ' if 'grid' in best['studies'] else ''}cell on validation {h.title} "
            f"(★): **{cell_label(best['cell'])}**: "
            f"val {h.text(best['val'])}{unit}, test {h.text(best['test'])}{unit}, gap "
            f"{h.text(best['gap'])}{gap_unit}."
        )
    text += "\n\n"
    tables = []
    grid = grid_cells(cells)
    if grid:
        caption = decay_caption(next(iter(grid.values()))["train_config"])
        text += f"**Trade-off grid**: dropout rows × weight decay columns. {caption}\n\n"
        for title, slug, value in grid_tables(h):
            rows = grid_rows(cells, best, value)
            tables.append(Table(f"{prefix}-grid-{slug}", rows, (CORNER,), f"{title}. {caption}"))
            text += f"#### {title}\n\n{markdown_table(rows)}\n\n"
    for study, (title, columns) in study_tables(h).items():
        members = [c for c in cells if study in c["studies"]]
        if members:
            rows = [cell_row(c, best, h) for c in members]
            tables.append(Table(f"{prefix}-{study}", rows, ("cell",), title))
            text += f"#### {title}\n\n{markdown_table(rows, ['cell', *columns, 'seeds'])}\n\n"
            if study == "augmentation":
                text += augmentation_cost(members)
    rows = [cell_row(c, best, h) for c in cells]
    tables.append(Table(f"{prefix}-cells", rows, ("cell",), long_form(h)))
    text += f"#### Every cell\n\n{long_form(h)}\n\n{markdown_table(rows)}\n\n"
    return text, tables
