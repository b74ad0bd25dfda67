"""PNG plots of stored results (matplotlib, headless)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display needed, none assumed
import matplotlib.pyplot as plt  # noqa: E402

from harness.report import group, mean_std  # noqa: E402


def plot_pruning(rows: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    """Per model: test accuracy after fine-tuning against % parameters removed (log2
    compression axis) and against theoretical speed-up; one line per method with a +-std band
    and the dense control as a dashed reference line."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for (model, dataset), members in group(rows, lambda r: (r["model"], r["dataset"])).items():
        members = [r for r in members if r["seeds"]]
        control = next((r for r in members if r["method"] == "dense"), None)
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
        for method, points in group(
            [r for r in members if r["method"] != "dense"], lambda r: r["method"]
        ).items():
            points = sorted(
                [*([control] if control else []), *points], key=lambda r: r["compression"]
            )
            stats = [mean_std(r["after"]) for r in points]
            mean = [100 * m for m, _ in stats]
            low = [100 * (m - s) for m, s in stats]
            high = [100 * (m + s) for m, s in stats]
            for axis, x in (
                (axes[0], [r["compression"] for r in points]),
                (axes[1], [r["speedup"] for r in points]),
            ):
                (line,) = axis.plot(x, mean, marker="o", label=method)
                axis.fill_between(x, low, high, color=line.get_color(), alpha=0.2)
        if control:
            dense = 100 * mean_std(control["after"])[0]
            for axis in axes:
                axis.axhline(dense, color="black", linestyle="--", linewidth=1, label="dense")
        _compression_axis(axes[0], [r["compression"] for r in members])
        axes[1].set_xscale("log", base=2)
        axes[1].set_xlabel("theoretical speed-up (dense FLOPs / effective FLOPs)")
        axes[0].set_ylabel("test accuracy after fine-tuning (%)")
        axes[1].legend(loc="lower left", fontsize=8)
        figure.suptitle(f"{model} on {dataset}: accuracy vs parameters removed (mean ± std)")
        figure.tight_layout()
        path = out_dir / f"pruning-{model}-{dataset}.png"
        figure.savefig(path, dpi=110)
        plt.close(figure)
        files.append(path)
    return files


def _compression_axis(axis, compressions: list[float]) -> None:
    axis.set_xscale("log", base=2)
    top = max(compressions, default=1)
    ticks = [2**k for k in range(0, math.ceil(math.log2(max(top, 1))) + 1)]
    axis.set_xticks(ticks)
    axis.set_xticklabels([f"{100 * (1 - 1 / t):g}%\n({t}x)" for t in ticks], fontsize=8)
    axis.set_xlabel("parameters removed (compression, log2 axis)")
