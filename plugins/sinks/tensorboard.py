"""The ``tensorboard`` result sink: each run's scalars as TensorBoard event files, and a grid
suite's cells in TensorBoard's HParams dashboard.

``--tensorboard DIR`` writes ``DIR/<results folder>/<run id>/``, so that runs of several
invocations sit side by side under ``tensorboard --logdir DIR`` and ``--resume`` continues the
same folders. Per run (written as the run's record reaches the results file):

- every per-epoch value of the run's history as ``<metric>/<split>`` at its epoch
  (``loss/train``, ``loss/val``, ``accuracy/val``, ...), so a metric's splits share a section;
- its final test metrics (``accuracy/test``, ``loss/test``) at the last epoch;
- each timing (``bench time``, the throughput suite) as ``time/<mode> median ms`` and every
  sample as ``time/<mode> ms`` by sample number, which shows warm-up or drift at a glance.

When the suite ends, if its runs have grid values (a suite with a ``[grid]``, or the
``regularization`` procedure's cells: the procedure's ``hyperparameters``), each finished run
also gets the HParams summaries: its grid values, model, dataset and seed as
hyperparameters, and its final test and validation scalars as the metrics
(``hparams/test_accuracy``, ``hparams/val_loss``, ...).
Profiler traces are not touched: they stay in ``OUT/traces``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import BenchError
from harness.results.sinks import SinkContext

SPLITS = ("train", "val", "test")


def open_sink(context: SinkContext) -> TensorBoardSink:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise BenchError(
            f"--tensorboard needs TensorBoard ({exc}): pip install 'bench-harness[tensorboard]'"
        ) from None
    root = Path(context.target) / context.out_dir.name
    return TensorBoardSink(root, SummaryWriter, context.hyperparameters)


class TensorBoardSink:
    def __init__(
        self,
        root: Path,
        writer_class: type,
        grid_values: Callable[[dict[str, Any]], dict[str, Any]],
    ):
        self.root = root
        self._writer_class = writer_class
        self._grid_values = grid_values

    def record(self, run: dict[str, Any], results: dict[str, Any]) -> None:
        if run["status"] != "ok":
            return
        metrics = run["metrics"]
        writer = self._writer_class(str(self.root / run["id"]))
        try:
            history = metrics.get("history") or []
            for entry in history:
                for key, value in entry.items():
                    if key != "epoch" and _number(value):
                        writer.add_scalar(tag(key), value, entry["epoch"])
            last = history[-1]["epoch"] if history else 0
            for key, value in metrics.items():
                if key.startswith("test_") and _number(value):
                    writer.add_scalar(tag(key), value, last)
            for name, timing in timings(metrics).items():
                writer.add_scalar(f"time/{name} median ms", timing["median"] * 1e3, 0)
                for index, sample in enumerate(timing["samples"]):
                    writer.add_scalar(f"time/{name} ms", sample * 1e3, index)
        finally:
            writer.close()

    def close(self, results: dict[str, Any]) -> None:
        points = {r["id"]: self._grid_values(r["config"]) for r in results["runs"]}
        runs = [r for r in results["runs"] if r["status"] == "ok" and points[r["id"]]]
        if not runs:
            return
        from torch.utils.tensorboard.summary import hparams

        values = {run["id"]: hyperparameters(run["config"], points[run["id"]]) for run in runs}
        names = sorted({name for point in values.values() for name in point})
        domains = {
            name: sorted({point[name] for point in values.values() if name in point}, key=str)
            for name in names
            if all(isinstance(point.get(name), str) for point in values.values())
        }
        metric_tags = sorted({t for run in runs for t in final_metrics(run["metrics"])})
        for run in runs:
            experiment, start, end = hparams(
                values[run["id"]], dict.fromkeys(metric_tags, 0.0), hparam_domain_discrete=domains
            )
            writer = self._writer_class(str(self.root / run["id"]))
            try:
                for summary in (experiment, start, end):
                    writer.file_writer.add_summary(summary)
                for name, value in final_metrics(run["metrics"]).items():
                    writer.add_scalar(name, value, 0)
            finally:
                writer.close()


def tag(key: str) -> str:
    """``val_accuracy`` -> ``accuracy/val``; ``seconds`` -> ``epoch/seconds``."""
    split, _, metric = key.partition("_")
    if split in SPLITS and metric:
        return f"{metric}/{split}"
    return f"epoch/{key}"


def timings(metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The timing records among a run's metrics (``{"unit": "s", "samples": [...], ...}``)."""
    return {
        name: value
        for name, value in metrics.items()
        if isinstance(value, dict) and value.get("unit") == "s" and value.get("samples")
    }


def hyperparameters(config: dict[str, Any], grid: dict[str, Any]) -> dict[str, Any]:
    """A grid run's hyperparameters: its grid values (numbers kept as numbers, ``model.dropout``
    shown as ``dropout``), model, dataset and seed."""
    point = {
        key.split(".")[-1]: value if isinstance(value, (int, float, str, bool)) else str(value)
        for key, value in grid.items()
    }
    return {
        **point,
        "model": config.get("model_label", config.get("model", "")),
        "dataset": config.get("dataset_label", config.get("dataset", "")),
        "seed": config.get("seed", 0),
    }


def final_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The run's final test and validation scalars as the HParams metrics ``hparams/<key>``
    (tags of their own: the final validation value is the restored best epoch's, which the
    per-epoch chart must not gain as an extra point)."""
    return {
        f"hparams/{key}": float(value)
        for key, value in metrics.items()
        if key.startswith(("test_", "val_")) and _number(value)
    }


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
