"""What a suite would run, checked before anything runs: ``bench run --dry-run`` prints it, and
:func:`harness.execution.runner.run_suite` starts from it, so a plan that passes here fails later
only for what running alone can find (a run's own error, a cluster that does not answer)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.data import NO_VALIDATION, DataContext
from harness.devices import resolve_device
from harness.errors import BenchError
from harness.execution.executor import executor_spec
from harness.planning.protocol import Procedure
from harness.planning.suite_files import Run, Suite
from harness.registry.pairing import misfit
from harness.registry.specs import Registry
from harness.results.sinks import check_sinks
from harness.training.steps import check_datasets

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class SuitePlan:
    """The procedure, the runs in plan order, the device and where the runs would execute."""

    procedure: str
    runs: list[Run]
    device: torch.device
    executor: str

    def rows(self) -> list[dict[str, Any]]:
        """One row per run: its index, name, the runs it waits for and whether it runs alone."""
        return [
            {
                "#": run.index,
                "run": run.name,
                "needs": ", ".join(map(str, run.needs)) or "-",
                "alone": "yes" if run.exclusive else "",
            }
            for run in self.runs
        ]


def plan_suite(
    suite: Suite,
    registry: Registry,
    *,
    device: str | None = None,
    data: DataContext | None = None,
    executor: str = "local",
    sinks: tuple[str, ...] | list[str] = (),
) -> SuitePlan:
    """Check the suite as a run would, without training, downloading or connecting to anything:
    its procedure and checkpoint options, the device, that each dataset can be loaded (or may be
    downloaded), the executor and sink names; then plan its runs and check that each run's model
    fits its dataset."""
    procedure = registry.procedures.get(suite.procedure)
    check_checkpoint_options(suite, procedure, registry)
    resolved = resolve_device(device or suite.device)
    check_datasets(suite, registry, data or DataContext())
    executor_spec(registry, executor)
    check_sinks(registry, sinks)
    runs = procedure.plan(suite, registry)
    check_plan(runs)
    check_pairs(runs, registry)
    check_validation(runs, procedure, registry)
    return SuitePlan(procedure.name, runs, resolved, executor)


def check_checkpoint_options(suite: Suite, procedure: Procedure, registry: Registry) -> None:
    """Refuse checkpoint options a procedure would ignore, before any run."""
    tables = [suite.train, *(entry.train for entry in (*suite.models, *suite.datasets))]
    asked = [k for k in ("save_checkpoint", "from_checkpoint") for t in tables if t.get(k)]
    if "from_checkpoint" in asked and suite.source != "command line":
        raise BenchError(
            f"suite file {suite.source}: from_checkpoint continues one run; use "
            "bench run --from-checkpoint PATH --epochs N, without --suite"
        )
    if asked and not procedure.checkpoints:
        able = ", ".join(p.name for p in registry.procedures if p.checkpoints)
        raise BenchError(
            f"procedure '{procedure.name}' does not keep training checkpoints ({asked[0]}); "
            f"these do: {able}"
        )


def check_plan(runs: list[Run]) -> None:
    """Runs are matched by configuration hash (``--resume``), so no two may share one; a run
    may need only runs planned before it (so that needs never go round in a circle)."""
    seen: dict[str, str] = {}
    earlier: set[int] = set()
    for run in runs:
        if run.hash in seen:
            raise BenchError(f"runs {seen[run.hash]} and {run.id} have the same configuration")
        seen[run.hash] = run.id
        if not set(run.needs) <= earlier:
            raise BenchError(
                f"run {run.id} needs runs {sorted(set(run.needs) - earlier)}, which are not "
                "planned before it (a procedure's plan must list what a run needs first)"
            )
        earlier.add(run.index)


def check_pairs(runs: list[Run], registry: Registry) -> None:
    """Refuse, before any run, a model that cannot train on its run's dataset (a task it does not
    support, or inputs its spec says it cannot read): one line for each such pair."""
    problems: dict[str, None] = {}
    for run in runs:
        model, dataset = run.config.get("model"), run.config.get("dataset")
        if model in registry.models and dataset in registry.datasets:
            problem = misfit(registry, model, dataset, run.config.get("dataset_options", {}))
            if problem:
                problems[problem] = None
    if problems:
        raise BenchError("\n".join(problems))


def check_validation(runs: list[Run], procedure: Procedure, registry: Registry) -> None:
    """Refuse a dataset without a validation split (``val_fraction=0``) where something needs
    one: early stopping, or a procedure that selects on validation scores."""
    for run in runs:
        dataset, options = run.config.get("dataset"), run.config.get("dataset_options", {})
        if dataset not in registry.datasets:
            continue
        spec = registry.datasets.get(dataset)
        sizes = spec.describe(spec.resolve(options))["sizes"]
        if not sizes or sizes["val"]:
            continue
        patience = run.config.get("train", {}).get("patience", 0)
        if procedure.selects_on_validation:
            what = f"the {procedure.name} procedure (it selects on validation scores)"
        elif patience:
            what = f"early stopping (patience {patience})"
        else:
            continue
        raise BenchError(NO_VALIDATION.format(what, f"dataset '{dataset}'"))
