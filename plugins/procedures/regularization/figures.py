"""The ``regularization`` procedure's pictures: heatmaps over the grid, the L1 sweep, and the
loss curves of the unregularized and the best cell, in the task's headline metric."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench_plugins.procedures.regularization.grid_cells import cell_label
from bench_plugins.procedures.regularization.report import (
    CLASSIFICATION_HEADLINE,
    Headline,
    best_cell,
    grid_axes,
    grid_cells,
    unregularized,
)

from harness.planning.suite_files import safe_name
from harness.planning.train_settings import TrainConfig
from harness.reporting.plots import plot_heatmap, plot_loss_curves, plot_sweep
from harness.reporting.tables import mean_std


def plot_section(
    model: str,
    dataset: str,
    cells: list[dict[str, Any]],
    out_dir: Path,
    h: Headline = CLASSIFICATION_HEADLINE,
) -> list[Path]:
    """Heatmaps of the test headline metric and the gap over the grid, the L1 sweep, and the
    loss curves of the unregularized and the best cell."""
    # labels come from a results file, which may have been edited since bench wrote it
    prefix = safe_name(f"regularization-{model}-{dataset}")
    title = f"{model} on {dataset}"
    best = best_cell(cells, h.higher)
    grid = {key: c for key, c in grid_cells(cells).items() if c["seeds"]}
    sweep = [c for c in cells if "l1" in c["studies"] and c["seeds"]]
    files = [
        _heatmap(grid, metric, best, f"{title}: {label}", out_dir / f"{prefix}-{slug}.png", h)
        for slug, metric, label in heatmaps(h)
        if grid
    ]
    if len(sweep) > 1:
        files.append(_l1_plot(sweep, title, out_dir / f"{prefix}-l1.png", h))
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


def heatmaps(h: Headline) -> tuple[tuple[str, str, str], ...]:
    """File-name slug, metric, label of each heatmap."""
    unit = "pp" if h.fraction else h.unit
    return (
        (f"test-{h.name}", "test", f"test {h.title} {h.unit}".strip()),
        (
            "gap",
            "gap",
            f"generalization gap ({h.gap_words.split(' ', 3)[0]} − "
            f"{h.gap_words.split(' ', 3)[2]}), {unit}".rstrip(", "),
        ),
    )


def _heatmap(grid, metric: str, best, title: str, path: Path, h: Headline):
    dropouts, decays = grid_axes(grid)
    values = [
        [h.mean(grid[(d, w)][metric]) if (d, w) in grid else math.nan for w in decays]
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


def _l1_plot(sweep: list[dict[str, Any]], title: str, path: Path, h: Headline) -> Path:
    scale = 100 if h.fraction else 1
    return plot_sweep(
        [c["cell"]["l1"] for c in sweep],
        {name: [_scaled(c[name], scale) for c in sweep] for name in ("train", "val", "test")},
        {"near-zero weights": [_scaled(c["near_zero"], 100) for c in sweep]},
        title=f"{title}: L1 penalty λ·Σ|w| (mean ± std)",
        xlabel="L1 λ",
        left_label=f"{h.title} {h.unit}".strip(),
        right_label="weights with |w| < threshold, %",
        path=path,
    )


def _scaled(values: list[float], scale: float) -> tuple[float, float]:
    mean, std = mean_std(values)
    return scale * mean, scale * std
