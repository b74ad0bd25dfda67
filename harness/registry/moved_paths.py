"""Import paths of bench's plugin API that moved when ``harness/`` was split into stages.

Plugins written before the move (``from harness.registry import ModelSpec``, ``from
harness.suites import suite_from_file``, ...) keep working: each old module path is served by a
stand-in module that forwards every attribute to the module's new home and warns once, with a
:class:`DeprecationWarning` pointing at the new path. New code imports from ``harness``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import types
import warnings
from importlib import import_module
from typing import Any

# old module path -> new module path
MOVED_MODULES = {
    "harness.hookspecs": "harness.registry.hookspecs",
    "harness.plugins": "harness.registry.loading",
    "harness.spec_checks": "harness.registry.checks",
    "harness.scaffold": "harness.registry.skeleton",
    "harness.suites": "harness.planning.suite_files",
    "harness.suite_overrides": "harness.planning.overrides",
    "harness.procedure": "harness.planning.protocol",
    "harness.run_configs": "harness.planning.run_configs",
    "harness.runner": "harness.execution.runner",
    "harness.scheduling": "harness.execution.scheduler",
    "harness.jobs": "harness.execution.jobs",
    "harness.interrupts": "harness.execution.interrupts",
    "harness.executors": "harness.execution.executor",
    "harness.rerun": "harness.execution.rerun",
    "harness.train_config": "harness.planning.train_settings",
    "harness.experiment": "harness.training.steps",
    "harness.checkpoints": "harness.training.checkpoints",
    "harness.augmentation": "harness.training.augmentation",
    "harness.layers": "harness.training.layers",
    "harness.timing": "harness.measuring.timer",
    "harness.measurement": "harness.measuring.workload",
    "harness.stats": "harness.measuring.summary",
    "harness.memory": "harness.measuring.memory",
    "harness.contention": "harness.measuring.contention",
    "harness.profiling": "harness.measuring.profiler",
    "harness.flops": "harness.measuring.flops",
    "harness.environment": "harness.results.environment",
    "harness.frames": "harness.results.frames",
    "harness.sinks": "harness.results.sinks",
    "harness.report": "harness.reporting.tables",
    "harness.cells": "harness.reporting.cells",
    "harness.plots": "harness.reporting.plots",
    "harness.compare": "harness.comparing.matching",
    "harness.verdicts": "harness.comparing.verdicts",
    "harness.compare_render": "harness.comparing.output",
}

# names that left a module which still exists: (old module, name) -> new module
MOVED_NAMES = {
    ("harness.registry", "ModelSpec"): "harness.registry.specs",
    ("harness.registry", "DatasetSpec"): "harness.registry.specs",
    ("harness.registry", "SuiteSpec"): "harness.registry.specs",
    ("harness.registry", "Registry"): "harness.registry.specs",
    ("harness.registry", "Collection"): "harness.registry.specs",
    ("harness.registry", "DuplicateNameError"): "harness.errors",
}


def deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"{old} moved to {new}; import it from there (or from harness) instead",
        DeprecationWarning,
        stacklevel=_caller_level(),
    )


def moved_name(module: str, name: str) -> Any:
    """A module ``__getattr__``'s answer for ``name`` if it moved out of ``module``."""
    new = MOVED_NAMES.get((module, name))
    if new is None:
        raise AttributeError(f"module '{module}' has no attribute '{name}'")
    deprecated(f"{module}.{name}", f"{new}.{name}")
    return getattr(import_module(new), name)


def _caller_level() -> int:
    """The stack level of the first frame outside this module, the import machinery and a
    module's ``__getattr__``, so that the warning names the plugin's own import line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (
        frame.f_code.co_filename == __file__
        or "importlib" in frame.f_code.co_filename
        or frame.f_code.co_name == "__getattr__"
    ):
        frame, level = frame.f_back, level + 1
    return level


class _Forwarder(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return types.ModuleType(spec.name, f"Moved to {self.new}.")

    def exec_module(self, module: types.ModuleType) -> None:
        deprecated(module.__name__, self.new)
        target = import_module(self.new)
        module.__getattr__ = lambda name: getattr(target, name)  # type: ignore[method-assign]
        module.__dir__ = lambda: dir(target)  # type: ignore[method-assign]


class _MovedPathFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None):
        new = MOVED_MODULES.get(fullname)
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _Forwarder(new))


def install() -> None:
    """Serve the old module paths (once per process)."""
    if not any(isinstance(finder, _MovedPathFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedPathFinder())  # before a stale folder of the old name
