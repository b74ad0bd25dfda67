"""The course's later labs as small runs of bench's own procedures: the MNIST MLP and CNN
(labs 4-5), checkpoints and transfer learning (lab 6), regularization and augmentation (lab 8),
recurrent models (labs 9-10) and autoencoders (lab 12).

A lab here is a small suite document, validated like any suite file and run in this process
through the procedure it names (:func:`run_study`); its headline is read from the runs' stored
metrics, as every report is. Checkpoints of a lab go under ``OUT/labs/<lab>/``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from bench_plugins.procedures.regularization.grid_cells import cell_label

from harness.errors import BenchError
from harness.execution.outcome import execute_run
from harness.planning.protocol import RunContext
from harness.planning.run_configs import subject
from harness.planning.suite_files import Entry, parse_suite
from harness.reporting.tables import mean_std, metric_text, pct, plural
from harness.training.checkpoints import checkpoint_path, read_checkpoint
from harness.training.steps import train_and_test


def run_study(ctx: RunContext, lab: str, document: dict[str, Any]) -> list[dict[str, Any]]:
    """Run the suite ``document`` (with ``name`` = the lab) run by run; raise if any failed."""
    suite = parse_suite({"name": lab, **document}, ctx.registry, source=f"course lab '{lab}'")
    procedure = ctx.registry.procedures.get(suite.procedure)
    inner = replace(ctx, out_dir=ctx.out_dir / "labs" / lab)
    records = [execute_run(procedure, run, inner) for run in procedure.plan(suite, ctx.registry)]
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        first = (failed[0].get("error") or "").strip().splitlines()
        raise BenchError(
            f"{len(failed)} of {plural(len(records), 'run')} of lab '{lab}' did not succeed; "
            f"{failed[0]['id']}: {first[-1] if first else failed[0]['status']}"
        )
    return records


def _headline_of(records: list[dict[str, Any]]) -> tuple[str, dict[str, float]]:
    """Each model's and baseline's test headline metric (mean ± std over seeds), in its unit."""
    parts, figures = [], {}
    by_label: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        config = record["config"]
        label = config.get("model_label") or f"{config['baseline']} baseline"
        by_label.setdefault(label, []).append(record["metrics"])
    for label, metrics in by_label.items():
        task = metrics[0]["task"]
        name = task["headline"]
        value = metric_text([m.get(f"test_{name}") for m in metrics], task["metrics"][name])
        unit = "%" if task["metrics"][name].get("unit") == "fraction" else ""
        params = f", {metrics[0]['params']:,} parameters" if metrics[0].get("params") else ""
        if "test_probe_accuracy" in metrics[0]:  # what an autoencoder's code is worth
            params += (
                f", linear probe of its code {pct(m['test_probe_accuracy'] for m in metrics)}%"
            )
        parts.append(
            f"{label}: test {task['metrics'][name].get('label', name)} {value}{unit}{params}"
        )
        figures[label] = mean_std(m.get(f"test_{name}") for m in metrics)[0]
    return "; ".join(parts), figures


def accuracy_lab(lab: str, models: list, dataset: str, train: dict, quick_epochs: int):
    """A lab that trains ``models`` on ``dataset`` with the ``accuracy`` procedure."""

    def run(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
        epochs = min(train["epochs"], quick_epochs) if quick else train["epochs"]
        records = run_study(
            ctx,
            lab,
            {
                "procedure": "accuracy",
                "models": models,
                "datasets": [dataset],
                "seeds": [seed],
                "train": {**train, "epochs": epochs},
            },
        )
        headline, figures = _headline_of(records)
        return {"headline": f"{headline} ({epochs} epoch{'s' * (epochs > 1)})", "figures": figures}

    return run


def checkpoint_lab(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
    """Lab 6's checkpoint: train EPOCHS = 2, save the model and optimizer state, train on to
    NEW_EPOCHS = 5 from the file; compare with 5 epochs straight."""
    out = ctx.out_dir / "labs" / "checkpoint"
    inner = replace(ctx, out_dir=out)
    base = {**subject(Entry("mlp", "mlp"), Entry("mnist-5k", "mnist-5k")), "seed": seed}
    train = {"batch_size": 64, "optimizer": "sgd", "lr": 0.01, "save_checkpoint": True}
    train_and_test(inner, {**base, "name": "first", "train": {**train, "epochs": 2}})
    first = checkpoint_path(out, "first")
    continued = train_and_test(
        inner,
        {
            **base,
            "name": "continued",
            "train": {**train, "epochs": 3, "from_checkpoint": str(first)},
        },
    )[1]
    straight = train_and_test(inner, {**base, "name": "straight", "train": {**train, "epochs": 5}})[
        1
    ]
    a = read_checkpoint(checkpoint_path(out, "continued"))["model_state"]
    b = read_checkpoint(checkpoint_path(out, "straight"))["model_state"]
    same = all(torch.equal(a[k], b[k]) for k in a)
    accuracies = continued["test_accuracy"], straight["test_accuracy"]
    return {
        "headline": f"mlp on mnist-5k, 2 epochs saved then 3 more from the checkpoint: test "
        f"accuracy {accuracies[0]:.2%}; 5 straight: {accuracies[1]:.2%}; weights "
        f"{'identical' if same else 'DIFFERENT'}",
        "figures": {"identical": same, "continued": accuracies[0], "straight": accuracies[1]},
    }


def transfer_lab(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
    """Lab 6: lenet5 pretrained on mnist-5k, to digits with 10 labelled samples per class."""
    records = run_study(
        ctx,
        "transfer",
        {
            "procedure": "transfer",
            "models": ["lenet5"],
            "datasets": ["mnist-5k", {"name": "digits", "options": {"normalize": False}}],
            "seeds": [seed],
            "train": {"epochs": 5 if quick else 20, "batch_size": 16, "lr": 0.01},
            "transfer": {"per_class": [10], "pretrain_epochs": 2 if quick else 5},
        },
    )
    by_strategy = {
        r["config"]["strategy"]: r["metrics"]["test_accuracy"]
        for r in records
        if r["config"]["kind"] == "transfer"
    }
    shown = ", ".join(f"{k} {v:.1%}" for k, v in by_strategy.items())
    return {
        "headline": f"lenet5, mnist-5k → digits, 10 labelled per class: {shown}",
        "figures": by_strategy,
    }


def regularization_lab(lab: str, document: dict[str, Any]):
    """A lab of the ``regularization`` procedure: the unregularized cell against the others."""

    def run(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
        epochs = document["train"]["epochs"]
        train = {**document["train"], "epochs": max(3, epochs // 3) if quick else epochs}
        records = run_study(ctx, lab, {**document, "seeds": [seed], "train": train})
        parts, figures = [], {}
        for record in records:
            label, metrics = cell_label(record["config"]["cell"]), record["metrics"]
            figures[label] = {"test": metrics["test_accuracy"], "gap": metrics["gap"]}
            cost = metrics.get("augmentation_cost")
            extra = f", {cost['ratio'] - 1:+.0%} pass time" if cost else ""
            parts.append(
                f"{label} {pct([metrics['test_accuracy']])}% (gap {100 * metrics['gap']:.1f} pp"
                f"{extra})"
            )
        return {"headline": f"test accuracy: {'; '.join(parts)}", "figures": figures}

    return run


REGULARIZATION = {
    "procedure": "regularization",
    "models": [{"name": "mlp", "options": {"hidden": [100, 100]}}],
    "datasets": ["mnist1d"],
    "train": {"epochs": 30, "batch_size": 128, "lr": 0.05},
    "regularization": {
        "dropouts": [0, 0.5],
        "weight_decays": [0, 1e-3],
        "l1": [0],
        "l2": 0,
        "compare_dropout": 0,
        "patience": 0,
    },
}
AUGMENTATION = {
    "procedure": "regularization",
    "models": ["lenet5"],
    "datasets": ["mnist-5k"],
    "train": {"epochs": 20, "batch_size": 32, "lr": 0.02},
    "regularization": {
        "dropouts": [0],
        "weight_decays": [0],
        "l1": [0],
        "l2": 0,
        "compare_dropout": 0,
        "patience": 0,
        "augment": "affine",
        "train_per_class": 50,
    },
}
