"""PNG plots of stored results (matplotlib, headless)."""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Any

from harness.planning.suite_files import safe_name
from harness.reporting.tables import group, mean_std


@functools.cache
def pyplot():
    """``matplotlib.pyplot``, imported when a figure is first drawn (it costs 1.5 s, which a
    command that draws nothing should not pay). Files only: no display needed, none assumed; in
    a Jupyter kernel the notebook's own (inline) backend stays, so that the user's plots still
    show, and bench closes every figure it saves."""
    import matplotlib

    if "ipykernel" not in sys.modules:
        matplotlib.use("Agg")
    import matplotlib.pyplot

    return matplotlib.pyplot


def plot_heatmap(
    values: list[list[float]],
    rows: list[str],
    columns: list[str],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    path: Path,
    mark: tuple[int, int] | None = None,
) -> Path:
    """A table of numbers as an annotated heatmap (NaN cells left blank); the cell at ``mark``
    (row, column) is outlined."""
    figure, axis = pyplot().subplots(
        figsize=(max(6.0, 1.2 * len(columns) + 2.5), 0.6 * len(rows) + 2.0)
    )
    image = axis.imshow(values, cmap="viridis", aspect="auto")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            if not math.isnan(value):
                color = "white" if image.norm(value) < 0.5 else "black"
                axis.text(j, i, f"{value:.1f}", ha="center", va="center", color=color)
    if mark is not None:
        axis.add_patch(
            pyplot().Rectangle(
                (mark[1] - 0.5, mark[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5
            )
        )
    axis.set_xticks(range(len(columns)), columns)
    axis.set_yticks(range(len(rows)), rows)
    axis.set_xlabel(xlabel)
    axis.set_ylabel(ylabel)
    axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axis)
    return save_figure(figure, path)


def plot_sweep(
    x: list[float],
    left: dict[str, list[tuple[float, float]]],
    right: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    xlabel: str,
    left_label: str,
    right_label: str,
    path: Path,
) -> Path:
    """Series of (mean, std) against a swept value on two y axes, each with a +-std band; the x
    axis is logarithmic, with a linear stretch around 0 when 0 is swept."""
    figure, axis = pyplot().subplots(figsize=(7, 4.5))
    twin = axis.twinx()
    colors = iter(pyplot().rcParams["axes.prop_cycle"].by_key()["color"])  # one cycle for both axes
    lines = []
    for target, series, style in ((axis, left, "-"), (twin, right, "--")):
        for label, stats in series.items():
            mean = [m for m, _ in stats]
            (line,) = target.plot(x, mean, style, marker="o", color=next(colors), label=label)
            target.fill_between(
                x,
                [m - s for m, s in stats],
                [m + s for m, s in stats],
                color=line.get_color(),
                alpha=0.2,
            )
            lines.append(line)
    positive = [v for v in x if v > 0]
    if positive and 0 in x:
        axis.set_xscale("symlog", linthresh=min(positive))
    elif positive:
        axis.set_xscale("log")
    axis.set_xlabel(xlabel)
    axis.set_ylabel(left_label)
    twin.set_ylabel(right_label)
    axis.legend(lines, [line.get_label() for line in lines], fontsize=8, loc="best")
    axis.set_title(title, fontsize=9)
    return save_figure(figure, path)


def plot_loss_curves(
    curves: dict[str, list[list[dict[str, float]]]],
    *,
    title: str,
    path: Path,
    ylabel: str = "cross-entropy loss",
) -> Path:
    """Training (solid) and validation (dashed) loss per epoch for each labelled set of
    histories, averaged over the histories that reached each epoch (no validation line for
    histories without a validation split)."""
    figure, axis = pyplot().subplots(figsize=(7, 4.5))
    for label, histories in curves.items():
        color = None
        records = [record for history in histories for record in history]
        for key, style in (("train_loss", "-"), ("val_loss", "--")):
            by_epoch = group([r for r in records if key in r], lambda r: r["epoch"])
            if not by_epoch:
                continue
            epochs = sorted(by_epoch)
            mean = [mean_std(r[key] for r in by_epoch[e])[0] for e in epochs]
            name = "train (running, train mode)" if key == "train_loss" else "validation"
            (line,) = axis.plot(epochs, mean, style, color=color, label=f"{label}: {name}")
            color = line.get_color()
    axis.set_xlabel("epoch")
    axis.set_ylabel(ylabel)
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=9)
    return save_figure(figure, path)


