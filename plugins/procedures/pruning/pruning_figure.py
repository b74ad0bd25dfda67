"""The ``pruning`` study's figure, one per model and dataset: test accuracy after fine-tuning
against parameters removed (log2 compression axis) and against theoretical speed-up, one line
per method with a ± std band and the dense control as a dashed line.

A method that collapses (random pruning falls to chance) would squeeze the others into a thin
band at the top, where they overlap; so when the points fall into two groups far apart, the y
axis is broken: a tall panel shows the upper group, a short one below it the lower group. The
legend is the figure's, below the panels, where it covers no data; the compression axis has a
tick at each target (and the dense model's 1x) and none beyond the data.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.planning.suite_files import safe_name
from harness.reporting.plots import pyplot, save_figure
from harness.reporting.tables import group, mean_std

# the y axis breaks at a gap between the points of at least this share of their span, and of at
# least this many percentage points (below that, no method is squeezed)
GAP, MIN_GAP = 1 / 3, 10.0
FOLD = 1.1  # a power of two within this factor of the data's range gets a speed-up tick


def plot_pruning(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """A PNG per model and dataset that has numbers (see the module)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for (model, dataset), members in group(rows, lambda r: (r["model"], r["dataset"])).items():
        measured = [r for r in members if r["seeds"]]
        if measured:
            figure = pruning_figure(model, dataset, measured)
            # labels come from a results file, which may have been edited since bench wrote it
            files.append(save_figure(figure, out_dir / safe_name(f"pruning-{model}-{dataset}.png")))
    return files


def pruning_figure(model: str, dataset: str, rows: list[dict[str, Any]]):
    """The figure of one model and dataset's summarized rows, each with numbers."""
    control = next((r for r in rows if r["method"] == "dense"), None)
    lines = {
        method: sorted([*([control] if control else []), *points], key=lambda r: r["compression"])
        for method, points in group(
            [r for r in rows if r["method"] != "dense"], lambda r: r["method"]
        ).items()
    }
    bands = y_bands([_spread(r) for r in rows])
    figure, axes = pyplot().subplots(
        len(bands),
        2,
        figsize=(12, 5.5 if len(bands) > 1 else 4.8),
        sharex="col",
        sharey="row",
        squeeze=False,
        height_ratios=[3, 1][: len(bands)],
        layout="constrained",
    )
    for row, band in zip(axes, bands, strict=True):
        for axis, x in zip(row, ("compression", "speedup"), strict=True):
            _draw(axis, lines, control, x)
            axis.set_ylim(*_padded(band))
            axis.grid(alpha=0.3)
    if len(bands) > 1:
        _mark_break(axes)
    _compression_axis(axes[-1][0], rows)
    _speedup_axis(axes[-1][1], [r["speedup"] for r in rows])
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(handles), fontsize=9)
    figure.supylabel("test accuracy after fine-tuning (%)")
    figure.suptitle(f"{model} on {dataset}: accuracy vs parameters removed (mean ± std)")
    return figure


def _spread(row: dict[str, Any]) -> tuple[float, float]:
    mean, std = mean_std(row["after"])
    return 100 * (mean - std), 100 * (mean + std)


def _draw(axis, lines: dict[str, list[dict[str, Any]]], control, x: str) -> None:
    for method, points in lines.items():
        stats = [mean_std(r["after"]) for r in points]
        xs = [r[x] for r in points]
        (line,) = axis.plot(xs, [100 * m for m, _ in stats], marker="o", label=method)
        low, high = ([100 * (m + sign * s) for m, s in stats] for sign in (-1, 1))
        axis.fill_between(xs, low, high, color=line.get_color(), alpha=0.2)
    if control:
        dense = 100 * mean_std(control["after"])[0]
        axis.axhline(dense, color="black", linestyle="--", linewidth=1, label="dense")


def y_bands(spreads: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The y ranges to show, top first: the whole range of the (low, high) spreads, or, where
    they fall into two groups with a gap of at least :data:`GAP` of that range (and
    :data:`MIN_GAP`) between them, the upper group's range and the lower group's."""
    merged: list[list[float]] = []
    for low, high in sorted(spreads):
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        else:
            merged.append([low, high])
    whole = (merged[0][0], max(high for _, high in merged))
    gaps = [(merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1)]
    if not gaps or max(gaps)[0] < max(GAP * (whole[1] - whole[0]), MIN_GAP):
        return [whole]
    split = max(gaps)[1]
    return [(merged[split + 1][0], whole[1]), (whole[0], merged[split][1])]


def _padded(band: tuple[float, float]) -> tuple[float, float]:
    pad = max(0.08 * (band[1] - band[0]), 1.0)
    return band[0] - pad, band[1] + pad


def _mark_break(axes) -> None:
    """The broken y axis: no spine or x ticks between the panels, and a pair of slashes on
    either side of the break."""
    slashes = dict(
        marker=[(-1, -0.5), (1, 0.5)],
        markersize=10,
        linestyle="none",
        color="black",
        clip_on=False,
    )
    for top, bottom in zip(axes[0], axes[1], strict=True):
        top.spines["bottom"].set_visible(False)
        bottom.spines["top"].set_visible(False)
        top.tick_params(bottom=False, labelbottom=False)
        top.plot([0, 1], [0, 0], transform=top.transAxes, **slashes)
        bottom.plot([0, 1], [1, 1], transform=bottom.transAxes, **slashes)


def _compression_axis(axis, rows: list[dict[str, Any]]) -> None:
    """Log2 compression, ticked at the dense model (1x) and at each target a method measured
    against all the parameters, labelled with the share removed: 87.5% (8x)."""
    targets = sorted({0.0} | {r["target"] for r in rows if not r.get("target_of")})
    ticks = [1 / (1 - t / 100) for t in targets]
    axis.set_xscale("log", base=2)
    axis.set_xticks(ticks, [f"{t:g}%\n({c:.3g}x)" for t, c in zip(targets, ticks, strict=True)])
    axis.minorticks_off()
    axis.tick_params(axis="x", labelsize=8)
    axis.set_xlabel("parameters removed (compression, log2 axis)")


def _speedup_axis(axis, speedups: list[float]) -> None:
    """Log2 speed-up, ticked at the powers of two within the data's range."""
    low, high = math.log2(min(speedups) / FOLD), math.log2(max(speedups) * FOLD)
    ticks = [2.0**k for k in range(math.ceil(low), math.floor(high) + 1)]
    axis.set_xscale("log", base=2)
    axis.set_xticks(ticks, [f"{t:g}x" for t in ticks])
    axis.minorticks_off()
    axis.set_xlabel("theoretical speed-up (dense FLOPs / effective FLOPs)")
