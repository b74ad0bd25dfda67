"""Plugin loading: installed ``bench`` entry points, then modules or files the user names.

Built-in plugins are entry points of this very package, so they load exactly as third-party
plugins do. A plugin that fails to import or to register (or registers a malformed spec) is
reported and the others still load. A name two plugins register is a conflict: an error by
default, or recorded on both plugins for ``bench list plugins`` to show.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pluggy

from harness import ENTRY_POINT_GROUP, installed_entry_points
from harness.errors import BenchError, DuplicateNameError, SpecError
from harness.registry import hookspecs
from harness.registry.specs import Registry

ENV_VAR = "BENCH_PLUGINS"

# hook name -> attribute of Registry that collects what it registers
HOOKS = {
    "register_tasks": "tasks",
    "register_models": "models",
    "register_datasets": "datasets",
    "register_suites": "suites",
    "register_procedures": "procedures",
    "register_pruning_methods": "pruning_methods",
    "register_executors": "executors",
    "register_result_sinks": "sinks",
}


@dataclass
class PluginInfo:
    name: str
    source: str
    status: str = "loaded"  # or "failed", or "conflict" (a name another plugin also registers)
    error: str | None = None
    provides: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """How collections and messages name the plugin: ``plugin 'name' (source)``."""
        return f"plugin '{self.name}' ({self.source})"


@dataclass
class Plugins:
    registry: Registry
    plugins: list[PluginInfo]

    @property
    def failures(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.status == "failed"]

    @property
    def conflicts(self) -> list[str]:
        """Each name registered twice, in words naming both plugins (once, not per plugin)."""
        return list(dict.fromkeys(c for p in self.plugins for c in p.conflicts))


def extra_plugin_names(cli: Sequence[str] = (), environ: dict[str, str] | None = None) -> list[str]:
    """Plugins named with ``--plugin`` and in ``BENCH_PLUGINS`` (comma or path-separator list)."""
    environ = os.environ if environ is None else environ
    from_env = environ.get(ENV_VAR, "").replace(os.pathsep, ",").split(",")
    return [*cli, *(name.strip() for name in from_env if name.strip())]


def load_plugins(
    extra: Sequence[str] = (),
    *,
    entry_point_group: str = ENTRY_POINT_GROUP,
    strict: bool = True,
    hooks: Collection[str] | None = None,
) -> Plugins:
    """Load installed entry points of ``entry_point_group``, then each module or file named.

    A name registered twice raises :class:`DuplicateNameError` naming both plugins; with
    ``strict=False`` the first registration is kept and the conflict is recorded on both
    plugins instead, so that ``bench list plugins`` can still show everything. ``hooks`` limits
    which hooks are called (all by default): ``bench list suites`` calls only
    ``register_suites``, so the built-in models and datasets, which import torch when asked for
    what they register, are never asked.
    """
    manager = pluggy.PluginManager("bench")
    manager.add_hookspecs(hookspecs)
    infos: list[PluginInfo] = []

    for ep, dist in installed_entry_points(entry_point_group):
        info = PluginInfo(name=ep.name, source=f"entry point {ep.value} ({dist})")
        _register(manager, info, infos, ep.load)
    for item in dict.fromkeys(extra):  # a plugin named twice loads once
        info = PluginInfo(name=Path(item).stem if is_plugin_path(item) else item, source=item)
        _register(manager, info, infos, lambda item=item: _import(item))

    registry = Registry()
    _collect(manager, registry, {info.source: info for info in infos}, hooks)
    plugins = Plugins(registry=registry, plugins=infos)
    if strict and plugins.conflicts:
        raise DuplicateNameError("; ".join(plugins.conflicts))
    return plugins


def _register(manager, info: PluginInfo, infos: list[PluginInfo], load) -> None:
    infos.append(info)
    try:
        module = load()
        # Registered by source, which is unique: a user's models.py may sit beside `models`.
        manager.register(module, name=info.source)
    except Exception as exc:  # a broken plugin must not take the others down
        info.status, info.error = "failed", _describe(exc)


def _collect(
    manager: pluggy.PluginManager,
    registry: Registry,
    infos: dict[str, PluginInfo],
    hooks: Collection[str] | None,
) -> None:
    """Call each hook implementation with a ``register`` callback that knows its plugin."""
    by_label = {info.label: info for info in infos.values()}
    for hook_name, attribute in HOOKS.items():
        if hooks is not None and hook_name not in hooks:
            continue
        collection = getattr(registry, attribute)
        for impl in getattr(manager.hook, hook_name).get_hookimpls():
            info = infos[impl.plugin_name]

            def register(item, info=info, collection=collection):
                try:
                    collection.add(item, info.label)
                except DuplicateNameError as clash:  # keep the first; the plugin goes on
                    _conflict(str(clash), info, by_label.get(collection.source(item.name)))
                    return
                info.provides.append(f"{collection.kind} {item.name}")

            try:
                impl.function(register=register)
            except SpecError as exc:  # the message names the spec and the field
                info.status, info.error = "failed", f"{hook_name}: {exc}"
            except Exception as exc:
                info.status, info.error = "failed", f"{hook_name}: {_describe(exc)}"


def _conflict(message: str, *involved: PluginInfo | None) -> None:
    """Record a name clash on every plugin involved (the same plugin may be both)."""
    for info in {id(i): i for i in involved if i is not None}.values():
        info.conflicts.append(message)
        if info.status == "loaded":
            info.status = "conflict"


def is_plugin_path(item: str) -> bool:
    """Whether a plugin named with ``--plugin`` is a file path rather than a module name."""
    return item.endswith(".py") or os.sep in item or "/" in item


def _import(item: str) -> ModuleType:
    if not is_plugin_path(item):
        return importlib.import_module(item)
    path = Path(item).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no plugin file at {path}")
    module_name = f"bench_plugin_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def _describe(exc: BaseException) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" ({Path(frame[0].filename).name}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def resolve_plugin_names(given: Sequence[str], flag: str = "plugin") -> list[str]:
    """The extra plugins ``given`` (and ``BENCH_PLUGINS``): files as absolute paths, so that a
    worker process or a later ``bench rerun`` finds them from anywhere. A file that is not there
    is an error: the user asked for it, so a warning would be easy to miss."""
    names = extra_plugin_names(given)
    for name in names:
        path = Path(name).expanduser()
        if is_plugin_path(name) and not path.is_file():
            named = f"{flag} {name}" if name in given else f"{ENV_VAR} names {name}"
            problem = "a directory, not a .py file" if path.is_dir() else "no such file"
            full = str(path.resolve())
            raise BenchError(f"{named}: {problem}" + (f" ({full})" if full != name else ""))
    return [str(Path(n).expanduser().resolve()) if Path(n).is_file() else n for n in names]
