"""``bench rerun``: repeat one recorded run exactly and compare its numbers with the original.

A run's record holds its procedure and full configuration (seed included); the results file's
``execution`` holds the device, thread count, ``--deterministic`` and plugins it ran with. That
is all a rerun needs. The files the run received from the runs it needs (a pruned variant's dense
checkpoint) are sent to it again from the original output directory (for files written before
runs recorded what they need: everything in its ``checkpoints/``), so that a run that starts from
such a file starts from the same one.
"""

from __future__ import annotations

import math
import re
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.data import DataContext
from harness.devices import resolve_device
from harness.errors import BenchError, UnknownNameError
from harness.execution.jobs import needed_files
from harness.execution.runner import RunPolicy, job_maker, open_executor, recorded_execution
from harness.execution.scheduler import run_all
from harness.planning.protocol import RunContext
from harness.planning.suite_files import Run
from harness.registry.specs import Registry
from harness.results.environment import capture_environment
from harness.results.store import RESULTS_NAME, ResultsStore, atomic_write, results_path

TOLERANCE = 1e-6
# Numbers that depend only on the seed and the code: every task's metrics (accuracies and
# confusion matrices, losses, RMSE/MAE/R², bits and perplexity), counts, FLOPs, and the
# regularization studies' weight statistics and stopping epochs.
_COMPARED = re.compile(
    r"accuracy|confusion|loss|rmse|mae|r2|bits_per|perplexity"
    r"|params|flops|drop|compression|speedup|width|gap|weight_l[12]|near_zero"
    r"|^epochs?$|_epoch$"
)
# Timings are never the same twice.
_TIMING = re.compile(r"seconds|time|latency|memory|per_s$")


CONTEXT_KEYS = ("torch", "python", "device_name", "git_commit")


@dataclass
class Rerun:
    original: dict[str, Any]
    record: dict[str, Any]
    store: ResultsStore
    context_changes: dict[str, tuple[Any, Any]]  # environment facts that differ: (then, now)

    @property
    def before(self) -> dict[str, float]:
        return comparable(self.original["metrics"])

    @property
    def after(self) -> dict[str, float]:
        return comparable(self.record["metrics"])

    @property
    def differences(self) -> list[tuple[str, float | None, float | None]]:
        return differences(self.before, self.after)

    @property
    def reproduced(self) -> bool:
        """Same status, and every compared metric within :data:`TOLERANCE`."""
        return self.record["status"] == self.original["status"] and not self.differences


def find_run(results: dict[str, Any], run_id: str) -> dict[str, Any]:
    """A recorded run by id (``003-lenet5-digits-s0``), index (``3``) or configuration hash."""
    for record in results["runs"]:
        if run_id in (record["id"], record["hash"], str(record.get("index"))):
            return record
    raise UnknownNameError("run", run_id, [r["id"] for r in results["runs"]])


def rerun(
    results: dict[str, Any],
    source: Path,
    run_id: str,
    registry: Registry,
    *,
    out_dir: Path,
    command: list[str],
    data_root: Path | None = None,
    isolate: bool = False,
    run_timeout: float | None = None,
) -> Rerun:
    """Execute the recorded run ``run_id`` of ``results`` (read from ``source``) again, into a new
    results file in ``out_dir``, on the device and with the settings it ran with."""
    original = find_run(results, run_id)
    if original["status"] == "skipped":
        raise BenchError(
            f"run {original['id']} was not run ({original['error']}); repeat the run it needs, "
            "or finish the suite with bench run --resume"
        )
    execution = recorded_execution(results)
    device = resolve_device(execution["device"] or "cpu")
    policy = RunPolicy.of(
        isolate=isolate,
        run_timeout=run_timeout,
        deterministic=execution["deterministic"],
        plugins=tuple(execution.get("plugins", ())),
    )
    root = execution.get("data_root")
    ctx = RunContext(
        registry=registry,
        device=device,
        data=DataContext(data_root=data_root or (Path(root) if root else None)),
        out_dir=out_dir,
    )
    environment = capture_environment(device)
    run = Run(original.get("index", 0), original["procedure"], original["config"])
    # the run's own thread count where it was recorded (a timing run alone may have had more)
    threads = original.get("placement", {}).get("threads") or execution["threads"]
    with closing(open_executor(registry, policy, threads)) as executor:
        store = ResultsStore.create(
            out_dir / RESULTS_NAME,
            command=command,
            suite=results["suite"],
            environment=environment,
            execution={
                **execution,
                "threads": executor.threads,
                "executor": executor.describe(),
            },
        )
        store.data["rerun_of"] = {"results": str(results_path(source)), "run": original["id"]}
        inputs = received_files(results, original, results_path(source).parent)
        run_all([run], store, executor, job_maker(ctx, policy, executor, inputs))
    for name, content in inputs.items():  # beside the rerun's results, for a rerun of it
        atomic_write(out_dir / name, lambda handle, c=content: handle.write(c))
    record = {**store.runs[0], "needs": original.get("needs", [])}
    store.add(record)
    store.finish("complete")
    then = results["environment"]
    changes = {
        k: (then.get(k), environment[k]) for k in CONTEXT_KEYS if then.get(k) != environment[k]
    }
    return Rerun(original, record, store, changes)


def received_files(
    results: dict[str, Any], original: dict[str, Any], source: Path
) -> dict[str, bytes]:
    """The files the run ``original`` received from the runs it needed, read from ``source``
    (a record written before runs listed their needs stands for everything in ``checkpoints/``)."""
    by_index = {record.get("index"): record for record in results["runs"]}
    needs = original.get("needs")
    return needed_files(source, [None] if needs is None else [by_index.get(i) for i in needs])


def comparable(metrics: Any, path: str = "") -> dict[str, float]:
    """The numbers of ``metrics`` that a repeat must reproduce, by dotted path
    (``history.0.val_loss``); timings are left out."""
    if isinstance(metrics, dict):
        items = metrics.items()
    elif isinstance(metrics, list):
        items = enumerate(metrics)
    else:
        parts = path.split(".")
        numeric = isinstance(metrics, (int, float)) and not isinstance(metrics, bool)
        wanted = any(_COMPARED.search(p) for p in parts if not p.isdigit())
        timing = any(_TIMING.search(p) for p in parts)
        return {path: float(metrics)} if numeric and wanted and not timing else {}
    found: dict[str, float] = {}
    for key, value in items:
        found.update(comparable(value, f"{path}.{key}" if path else str(key)))
    return found


def differences(
    before: dict[str, float], after: dict[str, float], tolerance: float = TOLERANCE
) -> list[tuple[str, float | None, float | None]]:
    """The metrics that differ by more than ``tolerance`` (or exist on one side only)."""
    return [
        (key, before.get(key), after.get(key))
        for key in sorted(before.keys() | after.keys())
        if key not in before
        or key not in after
        or not math.isclose(before[key], after[key], rel_tol=0, abs_tol=tolerance)
    ]
