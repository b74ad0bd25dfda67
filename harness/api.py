"""bench from Python: ``bench run``, ``bench time``, ``bench report`` and ``bench compare`` over
the same library calls the CLI makes, with the same validation, raising instead of exiting::

    from harness import api as bench

    results = bench.run("quickstart", quick=True)
    results.frame()        # one row per run, typed columns
    results.history()      # one row per run and epoch
    results                # in Jupyter: the report's tables

Every error a user can cause is a :class:`harness.options.BenchError` with the message the CLI
prints (unknown names list what exists); Ctrl-C raises
:class:`harness.execution.runner.SuiteInterrupted` with every finished run saved. The progress bar
shows on a terminal and, with ``ipywidgets`` installed (``pip install 'bench-harness[notebook]'``),
as a widget in Jupyter; ``quiet=True`` hides it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import pandas as pd

from harness.comparing.matching import Comparison, compare_files
from harness.comparing.output import table_rows
from harness.comparing.output import to_markdown as comparison_markdown
from harness.comparing.verdicts import Rules
from harness.data import DataContext
from harness.errors import BenchError, DuplicateNameError
from harness.execution.runner import RunPolicy, default_out_dir, run_suite
from harness.measuring.workload import timing_suite
from harness.planning.overrides import Overrides, load_suite_with
from harness.planning.protocol import Report
from harness.planning.suite_files import Suite
from harness.registry.loading import Plugins, load_plugins, resolve_plugin_names
from harness.registry.specs import Registry
from harness.reporting import FORMATS
from harness.reporting.cells import numeric_rows
from harness.reporting.render import render
from harness.results.frames import history_frame, runs_frame
from harness.results.sinks import requested_sinks
from harness.results.store import load_results, results_path
from harness.training.checkpoints import continuing


@dataclass
class Results:
    """One results file: its document (``data``), where it is (``path``), and its report.

    ``frame()`` and ``history()`` are tidy DataFrames (:mod:`harness.results.frames`); ``tables()``
    are the report's tables with numbers as numbers; ``markdown`` is the report as ``bench run``
    prints it, which is also how Jupyter shows the object."""

    data: dict[str, Any]
    path: Path | None = None
    plugins: tuple[str, ...] = ()
    _report: Report | None = field(default=None, repr=False)

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.data["runs"]

    @property
    def status(self) -> str:
        return self.data.get("status", "")

    @property
    def failures(self) -> list[dict[str, Any]]:
        """The runs that did not finish ``ok``, with their status and error."""
        return [r for r in self.runs if r["status"] != "ok"]

    def frame(self) -> pd.DataFrame:
        return runs_frame(self.data)

    def history(self) -> pd.DataFrame:
        return history_frame(self.data)

    @property
    def report(self) -> Report:
        """The procedure's report, rendered from the stored results (nothing is re-run)."""
        if self._report is None:
            procedure = _registry(self.plugins).procedures.get(self.data["suite"]["procedure"])
            self._report = procedure.report(self.data, None)
        return self._report

    def tables(self) -> dict[str, pd.DataFrame]:
        """The report's tables by name, numeric cells as numbers (as ``--format csv``)."""
        return {
            t.name: pd.DataFrame(numeric_rows(t.rows)).convert_dtypes() for t in self.report.tables
        }

    @property
    def markdown(self) -> str:
        return self.report.markdown

    @property
    def plots(self) -> list[Path]:
        return list(self.report.files)

    def _repr_markdown_(self) -> str:
        return self.markdown

    def __repr__(self) -> str:
        ok = len(self.runs) - len(self.failures)
        where = f" at {self.path}" if self.path else ""
        return f"<Results {self.data['suite']['name']}{where}: {ok}/{len(self.runs)} runs ok>"


