"""The ``pruning`` procedure's report: accuracy against parameters removed, per model, method
and target, seeds aggregated; read only from stored results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.planning.protocol import Report, Table
from harness.reporting.cells import Cell
from harness.reporting.plots import plot_pruning
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
    """One record per model x dataset x method x target, seeds aggregated (numbers, not text)."""
    rows = []
    for (model, dataset, method, target), members in group(
        with_latency(results["runs"]), _key
    ).items():
        ok = [r["metrics"] for r in members if r["status"] == "ok"]
        if not ok:
            rows.append(
                {
                    "model": model,
                    "dataset": dataset,
                    "method": method,
                    "target": target,
                    "seeds": 0,
                    "runs": len(members),
                    "statuses": sorted({r["status"] for r in members}),
                }
            )
            continue
        first = ok[0]
        latencies = [m["latency"] for m in ok if "latency" in m]
        after = [m["accuracy_after"] for m in ok]
        before = [m["accuracy_before"] for m in ok if m["accuracy_before"] is not None]
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "method": method,
                "target": target,
                "structure": first.get("structure", "dense (control)"),
                "achieved": mean_std(m["achieved_drop"] for m in ok)[0],
                "params_total": first["params_total"],
                "params_nonzero": first["params_nonzero"],
                "compression": mean_std(m["compression"] for m in ok)[0],
                "flops": first["flops"],
                "flops_effective": first["flops_effective"],
                "speedup": mean_std(m["speedup"] for m in ok)[0],
                "latency_ms": mean_std(m["median_ms"] for m in latencies)[0] if latencies else None,
                "latency_contended": any(contended(m) for m in latencies),
                "latency_batch": latencies[0]["batch_size"] if latencies else None,
                "device": results["environment"].get("device"),
                "before": before,
                "after": after,
                "seeds": len(ok),
                "runs": len(members),
            }
        )
    return rows


def _table_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    control = {(r["model"], r["dataset"]): r for r in rows if r["method"] == "dense" and r["seeds"]}
    lines = []
    for r in rows:
        if not r["seeds"]:
            lines.append(
                {
                    "model": r["model"],
                    "method": r["method"],
                    "target %": f"{r['target']:g}",
                    "acc after FT %": f"{'/'.join(r['statuses'])} ({r['runs']} runs)",
                }
            )
            continue
        base = control.get((r["model"], r["dataset"]))
        delta = (100 * (mean_std(r["after"])[0] - mean_std(base["after"])[0])) if base else None
        lines.append(
            {
                "model": r["model"],
                "method": r["method"],
                "structure": r["structure"],
                "target %": f"{r['target']:g}",
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
                "Δ vs dense pp": "—"
                if delta is None or r["method"] == "dense"
                else f"{delta:+.1f}",
                "seeds": r["seeds"],
            }
        )
    return lines


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


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    rows = summarize(results)
    runs = results["runs"]
    table = Table("pruning", _table_rows(rows), key=("model", "method", "target %"), note=NOTE)
    text = (
        f"## {results['suite']['name']}: accuracy against parameters removed\n\n"
        f"{context_line(results)}\n\n{NOTE}\n\n"
        + markdown_table(table.rows)
        + contention_section(runs)
        + failures_section(runs)
        + "\n"
    )
    files = plot_pruning(rows, plots_dir) if plots_dir else []
    for path in files:
        text += f"\n![{path.stem}]({path.name})\n"
    return Report(markdown=text, files=files, tables=[table])
