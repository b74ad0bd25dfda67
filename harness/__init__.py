"""bench: a plugin-based benchmarking harness for PyTorch models.

Everything a plugin needs is importable from here::

    from harness import hookimpl, ModelSpec, Option

    @hookimpl
    def register_models(register):
        register(ModelSpec("tiny", "a tiny MLP", build=build_tiny))

Each hook is documented in :mod:`harness.registry.hookspecs`. The names below are imported on
first use, so ``import harness`` stays cheap (``bench --help`` never imports torch).
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy

from harness.registry.moved_paths import install as _install_moved_paths

__version__ = "0.1.0"
DISTRIBUTION = "bench-harness"  # the name on the package index (`pip install bench-harness`)
ENTRY_POINT_GROUP = "bench"  # where installed packages register their plugins

hookimpl = pluggy.HookimplMarker("bench")

# name -> module that defines it; resolved lazily by __getattr__.
_PUBLIC = {
    # what plugins register
    "ModelSpec": "harness.registry.specs",
    "DatasetSpec": "harness.registry.specs",
    "SuiteSpec": "harness.registry.specs",
    "Registry": "harness.registry.specs",
    "ExecutorSpec": "harness.execution.executor",
    "ExecutorRequest": "harness.execution.executor",
    "SinkSpec": "harness.results.sinks",
    "SinkContext": "harness.results.sinks",
    "suite_from_file": "harness.planning.suite_files",
    # tasks
    "Task": "harness.tasks",
    "Metric": "harness.tasks",
    "DataInfo": "harness.tasks",
    "HIGHER": "harness.tasks",
    "LOWER": "harness.tasks",
    "check_same_shape": "harness.tasks",
    "output_shape": "harness.tasks",
    "bits": "harness.tasks",
    # data
    "DataContext": "harness.data",
    "Splits": "harness.data",
    "TensorSplit": "harness.data",
    "VAL_FRACTION": "harness.data",
    "carve_validation": "harness.data",
    "standardize": "harness.data",
    "stratified_splits": "harness.data",
    # options and errors
    "Option": "harness.options",
    "BenchError": "harness.errors",
    "UnknownNameError": "harness.errors",
    "OptionError": "harness.errors",
    "DuplicateNameError": "harness.errors",
    "SpecError": "harness.errors",
    "SuiteError": "harness.errors",
    "DivergedError": "harness.errors",
    # procedures and what each run gets
    "Procedure": "harness.planning.protocol",
    "RunContext": "harness.planning.protocol",
    "Report": "harness.planning.protocol",
    "Table": "harness.planning.protocol",
    "Run": "harness.planning.suite_files",
    "Suite": "harness.planning.suite_files",
    "train_and_test": "harness.training.steps",
    # executors' side of a run
    "Job": "harness.execution.jobs",
    "Outcome": "harness.execution.jobs",
    "WorkerLost": "harness.execution.jobs",
    "perform": "harness.execution.jobs",
    # loading plugins from Python
    "Plugins": "harness.registry.loading",
    "load_plugins": "harness.registry.loading",
}

__all__ = ["__version__", "hookimpl", *_PUBLIC]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value  # resolved once
        return value
    raise AttributeError(f"module 'harness' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


def installed_entry_points(group: str = ENTRY_POINT_GROUP) -> list[tuple[EntryPoint, str]]:
    """The entry points of ``group`` by name, each with its distribution's name ("?" if none).

    ``EntryPoint.dist.name`` parses the distribution's metadata anew at every call (tens of
    milliseconds for a few plugins, paid by every bench process and every worker), so each
    distribution is read once here."""
    names: dict[int, str] = {}
    found = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.dist is None:
            found.append((ep, "?"))
            continue
        if id(ep.dist) not in names:
            names[id(ep.dist)] = ep.dist.metadata["Name"]
        found.append((ep, names[id(ep.dist)]))
    return found


_install_moved_paths()
