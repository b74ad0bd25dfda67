"""Pictures of single configurations that ``bench run`` and ``bench report --plots`` draw
whatever the procedure: each configuration's test confusion matrix (summed over its seeds) and
its training and validation loss per epoch, for every configuration whose runs stored them."""

from __future__ import annotations

import re
from concurrent.futures import ProcessPoolExecutor
from itertools import repeat
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any

from harness.planning.suite_files import safe_name
from harness.reporting.plots import plot_confusion, plot_loss_curves
from harness.reporting.tables import group, plural

RUN_PLOTS = "runs"  # the folder of a bench run's output that holds them


def configuration(run: dict[str, Any]) -> str:
    """A run's name without its seed: what its seeds have in common."""
    return re.sub(r"-s\d+$", "", str(run["config"].get("name") or run["id"]))


def plot_runs(
    results: dict[str, Any],
    out_dir: Path,
    workers: int = 1,
    context: BaseContext | None = None,
) -> list[Path]:
    """Draw every configuration's confusion matrix and loss curves that its runs stored.

    With ``workers`` > 1 (a suite run with ``--jobs``) the configurations are drawn by that many
    processes started from ``context`` (the runner hands down its worker server's): dozens of
    figures are seconds of work each core can share."""
    ok = [run for run in results["runs"] if run["status"] == "ok"]
    configurations = group(ok, configuration)
    names, members = list(configurations), list(configurations.values())
    if workers < 2 or len(names) < 2 or context is None:
        drawn = map(_plot_configuration, names, members, repeat(out_dir))
        return [path for paths in drawn for path in paths]
    with ProcessPoolExecutor(min(workers, len(names)), mp_context=context) as pool:
        drawn = pool.map(_plot_configuration, names, members, repeat(out_dir))
        return [path for paths in drawn for path in paths]


def _plot_configuration(name: str, runs: list[dict[str, Any]], out_dir: Path) -> list[Path]:
    metrics = [run["metrics"] for run in runs]
    paths = []
    matrices = [m["confusion_matrix"] for m in metrics if m.get("confusion_matrix")]
    if matrices:
        by_row = zip(*matrices, strict=True)
        total = [[sum(cells) for cells in zip(*rows, strict=True)] for rows in by_row]
        names = metrics[0].get("class_names") or [str(i) for i in range(len(total))]
        seeds = f"{len(matrices)} seed{'s' if len(matrices) > 1 else ''}"
        paths.append(
            plot_confusion(
                total,
                list(names),
                title=f"{name}: test confusion matrix ({seeds})",
                path=out_dir / f"confusion-{safe_name(name)}.png",
            )
        )
    histories = [m["history"] for m in metrics if m.get("history")]
    if histories:
        unit = ((metrics[0].get("task") or {}).get("metrics") or {}).get("loss", {}).get("unit")
        paths.append(
            plot_loss_curves(
                {name: histories},
                title=f"{name}: loss per epoch (mean over {plural(len(histories), 'seed')})",
                path=out_dir / f"loss-{safe_name(name)}.png",
                ylabel=f"loss ({unit or 'nats'})",
            )
        )
    return paths


def run_plots_note(paths: list[Path]) -> str:
    """One line for a report: how many run plots there are and where, rather than one each."""
    kinds = sorted({path.name.split("-")[0] for path in paths})
    return (
        f"_Plots of each configuration ({', '.join(kinds)}): {plural(len(paths), 'PNG')} in "
        f"`{RUN_PLOTS}/`._"
    )
