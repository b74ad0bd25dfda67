"""Results as tidy pandas DataFrames: one row per run, and one row per run and epoch.

:func:`runs_frame` flattens each run record. Identification first (``run``, ``index``,
``procedure``, ``status``), then its configuration (``model``, ``dataset``, ``seed`` and the
other scalar keys; nested options as ``model.<key>``, ``dataset.<key>``, ``train.<key>``,
``grid.<key>``), then every scalar metric under its own name, nested metric records as
``<metric>.<key>``. Timing records (``{"unit": "s", "samples": [...], ...}``) give their
statistics as numbers in seconds: ``forward.median_s``, ``forward.iqr_s``, ..., ``forward.n``.
Lists (per-epoch histories, raw samples, confusion matrices) are left to
:func:`history_frame` and to the results file. Columns get pandas' nullable dtypes
(``Int64``, ``Float64``, ``boolean``, ``string``), so a missing value never turns a column of
counts into floats.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

TIMING_STATS = ("median", "mean", "std", "iqr", "p10", "p25", "p75", "p90", "min", "max")
IDENTITY = ("run", "model", "dataset", "seed")


def runs_frame(results: dict[str, Any]) -> pd.DataFrame:
    """One row per run of a results document (see the module for the columns)."""
    rows = [run_row(run) for run in results["runs"]]
    return _typed(pd.DataFrame(rows))


def run_row(run: dict[str, Any]) -> dict[str, Any]:
    config, metrics = run.get("config", {}), run.get("metrics") or {}
    row: dict[str, Any] = {
        "run": run["id"],
        "index": run.get("index"),
        "procedure": run.get("procedure"),
        "status": run["status"],
    }
    for key, value in config.items():
        if key in ("model_options", "dataset_options", "train", "grid_point"):
            prefix = {"grid_point": "grid"}.get(key, key.removesuffix("_options"))
            row.update(_flat(value, prefix))
        else:
            row.update(_flat(value, key))
    if isinstance(metrics.get("train_config"), dict):  # the effective training settings
        row.update(_flat(metrics["train_config"], "train"))
    for key, value in metrics.items():
        if key in ("train_config", "task"):
            continue
        row.update(_flat(value, key))
    if isinstance(metrics.get("task"), dict):
        row["task"] = metrics["task"].get("name")
    row["wall_time_s"] = run.get("wall_time_s")
    row["error"] = run.get("error")
    return row


def history_frame(results: dict[str, Any]) -> pd.DataFrame:
    """One row per run and epoch of every run that kept a per-epoch history: ``run``,
    ``model``, ``dataset``, ``seed``, the run's ``grid.<key>`` values, then the epoch's record
    (``epoch``, ``train_loss``, ``val_loss``, ``val_accuracy``, ``seconds``, ...)."""
    rows = []
    for run in results["runs"]:
        history = (run.get("metrics") or {}).get("history") or []
        if not history:
            continue
        config = run.get("config", {})
        ids = {"run": run["id"], **{k: config.get(k) for k in IDENTITY[1:]}}
        ids.update(_flat(config.get("grid_point") or {}, "grid"))
        rows += [{**ids, **entry} for entry in history]
    columns = [*IDENTITY, "epoch"]
    return _typed(pd.DataFrame(rows, columns=None if rows else columns))


def _flat(value: Any, name: str) -> dict[str, Any]:
    """A scalar under ``name``; a dict's scalars as ``name.key`` (timing statistics as
    ``name.<stat>_s``); lists are left out."""
    if isinstance(value, dict):
        if value.get("unit") == "s" and "samples" in value:
            return _timing(value, name)
        flat: dict[str, Any] = {}
        for key, inner in value.items():
            flat.update(_flat(inner, f"{name}.{key}"))
        return flat
    if isinstance(value, (list, tuple)):
        return {}
    return {name: value}


def _timing(record: dict[str, Any], name: str) -> dict[str, Any]:
    flat = {f"{name}.{stat}_s": record.get(stat) for stat in TIMING_STATS}
    flat[f"{name}.n"] = record.get("n", len(record["samples"]))
    for key, value in record.items():
        if key in TIMING_STATS or key in ("n", "unit", "samples"):
            continue
        flat.update(_flat(value, f"{name}.{key}"))
    return flat


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable dtypes; a column that mixes text and numbers stays ``object``."""
    return frame.convert_dtypes()
