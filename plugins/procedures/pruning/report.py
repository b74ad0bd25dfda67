"""The ``pruning`` procedure's report: accuracy against parameters removed, per model, method
and target, seeds aggregated; read only from stored results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench_plugins.procedures.pruning.methods import PRUNABLE_WEIGHTS
from bench_plugins.procedures.pruning.pruning_figure import plot_pruning

from harness.planning.protocol import Report, Table
from harness.reporting.cells import Cell
from harness.reporting.tables import (
    contended,
    contention_section,
    context_line,
    failures_section,
    group,
    human,
    markdown_table,
    mean_std,
    pct,
)


def _key(run: dict[str, Any]) -> tuple[str, str, str, float]:
    config = run["config"]
    method = config.get("method", "dense")
    return config["model_label"], config["dataset_label"], method, config.get("target", 0.0)


def variant(config: dict[str, Any]) -> str:
    """How a latency run names the variant a pruning run made: ``dense``, ``random-50``."""
    return f"{config['method']}-{config['target']:g}" if "method" in config else "dense"


def with_latency(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pruning runs (not the latency runs), each with its variant's forward ``latency`` from
    its latency run when that ran (older results measured it within each run)."""
    measured = {}
    for run in runs:
        if (c := run["config"]).get("kind") == "latency" and run["status"] == "ok":
            # one run covers every seed (older results: one run per seed)
            per_seed = run["metrics"].get("seeds") or {str(c["seed"]): run["metrics"]}
            for seed, variants in per_seed.items():
                measured[c["model_label"], c["dataset_label"], int(seed)] = variants
    found = []
    for run in runs:
        config = run["config"]
        if config.get("kind") == "latency":
            continue
        key = (config["model_label"], config["dataset_label"], config["seed"])
        latency = measured.get(key, {}).get(variant(config), {})
        if run["status"] == "ok" and "median_ms" in latency and "latency" not in run["metrics"]:
            run = {**run, "metrics": {**run["metrics"], "latency": latency}}
        found.append(run)
    return found


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One record per model x dataset x method x target, seeds aggregated (numbers, not text); a
    configuration without numbers (its runs failed, or were not applicable) has ``seeds`` 0."""
    rows = []
    for (model, dataset, method, target), members in group(
        with_latency(results["runs"]), _key
    ).items():
        subject = {"model": model, "dataset": dataset, "method": method, "target": target}
        ok = [r["metrics"] for r in members if r["status"] == "ok"]
        measured = [m for m in ok if "not_applicable" not in m]
        if not measured:
            rows.append({**subject, **_without_numbers(members), "seeds": 0, "runs": len(members)})
            continue
        first = measured[0]
        latencies = [m["latency"] for m in measured if "latency" in m]
        rows.append(
            {
                **subject,
                "structure": first.get("structure", "dense (control)"),
                "target_of": first.get("target_of"),
                "prunable_weights": first.get("prunable_weights"),
                "dense_params": first.get("dense_params"),
                "achieved": mean_std(m["achieved_drop"] for m in measured)[0],
                "params_total": first["params_total"],
                "params_nonzero": first["params_nonzero"],
                "compression": mean_std(m["compression"] for m in measured)[0],
                "flops": first["flops"],
                "flops_effective": first["flops_effective"],
                "speedup": mean_std(m["speedup"] for m in measured)[0],
                "latency_ms": mean_std(m["median_ms"] for m in latencies)[0] if latencies else None,
                "latency_contended": any(contended(m) for m in latencies),
                "latency_batch": latencies[0]["batch_size"] if latencies else None,
                "device": results["environment"].get("device"),
                "before": [
                    m["accuracy_before"] for m in measured if m["accuracy_before"] is not None
                ],
                "after": [m["accuracy_after"] for m in measured],
                "seeds": len(measured),
                "runs": len(members),
            }
        )
    return rows


def _without_numbers(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Why a configuration has no numbers: its runs' statuses, or the reason it does not apply."""
    reasons = {r["metrics"]["not_applicable"] for r in members if r["status"] == "ok"}
    if reasons:
        return {"statuses": [NOT_APPLICABLE], "reason": "; ".join(sorted(reasons))}
    return {"statuses": sorted({r["status"] for r in members})}


