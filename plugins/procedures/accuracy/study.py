"""The ``accuracy`` procedure: train each model on each dataset per grid point and seed, then test
once; and, for datasets that name baselines, compute each baseline per seed beside them.

Its report is one table per dataset task: for classification the accuracy-versus-parameters
table (model, dataset, params, FLOPs, test and validation accuracy); for other tasks the task's
own metrics in their units (RMSE in dollars, bits per character, ...), with the baselines as
rows of the same table. Trained models' samples (a test period predicted, sequences classified,
text generated) follow as text and, with ``--plots``, pictures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.options import Option
from harness.planning.protocol import Procedure, Report, RunContext, Table
from harness.planning.run_configs import apply_point, grid_points, subject
from harness.planning.suite_files import Run, Suite
from harness.planning.train_settings import TrainConfig
from harness.registry.specs import Registry
from harness.reporting.cells import Cell
from harness.reporting.image_figures import plot_images
from harness.reporting.plots import plot_series
from harness.reporting.tables import (
    context_line,
    count,
    failures_section,
    group,
    human,
    markdown_table,
    metric_column,
    metric_text,
    pct,
    point_label,
    samples_section,
    task_of_runs,
)
from harness.training.steps import open_splits, task_of, train_and_test

QUICK_EPOCHS = 2
SETTINGS = {
    "quick": Option(
        False, f"smoke test: the first seed only, at most {QUICK_EPOCHS} epochs per run", "bool"
    ),
}


def plan(suite: Suite, registry: Registry) -> list[Run]:
    runs = []
    quick = suite.settings.get("quick", False)
    seeds = suite.seeds[:1] if quick else suite.seeds

    def add(config: dict[str, Any]) -> None:
        runs.append(Run(len(runs), "accuracy", config))

    for model in suite.models:
        for dataset in suite.datasets:
            for point in grid_points(suite.grid):
                model_options, dataset_options, train = apply_point(
                    point, model, dataset, suite.train
                )
                if quick:
                    epochs = TrainConfig.from_options(train).epochs
                    train = {**train, "epochs": min(epochs, QUICK_EPOCHS)}
                for seed in seeds:
                    name = "-".join(
                        filter(None, [model.label, dataset.label, point_label(point), f"s{seed}"])
                    )
                    add(
                        {
                            "name": name,
                            **subject(model, dataset, model_options, dataset_options),
                            "grid_point": point,
                            "train": train,
                            "seed": seed,
                        }
                    )
    for dataset in suite.datasets:
        for baseline in registry.datasets.get(dataset.name).baselines:
            for seed in seeds:
                add(
                    {
                        "name": f"{baseline}-{dataset.label}-s{seed}".replace(" ", "-"),
                        "baseline": baseline,
                        "dataset": dataset.name,
                        "dataset_label": dataset.label,
                        "dataset_options": dict(dataset.options),
                        "seed": seed,
                    }
                )
    return runs


def execute(run: Run, ctx: RunContext) -> dict[str, Any]:
    config = run.config
    splits = open_splits(
        ctx, config["dataset"], config["dataset_options"], config["seed"], config.get("model")
    )
    if "baseline" in config:
        baseline = ctx.registry.datasets.get(config["dataset"]).baselines[config["baseline"]]
        metrics = {**baseline(splits), "task": task_of(ctx, splits).describe(), "params": 0}
        return {**metrics, **({"target_unit": splits.target_unit} if splits.target_unit else {})}
    model, metrics = train_and_test(ctx, config)
    task = task_of(ctx, splits)
    if task.samples:
        metrics["samples"] = task.samples(model, splits, ctx.device)
    return metrics


def _label(run: dict[str, Any]) -> str:
    config = run["config"]
    return config.get("model_label") or f"{config['baseline']} (baseline)"


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, seeds aggregated as mean +- std: classification's accuracy
    table as it always was, other tasks' metrics in their units."""
    rows = []

    def key(run: dict[str, Any]) -> tuple[str, str, str]:
        config = run["config"]
        return _label(run), config["dataset_label"], point_label(config.get("grid_point", {}))

    for (model, dataset, point), members in group(runs, key).items():
        ok = [r["metrics"] for r in members if r["status"] == "ok"]
        first = ok[0] if ok else {}
        row = {"model": model, "dataset": dataset}
        if point:
            row["settings"] = point
        task = first.get("task") or {"name": "classification"}
        row["params"] = count(first["params"] if ok else None)
        row["FLOPs/sample"] = human(first.get("flops"))
        if task["name"] == "classification":
            row["test acc %"] = pct(m["test_accuracy"] for m in ok)
            row["val acc %"] = pct(m["val_accuracy"] for m in ok if "val_accuracy" in m)
        else:
            for name, metric in task["metrics"].items():
                if name != "loss":
                    column = f"test {metric_column(name, metric, first.get('target_unit'))}"
                    row[column] = metric_text([m.get(f"test_{name}") for m in ok], metric)
        row["epochs"] = first.get("epochs", "—")
        row["train s/run"] = (
            f"{sum(m['train_seconds'] for m in ok) / len(ok):.1f}"
            if ok and "train_seconds" in first
            else "—"
        )
        row["seeds"] = Cell(f"{len(ok)}/{len(members)}", {" ok": len(ok), " run": len(members)})
        rows.append(row)
    return rows


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    suite = results["suite"]
    runs = results["runs"]
    by_task = group(runs, lambda run: task_of_runs([run]))
    scored = "accuracy" if set(by_task) <= {"classification"} else "test metrics"
    tables, parts, files = [], [f"## {suite['name']}: {scored} versus parameters"], []
    parts.append(context_line(results))
    for task, members in by_task.items():
        name = "accuracy" if len(by_task) == 1 else f"accuracy ({task})"
        table = Table(name, summary_rows(members), key=("model", "dataset", "settings"))
        tables.append(table)
        if len(by_task) > 1:
            parts.append(f"### {task}")
        parts.append(markdown_table(table.rows))
    samples = samples_section(runs)
    if samples:
        parts.append(samples)
    if plots_dir:
        files = [*plot_series(runs, plots_dir), *plot_images(runs, plots_dir)]
        parts += [f"![{path.stem}]({path.name})" for path in files]
    text = "\n\n".join(parts) + failures_section(runs) + "\n"
    return Report(markdown=text, files=files, tables=tables)


PROCEDURE = Procedure(
    name="accuracy",
    description="train and test every model x dataset x grid point x seed (and each dataset's "
    "baselines)",
    plan=plan,
    execute=execute,
    report=report,
    settings=SETTINGS,
    checkpoints=True,
    stacks=True,
)