@dataclass(frozen=True)
class Compared:
    """A comparison of two result sets (:mod:`harness.comparing.matching`): ``exit_code`` is the
    verdict ``bench compare`` exits with (0 fine, 1 a regression, 3 cannot vouch)."""

    comparison: Comparison

    @property
    def exit_code(self) -> int:
        return self.comparison.exit_code

    @property
    def regressions(self) -> list[Any]:
        return [row for row in self.comparison.rows if row.fails]

    def frame(self) -> pd.DataFrame:
        """One row per compared metric, as the markdown shows it."""
        return pd.DataFrame(table_rows(self.comparison.rows))

    @property
    def markdown(self) -> str:
        return comparison_markdown(self.comparison)

    def _repr_markdown_(self) -> str:
        return self.markdown


def run(
    suite: str | Path | None = None,
    *,
    models: Sequence[str] = (),
    datasets: Sequence[str] = (),
    model_options: Mapping[str, Any] | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    train: Mapping[str, Any] | None = None,
    seeds: Sequence[int] = (),
    settings: Mapping[str, Any] | None = None,
    quick: bool = False,
    from_checkpoint: str | Path | None = None,
    device: str | None = None,
    threads: int | None = None,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    data_root: str | Path | None = None,
    download: bool = False,
    policy: RunPolicy | None = None,
    tensorboard: str | Path | None = None,
    sinks: Sequence[str] = (),
    plugins: Sequence[str] = (),
    quiet: bool = False,
    command: Sequence[str] | None = None,
) -> Results:
    """``bench run``: a suite (a name or a TOML file), or ``models`` x ``datasets`` trained and
    tested. ``train`` holds training settings (``{"epochs": 3, "lr": 0.05}``), ``settings`` the
    suite procedure's (``{"targets": [50, 75]}``); ``policy`` says where runs execute
    (``RunPolicy.of(jobs=2)``)."""
    if out and resume:
        raise BenchError("resume continues in its directory; it cannot be combined with out")
    names = resolve_plugin_names(plugins)
    registry = _registry(tuple(names))
    overrides = Overrides(
        models=list(models),
        datasets=list(datasets),
        model_options=_texts(model_options),
        dataset_options=_texts(dataset_options),
        train={k: v for k, v in (train or {}).items() if v is not None},
        seeds=list(seeds),
        settings={**_texts(settings), **({"quick": "true"} if quick else {})},
        device=device,
    )
    if from_checkpoint:
        if suite:
            raise BenchError("from_checkpoint continues one run: give it without a suite")
        overrides = continuing(Path(from_checkpoint), overrides)
    parsed = load_suite_with(str(suite) if suite else None, registry, overrides)
    out_dir = Path(resume or out or default_out_dir(parsed.name))
    return _execute(
        parsed,
        registry,
        names,
        out_dir=out_dir,
        resume=resume is not None,
        data=DataContext(data_root=Path(data_root) if data_root else None, download=download),
        threads=threads,
        policy=policy,
        sinks=requested_sinks(tensorboard, sinks),
        quiet=quiet,
        command=command,
    )


def time(
    models: Sequence[str],
    *,
    datasets: Sequence[str] = (),
    model_options: Mapping[str, Any] | None = None,
    dataset_options: Mapping[str, Any] | None = None,
    batch_sizes: Sequence[int] = (),
    modes: Sequence[str] = (),
    device: str | None = None,
    threads: int | None = None,
    settings: Mapping[str, Any] | None = None,
    quick: bool = False,
    out: str | Path | None = None,
    data_root: str | Path | None = None,
    policy: RunPolicy | None = None,
    tensorboard: str | Path | None = None,
    sinks: Sequence[str] = (),
    plugins: Sequence[str] = (),
    quiet: bool = False,
    command: Sequence[str] | None = None,
) -> Results:
    """``bench time``: forward, backward, training steps and an epoch of each model, timed
    alone. ``settings`` takes the rest of the timing loop (``warmup``, ``repeats``,
    ``min_time``, ``max_time``, ``amp``, ``profile``, ...), as the throughput suite's table."""
    if isinstance(models, str):
        models = [models]
    names = resolve_plugin_names(plugins)
    registry = _registry(tuple(names))
    asked = {
        "batch_sizes": tuple(batch_sizes),
        "modes": tuple(modes),
        "devices": (device,) if device else (),
        "quick": quick or None,
        **(settings or {}),
    }
    overrides = Overrides(
        models=list(models),
        datasets=list(datasets),
        model_options=_texts(model_options),
        dataset_options=_texts(dataset_options),
        settings={k: v for k, v in asked.items() if v is not None and v != ()},
    )
    suite = timing_suite(None, overrides, registry, default_name="-".join(["time", *models]))
    return _execute(
        suite,
        registry,
        names,
        out_dir=Path(out or default_out_dir(suite.name)),
        data=DataContext(data_root=Path(data_root) if data_root else None),
        threads=threads,
        policy=policy,
        sinks=requested_sinks(tensorboard, sinks),
        quiet=quiet,
        command=command,
    )