NOT_APPLICABLE = "n/a"


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's rows, every one with every column: a configuration without numbers shows
    why in its accuracy column and "—" in the others, never a missing cell."""
    control = {(r["model"], r["dataset"]): r for r in rows if r["method"] == "dense" and r["seeds"]}
    share = any(r.get("target_of") for r in rows)  # a target column's meaning varies
    lines = [_line(r, control.get((r["model"], r["dataset"])), share) for r in rows]
    columns = list(dict.fromkeys(k for line in sorted(lines, key=len, reverse=True) for k in line))
    return [{c: line.get(c, Cell("—")) for c in columns} for line in lines]


def _line(r: dict[str, Any], base: dict[str, Any] | None, share: bool) -> dict[str, Any]:
    target = {"target %": f"{r['target']:g}"}
    if share:
        known = r["seeds"] and r["method"] != "dense"
        target["target of"] = r.get("target_of") or (ALL if known else "—")
    if not r["seeds"]:
        accuracy = "/".join(r["statuses"])
        if NOT_APPLICABLE not in r["statuses"]:
            accuracy += f" ({r['runs']} runs)"
        return {"model": r["model"], "method": r["method"], **target, "acc after FT %": accuracy,
                "seeds": 0}  # fmt: skip
    delta = (100 * (mean_std(r["after"])[0] - mean_std(base["after"])[0])) if base else None
    return {
        "model": r["model"],
        "method": r["method"],
        "structure": r["structure"],
        **target,
        "achieved %": f"{100 * r['achieved']:.1f}",
        "params (total / nonzero)": Cell(
            f"{r['params_total']:,} / {r['params_nonzero']:,}",
            {"params total": r["params_total"], "params nonzero": r["params_nonzero"]},
        ),
        "compression": f"{r['compression']:.1f}x",
        "FLOPs dense": human(r["flops"]),
        "FLOPs effective": human(r["flops_effective"]),
        "speed-up": f"{r['speedup']:.1f}x",
        f"latency ms (b{r['latency_batch']}, {r['device']})": _latency(r),
        "acc before FT %": pct(r["before"]),
        "acc after FT %": pct(r["after"]),
        "Δ vs dense pp": "—" if delta is None or r["method"] == "dense" else f"{delta:+.1f}",
        "seeds": r["seeds"],
    }


ALL = "all parameters"


def _latency(row: dict[str, Any]) -> Cell:
    if row["latency_ms"] is None:
        return Cell("—")
    contended = bool(row["latency_contended"])
    text = f"{row['latency_ms']:.2f}" + (" contended" if contended else "")
    return Cell(text, {"": row["latency_ms"], " contended": contended})


NOTE = (
    "Test accuracy (mean ± std over seeds) of each pruned variant before and after the same "
    "fine-tuning budget; the dense row is the control, fine-tuned with that budget too. Achieved "
    "drop and compression count nonzero parameters against the dense model; effective FLOPs skip "
    "zero weights; speed-up is dense FLOPs / effective FLOPs."
)


def footnotes(rows: list[dict[str, Any]]) -> str:
    """What the table's "prunable weights" targets and "n/a" rows mean, for the models they
    concern."""
    notes = []
    partial = {r["model"]: r for r in rows if r.get("target_of") == PRUNABLE_WEIGHTS}
    if partial:
        counts = "; ".join(
            f"{model}: {r['prunable_weights']:,} of {r['dense_params']:,}"
            for model, r in partial.items()
        )
        notes.append(
            f"**Targets of {PRUNABLE_WEIGHTS}**: where the weights a method may prune ({counts} "
            "parameters) are fewer than the target asks of the whole model, it removes the "
            "target's share of those weights instead; achieved % is always of all parameters. "
            "Set `prune_classifier = true` under `[pruning]` to let the unstructured methods "
            "prune the final classifier too."
        )
    for reason in sorted({r["reason"] for r in rows if "reason" in r}):
        notes.append(f"**{NOT_APPLICABLE}**: not applicable, {reason}.")
    return "".join(f"\n\n{note}" for note in notes)


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    rows = summarize(results)
    runs = results["runs"]
    table = Table("pruning", _table_rows(rows), key=("model", "method", "target %"), note=NOTE)
    text = (
        f"## {results['suite']['name']}: accuracy against parameters removed\n\n"
        f"{context_line(results)}\n\n{NOTE}\n\n"
        + markdown_table(table.rows)
        + footnotes(rows)
        + contention_section(runs)
        + failures_section(runs)
        + "\n"
    )
    files = plot_pruning(rows, plots_dir) if plots_dir else []
    for path in files:
        text += f"\n![{path.stem}]({path.name})\n"
    return Report(markdown=text, files=files, tables=[table])
