"""The ``accuracy`` procedure: train each model on each dataset per grid point and seed, then test.

Its report is the accuracy-versus-parameters table: model, dataset, params, FLOPs, accuracy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.experiment import train_and_test
from harness.procedure import Procedure, Report, RunContext, Table
from harness.registry import Registry
from harness.report import context_line, failures_section, group, human, markdown_table, pct
from harness.suites import Run, Suite, apply_point, grid_points, subject


def point_label(point: dict[str, Any]) -> str:
    return ",".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())


def plan(suite: Suite, registry: Registry) -> list[Run]:
    runs = []
    for model in suite.models:
        for dataset in suite.datasets:
            for point in grid_points(suite.grid):
                model_options, dataset_options, train = apply_point(
                    point, model, dataset, suite.train
                )
                for seed in suite.seeds:
                    name = "-".join(
                        filter(None, [model.label, dataset.label, point_label(point), f"s{seed}"])
                    )
                    runs.append(
                        Run(
                            len(runs),
                            "accuracy",
                            {
                                "name": name,
                                **subject(model, dataset, model_options, dataset_options),
                                "grid_point": point,
                                "train": train,
                                "seed": seed,
                            },
                        )
                    )
    return runs


def execute(run: Run, ctx: RunContext) -> dict[str, Any]:
    return train_and_test(ctx, run.config)[1]


def summary_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, seeds aggregated as mean +- std."""
    rows = []

    def key(run: dict[str, Any]) -> tuple[str, str, str]:
        config = run["config"]
        return config["model_label"], config["dataset_label"], point_label(config["grid_point"])

    for (model, dataset, point), members in group(runs, key).items():
        ok = [r["metrics"] for r in members if r["status"] == "ok"]
        first = ok[0] if ok else {}
        row = {"model": model, "dataset": dataset}
        if point:
            row["settings"] = point
        row.update(
            {
                "params": f"{first['params']:,}" if ok else "—",
                "FLOPs/sample": human(first.get("flops")),
                "test acc %": pct(m["test_accuracy"] for m in ok),
                "val acc %": pct(m["val_accuracy"] for m in ok),
                "epochs": first.get("epochs", "—"),
                "train s/run": f"{sum(m['train_seconds'] for m in ok) / len(ok):.1f}"
                if ok
                else "—",
                "seeds": f"{len(ok)}/{len(members)}",
            }
        )
        rows.append(row)
    return rows


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    suite = results["suite"]
    runs = results["runs"]
    table = Table("accuracy", summary_rows(runs), key=("model", "dataset", "settings"))
    text = (
        f"## {suite['name']}: accuracy versus parameters\n\n{context_line(results)}\n\n"
        + markdown_table(table.rows)
        + failures_section(runs)
        + "\n"
    )
    return Report(markdown=text, tables=[table])


PROCEDURE = Procedure(
    name="accuracy",
    description="train and test every model x dataset x grid point x seed",
    plan=plan,
    execute=execute,
    report=report,
)