def load(path: str | Path, plugins: Sequence[str] = ()) -> Results:
    """A results file, or a directory holding ``results.json``; a file that is not bench results
    is a :class:`BenchError` naming it."""
    names = tuple(resolve_plugin_names(plugins))
    return Results(load_results(path), results_path(path), names)


def report(*paths: str | Path, format: str = "markdown", plugins: Sequence[str] = ()) -> str:
    """``bench report``: the tables of one or more results files, side by side, as markdown,
    CSV or JSON (numbers as numbers in the last two)."""
    if format not in FORMATS:
        raise BenchError(f"unknown report format '{format}'; known: {', '.join(FORMATS)}")
    if not paths:
        raise BenchError("report needs at least one results file")
    return render(list(paths), _registry(tuple(resolve_plugin_names(plugins))), format)


def compare(
    baseline: str | Path,
    candidate: str | Path,
    *,
    thresholds: Sequence[str] = (),
    metrics: Sequence[str] = (),
    strict: bool = False,
) -> Compared:
    """``bench compare``: each metric of the candidate judged against the baseline, with the
    thresholds and globs the CLI takes (``["5%", "train_step*=3%", "1pp"]``)."""
    if isinstance(thresholds, str) or isinstance(metrics, str):
        raise BenchError("thresholds and metrics are lists of strings, e.g. thresholds=['5%']")
    rules = Rules.parse(thresholds, metrics, strict)
    return Compared(compare_files(baseline, candidate, rules))


def plugins(extra: Sequence[str] = ()) -> Plugins:
    """Every installed plugin and the ``extra`` ones (modules or ``.py`` files), as
    ``bench list plugins`` sees them."""
    return _loaded(tuple(resolve_plugin_names(extra)))


@lru_cache(maxsize=8)
def _loaded(names: tuple[str, ...]) -> Plugins:
    return load_plugins(names, strict=False)


def _registry(names: tuple[str, ...]) -> Registry:
    loaded = _loaded(names)
    if loaded.conflicts:
        raise DuplicateNameError("; ".join(loaded.conflicts))
    return loaded.registry


def _execute(
    suite: Suite,
    registry: Registry,
    names: Sequence[str],
    *,
    policy: RunPolicy | None,
    command: Sequence[str] | None,
    **run: Any,
) -> Results:
    policy = policy or RunPolicy()
    if names:
        policy = replace(policy, plugins=tuple(names))
    outcome = run_suite(
        suite,
        registry,
        policy=policy,
        command=list(command or ["python", *sys.argv[:1]]),
        **run,
    )
    return Results(outcome.store.data, outcome.store.path, tuple(names), outcome.report)


def _texts(values: Mapping[str, Any] | None) -> dict[str, str]:
    """Python values as the command line would give them: lists comma-separated, booleans
    ``true``/``false``; the options then parse and check them as they do for the CLI."""
    texts = {}
    for key, value in (values or {}).items():
        if isinstance(value, bool):
            texts[key] = "true" if value else "false"
        elif isinstance(value, (list, tuple)):
            texts[key] = ",".join(map(str, value))
        else:
            texts[key] = str(value)
    return texts