def plot_lines(
    lines: dict[str, list[tuple[str, float, float]]],
    path: Path,
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> Path:
    """One line per label through (category, mean, std) points with a +-std band, the
    categories evenly spaced in the order first seen (5, 10, 25, 50, all)."""
    categories = list(dict.fromkeys(c for points in lines.values() for c, _, _ in points))
    figure, axis = pyplot().subplots(figsize=(7, 4.5))
    for label, points in lines.items():
        if not points:
            continue
        x = [categories.index(c) for c, _, _ in points]
        mean = [m for _, m, _ in points]
        axis.plot(x, mean, marker="o", label=label)
        axis.fill_between(
            x, [m - s for _, m, s in points], [m + s for _, m, s in points], alpha=0.15
        )
    axis.set_xticks(range(len(categories)), categories)
    axis.set_xlabel(x_label)
    axis.set_ylabel(y_label)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=9)
    return save_figure(figure, path)


def plot_curves(curves: dict[str, tuple[list[float], int]], path: Path) -> Path:
    """Small multiples: each named loss curve (values, and the epochs between two values)
    against the epoch, on a log scale when it spans more than a factor of 100."""
    columns = min(3, len(curves))
    rows = math.ceil(len(curves) / columns)
    figure, axes = pyplot().subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, (name, (values, every)) in zip(axes.flat, curves.items(), strict=False):
        axis.plot([1 + i * every for i in range(len(values))], values)
        positive = [v for v in values if v > 0]
        if positive and max(positive) > 100 * min(positive):
            axis.set_yscale("log")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("epoch")
        axis.set_ylabel("loss")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(curves) :]:
        axis.set_visible(False)
    return save_figure(figure, path)


def save_figure(figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if figure.get_layout_engine() is None:  # a figure drawn with a layout engine keeps it
        figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot().close(figure)
    return path


def plot_series(runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Per dataset, the test period actual against each model's prediction (first seed of each
    configuration that stored a ``series``)."""
    series: dict[str, dict[str, dict[str, Any]]] = {}
    for run in runs:
        samples = run.get("metrics", {}).get("samples") if run["status"] == "ok" else None
        if samples and samples.get("series"):
            dataset = run["config"]["dataset_label"]
            series.setdefault(dataset, {}).setdefault(
                run["config"]["model_label"], samples["series"]
            )
    paths = []
    for dataset, by_model in series.items():
        figure, axis = pyplot().subplots(figsize=(9, 4.5))
        first = next(iter(by_model.values()))
        axis.plot(first["actual"], color="black", linewidth=1.2, label="actual")
        for model, values in by_model.items():
            axis.plot(values["predicted"], linewidth=0.8, alpha=0.8, label=f"{model}: predicted")
        axis.set_xlabel("test day (most recent period, in order)")
        axis.set_ylabel(first.get("unit") or "value")
        axis.legend(fontsize=8)
        axis.set_title(f"{dataset}: test period, actual against predicted", fontsize=9)
        paths.append(save_figure(figure, out_dir / f"series-{safe_name(dataset)}.png"))
    return paths


def plot_confusion(matrix: list[list[int]], names: list[str], *, title: str, path: Path) -> Path:
    """Rows: true class; columns: predicted; each row as shares of its true class."""
    counts = [[float(c) for c in row] for row in matrix]
    shares = [[c / (sum(row) or 1) for c in row] for row in counts]
    size = max(4.0, 0.45 * len(names) + 2)
    figure, axis = pyplot().subplots(figsize=(size + 1, size))
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    axis.set_yticks(range(len(names)), names, fontsize=7)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    for i, row in enumerate(counts):
        for j, count in enumerate(row):
            if count:
                color = "white" if shares[i][j] > 0.5 else "black"
                axis.text(j, i, f"{count:.0f}", ha="center", va="center", fontsize=6, color=color)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    axis.set_title(title, fontsize=9)
    return save_figure(figure, path)
