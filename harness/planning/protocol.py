"""What a suite procedure is, and what each run it executes gets to work with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.data import DataContext
from harness.options import Option
from harness.planning.suite_files import Run, Suite
from harness.registry.specs import Registry


@dataclass
class RunContext:
    """Shared by the runs of one suite: the registry, device, data access and a cache.

    The cache holds what later runs reuse (loaded splits, trained checkpoints); it lives only as
    long as the suite runs.
    """

    registry: Registry
    device: torch.device
    data: DataContext = field(default_factory=DataContext)
    out_dir: Path = Path("results")
    quiet: bool = True
    cache: dict[str, Any] = field(default_factory=dict)
    # Called with each training epoch's record (epoch, losses, accuracies) of the run being
    # executed; the runner points it at the progress bar, so long runs show where they are.
    on_epoch: Callable[[dict[str, float]], None] | None = None
    # Runs already trained in a stacked group (harness.execution.stack_groups), by run name:
    # train_and_test takes a run's trained weights and result from here instead of training it.
    stacked: dict[str, Any] = field(default_factory=dict)


@dataclass
class Table:
    """One table of a report as data, for ``bench report`` (CSV, JSON, side by side).

    ``rows`` hold the cells exactly as the markdown table shows them (a
    :class:`harness.reporting.cells.Cell` also keeps the numbers behind its text, for CSV and JSON);
    column names carry the units. ``key`` names the columns that identify a configuration, so
    that the same table from several results files can be lined up row by row. ``note``
    explains the columns.
    """

    name: str
    rows: list[dict[str, Any]]
    key: tuple[str, ...] = ()
    note: str = ""


@dataclass
class Report:
    """A rendered report: markdown text, the files (plots) written beside it, and its tables as
    data (a procedure that gives none is reported with one generic row per run)."""

    markdown: str
    files: list[Path] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


@dataclass(frozen=True)
class Procedure:
    """A way to run a suite, named by the suite file's ``procedure`` key.

    ``plan`` expands a suite into runs, each naming the earlier runs it ``needs`` (a run whose
    needs are not all ``ok`` is recorded ``skipped``); ``execute`` performs one run and returns
    its metrics (it may raise: the runner records the failure and goes on); ``report`` renders
    stored results, writing plots into ``plots_dir`` when given, and never re-runs anything.
    ``settings`` declares the keys of the suite's ``[<procedure name>]`` table. ``checkpoints``
    says that its runs honour the ``save_checkpoint`` and ``from_checkpoint`` training options
    (they train through :func:`harness.training.steps.train_and_test`). ``hyperparameters`` gives
    the values a run's configuration varies over the suite's grid (by default its
    ``grid_point``; empty for a run outside any grid): TensorBoard's HParams dashboard shows them.
    ``selects_on_validation`` says that its report picks a configuration by validation scores,
    so its datasets must keep a validation split (``val_fraction=0`` is refused). ``stacks``
    says that each run trains one model once, through ``train_and_test`` with nothing prepared,
    so that runs differing in seed or regularization may train together as one stacked model
    (:mod:`harness.execution.stacking`).
    """

    name: str
    description: str
    plan: Callable[[Suite, Registry], list[Run]]
    execute: Callable[[Run, RunContext], dict[str, Any]]
    report: Callable[[dict[str, Any], Path | None], Report]
    settings: Mapping[str, Option] = field(default_factory=dict)
    default_models: list[str] = field(default_factory=list)
    default_datasets: list[str] = field(default_factory=lambda: ["digits"])
    checkpoints: bool = False
    selects_on_validation: bool = False
    stacks: bool = False
    hyperparameters: Callable[[dict[str, Any]], dict[str, Any]] = field(
        default=lambda config: dict(config.get("grid_point") or {})
    )
