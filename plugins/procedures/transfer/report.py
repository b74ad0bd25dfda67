"""The ``transfer`` procedure's report: target test accuracy against labelled samples per class,
one column (and one plot line) per strategy, read only from stored results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.planning.protocol import Report, Table
from harness.reporting.plots import plot_lines
from harness.reporting.tables import (
    context_line,
    failures_section,
    group,
    markdown_table,
    mean_std,
    pct,
    plural,
)


def _ok(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["metrics"] for r in members if r["status"] == "ok"]


def _labelled(count: int, runs: list[dict[str, Any]]) -> str:
    """'5', or 'all (129)' with the mean training samples per class of the whole split (the
    classes counted by the confusion matrix every classification run records)."""
    ok = _ok(runs)
    if count or not ok:
        return str(count or "all")
    per_class = [m["split_sizes"]["train"] / len(m["confusion_matrix"]) for m in ok]
    return f"all ({sum(per_class) / len(per_class):.0f})"


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    runs = results["runs"]
    settings = results["suite"]["settings"]
    strategies = list(settings["strategies"])
    seeds = len({r["config"]["seed"] for r in runs})
    parts = [
        f"## {results['suite']['name']}: transfer from {settings['source']} to "
        f"{settings['target']}",
        context_line(results),
        f"Target test accuracy (%), mean ± std over {plural(seeds, 'seed')}, against the labelled "
        "target samples per class trained on. Every strategy had the same training budget on "
        "the target; the test split is the whole target test split, evaluated once per run. "
        "fine-tune: pretrained weights, new head, every layer trained; feature-extraction: "
        "pretrained weights frozen, only the new head trained; scratch: no pretraining.",
    ]
    tables, files = [], []
    by_model = group(runs, lambda r: r["config"]["model_label"])
    for model, members in by_model.items():
        pretrain = [r for r in members if r["config"]["kind"] == "pretrain"]
        transfer = [r for r in members if r["config"]["kind"] == "transfer"]
        if pretrain:
            accuracy = pct(m["test_accuracy"] for m in _ok(pretrain))
            epochs = pretrain[0]["config"]["train"].get("epochs")
            parts.append(
                f"**{model}** pretrained on {settings['source']} for "
                f"{plural(epochs, 'epoch')}: source test accuracy {accuracy}% "
                f"({len(_ok(pretrain))}/{len(pretrain)} seeds)."
            )
        rows, lines = [], {s: [] for s in strategies}
        by_count = group(transfer, lambda r: r["config"]["train_per_class"])
        for count, cell in sorted(by_count.items(), key=lambda kv: kv[0] or float("inf")):
            row = {"model": model, "labelled/class": _labelled(count, cell)}
            for strategy in strategies:
                chosen = _ok([r for r in cell if r["config"]["strategy"] == strategy])
                accuracies = [m["test_accuracy"] for m in chosen]
                row[f"{strategy} %"] = pct(accuracies)
                if accuracies:
                    mean, std = mean_std(accuracies)
                    lines[strategy].append((row["labelled/class"], 100 * mean, 100 * std))
            rows.append(row)
        tables.append(Table(f"transfer-{model}", rows, key=("model", "labelled/class")))
        parts.append(markdown_table(rows))
        parts.append(_trainable(transfer, strategies))
        if plots_dir and any(lines.values()):
            path = plots_dir / f"transfer-{model}.png"
            files.append(
                plot_lines(
                    lines,
                    path,
                    title=f"{model}: {settings['source']} → {settings['target']}",
                    x_label="labelled target samples per class",
                    y_label="target test accuracy (%)",
                )
            )
    parts += [f"![{path.stem}]({path.name})" for path in files]
    text = "\n\n".join(parts) + failures_section(runs) + "\n"
    return Report(markdown=text, files=files, tables=tables)


def _trainable(runs: list[dict[str, Any]], strategies: list[str]) -> str:
    """How many parameters each strategy trains, of how many."""
    words = []
    for strategy in strategies:
        ok = _ok([r for r in runs if r["config"]["strategy"] == strategy])
        if ok:
            words.append(f"{strategy} trains {ok[0]['trainable_params']:,} of {ok[0]['params']:,}")
    return ("Parameters: " + "; ".join(words) + ".") if words else ""
