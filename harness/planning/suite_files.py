"""Suite files: TOML data naming models, datasets, training options, grids and a procedure.

A suite file is parsed with ``tomllib`` and validated key by key; nothing in it is executed.
Every error names the file and the key. See the README's "Suite files" section for the format.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.devices import resolve_device
from harness.errors import SuiteError, UnknownNameError
from harness.options import Option, resolve_options
from harness.planning.suite_checks import (
    Problems,
    check_keys,
    resolved,
    suite_error,
    typed,
    validated,
)
from harness.planning.train_settings import TRAIN_OPTIONS
from harness.registry.specs import Registry, SuiteSpec

if TYPE_CHECKING:
    from harness.planning.protocol import Procedure

TOP_LEVEL_KEYS = {
    "name",
    "description",
    "procedure",
    "models",
    "datasets",
    "seeds",
    "device",
    "threads",
    "stack",
    "train",
    "model_options",
    "dataset_options",
    "grid",
}


_UNSAFE = re.compile(r"[^A-Za-z0-9._,=+@-]+")


def safe_name(text: str) -> str:
    """``text`` as a single, harmless path component: letters, digits and ``._,=+@-`` only,
    other runs of characters replaced by ``_``, no leading dot (so never ``..``)."""
    return _UNSAFE.sub("_", text).lstrip(".") or "_"


@dataclass(frozen=True)
class Entry:
    """A model or dataset as a suite names it: registry name, display label, options, and
    training options for its runs (over the suite's ``[train]``; a model's over a dataset's)."""

    name: str
    label: str
    options: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    procedure: str
    models: list[Entry]
    datasets: list[Entry]
    seeds: list[int]
    device: str
    train: dict[str, Any]
    grid: dict[str, list[Any]]
    settings: dict[str, Any]
    source: str
    threads: int = 0  # torch CPU threads for the runs; 0: bench's default (--threads wins)
    stack: str = "auto"  # auto: runs that may, train as stacked models; off: each alone (--stack)

    def error(self, key: str, message: str) -> SuiteError:
        """For procedures that check more when they plan: see :func:`suite_error`."""
        return suite_error(self.source, key, message)

    def header(self) -> dict[str, Any]:
        """How the suite is described in the results file."""
        return {
            "name": self.name,
            "description": self.description,
            "procedure": self.procedure,
            "source": self.source,
            "settings": self.settings,
        }


@dataclass(frozen=True)
class Run:
    """One unit of work: a JSON-serialisable configuration and a stable id derived from it.

    ``needs`` holds the indices of earlier runs whose results this one uses (a pruned variant
    its dense checkpoint, a transfer its pretrained model): it runs only once they are ``ok``,
    and receives the files they wrote. ``exclusive`` marks a run that times something: no other
    run executes beside it (:mod:`harness.execution.scheduler`).
    """

    index: int
    procedure: str
    config: dict[str, Any]
    needs: tuple[int, ...] = ()
    exclusive: bool = False

    @property
    def hash(self) -> str:
        """Stable over processes and machines: the configuration, including the seed."""
        text = json.dumps(
            {"procedure": self.procedure, **self.config}, sort_keys=True, default=list
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """The configuration's name, safe to use as a file name (procedures put traces there)."""
        return safe_name(str(self.config.get("name") or f"run{self.index}"))

    @property
    def id(self) -> str:
        return f"{self.index:03d}-{self.name}"


def suite_from_file(path: Path | str) -> SuiteSpec:
    """A :class:`SuiteSpec` for a TOML file; plugins use this to register their suite files."""
    path = Path(path)
    data = read_toml(path)
    return SuiteSpec(
        name=str(data.get("name", path.stem)),
        description=str(data.get("description", "")),
        path=path,
    )


def find_suite(name_or_path: str, registry: Registry) -> Path:
    """A registered suite's file, or a path to a TOML file the user names."""
    candidate = Path(name_or_path).expanduser()
    if name_or_path.endswith(".toml") or candidate.is_file():
        if not candidate.is_file():
            problem = "is not a file" if candidate.exists() else "does not exist"
            raise SuiteError(f"suite file {candidate} {problem}")
        return candidate
    return registry.suites.get(name_or_path).path


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"suite file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"suite file {path} is not UTF-8 text, as TOML must be: {exc}") from None
    except OSError as exc:
        raise SuiteError(f"cannot read suite file {path}: {exc}") from None


def parse_suite(
    data: Mapping[str, Any], registry: Registry, *, source: str, default_name: str = "suite"
) -> Suite:
    """Validate a parsed suite document against the registry. Every problem is reported, in
    one :class:`SuiteError` with a line per problem naming ``source`` and the key; a check that
    depends on a value found wrong (a model's options on its name) is left out."""
    fail = Problems(source)
    procedure_name = fail.attempt(lambda: typed(data, "procedure", str, "accuracy", fail))
    procedure = fail.attempt(partial(_procedure, procedure_name, registry, fail))
    check_keys(data, TOP_LEVEL_KEYS | ({procedure_name} if procedure_name else set()), "", fail)
    defaults = (procedure.default_models, procedure.default_datasets) if procedure else (None,) * 2
    models = _entries(data, "models", registry.models, fail, defaults[0])
    datasets = _entries(data, "datasets", registry.datasets, fail, defaults[1])
    seeds = fail.attempt(lambda: _seeds(data, fail), [0])
    train = fail.attempt(lambda: typed(data, "train", dict, {}, fail), {})
    fail.attempt(lambda: resolved("train", fail, "training", TRAIN_OPTIONS, train))
    grid = fail.attempt(lambda: typed(data, "grid", dict, {}, fail), {})
    grid = _parse_grid(grid, fail)
    if grid is not None and models is not None and datasets is not None:
        _check_grid_values(grid, registry, models, datasets, fail)
    device = fail.attempt(lambda: typed(data, "device", str, "auto", fail), "auto")
    fail.attempt(lambda: validated(lambda: resolve_device(device), "device", fail))
    threads = fail.attempt(lambda: _threads(data, fail), 0)
    stack = fail.attempt(lambda: _stack(data, fail), "auto")
    settings = fail.attempt(partial(_settings, data, procedure, fail)) if procedure else None
    name = fail.attempt(lambda: typed(data, "name", str, default_name, fail))
    description = fail.attempt(lambda: typed(data, "description", str, "", fail))
    fail.raise_found()
    return Suite(
        name=name,
        description=description,
        procedure=procedure_name,
        models=models,
        datasets=datasets,
        seeds=list(seeds),
        device=device,
        train=dict(train),
        grid=grid,
        settings=settings,
        source=source,
        threads=threads,
        stack=stack,
    )


def _procedure(name: str | None, registry: Registry, fail: Problems) -> Procedure | None:
    if name is None:  # not a string: already reported
        return None
    try:
        return registry.procedures.get(name)
    except UnknownNameError as exc:
        raise fail("procedure", str(exc)) from None


def _seeds(data: Mapping[str, Any], fail: Problems) -> list[int]:
    seeds = typed(data, "seeds", list, [0], fail)
    if not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds
    ):
        raise fail("seeds", "expected a non-empty list of non-negative integers")
    if len(set(seeds)) != len(seeds):
        raise fail("seeds", "a seed is listed twice; every run must differ from the others")
    return seeds


def _stack(data: Mapping[str, Any], fail: Problems) -> str:
    stack = typed(data, "stack", str, "auto", fail)
    if stack not in ("auto", "off"):
        raise fail("stack", f"expected 'auto' or 'off', not {stack!r}")
    return stack


def _threads(data: Mapping[str, Any], fail: Problems) -> int:
    threads = typed(data, "threads", int, 0, fail)
    if isinstance(threads, bool) or threads < 0:
        raise fail("threads", "expected a number of torch CPU threads >= 1 (0: bench's default)")
    return threads


def _settings(data: Mapping[str, Any], procedure: Procedure, fail: Problems) -> dict[str, Any]:
    """The procedure's own table (``[pruning]``...), checked against its declared settings."""
    table = typed(data, procedure.name, dict, {}, fail)
    return resolved(procedure.name, fail, f"[{procedure.name}]", procedure.settings, table)


def _entries(data, key: str, collection, fail: Problems, default) -> list[Entry] | None:
    """The models or datasets of a suite, each with its options (over the ``[model_options]``
    or ``[dataset_options]`` table of its name) checked; ``None`` after a problem (recorded) and
    when there are no entries to check (``default`` is ``None``: the procedure is unknown)."""
    raw = data.get(key, default)
    if isinstance(raw, str):
        raw = [raw]
    if raw is None:
        return None
    if not isinstance(raw, list) or not raw:
        return fail.add(key, "expected a non-empty list of names or tables")
    before = len(fail.found)
    names = [item.get("name") if isinstance(item, dict) else item for item in raw]
    shared = fail.attempt(lambda: _shared_options(data, f"{key[:-1]}_options", names, fail), {})
    entries: list[Entry] = []
    for i, item in enumerate(raw):
        entry = _entry(item, f"{key}[{i}]", collection, shared, entries, fail)
        if entry is not None:
            entries.append(entry)
    return entries if len(fail.found) == before else None


def _entry(item, where: str, collection, shared, entries: list[Entry], fail: Problems):
    """One entry of a suite's models or datasets; ``None`` if it cannot be one (recorded)."""
    if isinstance(item, str):
        item = {"name": item}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return fail.add(where, "expected a name or a table with a 'name' key")
    check_keys(item, {"name", "label", "options", "train"}, f"{where}.", fail)
    if item["name"] not in collection:
        known = collection.names()
        return fail.add(
            f"{where}.name", str(UnknownNameError(collection.kind, item["name"], known))
        )
    label = item.get("label", item["name"])
    label_key = f"{where}.label" if "label" in item else f"{where}.name"
    if not isinstance(label, str) or safe_name(label) != label:
        fail.add(
            label_key,
            f"label {label!r} must be letters, digits and ._,=+@- (not starting with a dot): "
            "it names runs and files",
        )
    elif any(entry.label == label for entry in entries):
        fail.add(label_key, f"label '{label}' is used twice; give each entry its own label")
    options = _entry_table(item, "options", f"{where}.options", "expected a table", fail)
    train = _entry_table(
        item, "train", f"{where}.train", "expected a table of training options", fail
    )
    if options is not None:
        options = {**shared.get(item["name"], {}), **options}
        owner = f"{collection.kind} '{item['name']}'"
        declared = collection.get(item["name"]).options
        fail.attempt(partial(resolved, f"{where}.options", fail, owner, declared, options))
    if train is not None:
        fail.attempt(partial(resolved, f"{where}.train", fail, "training", TRAIN_OPTIONS, train))
    return Entry(item["name"], str(label), dict(options or {}), dict(train or {}))


def _entry_table(item: dict, key: str, where: str, expected: str, fail: Problems) -> dict | None:
    """An entry's ``options`` or ``train`` table; ``None`` if it is not a table (recorded)."""
    table = item.get(key, {})
    return table if isinstance(table, dict) else fail.add(where, expected)


def _shared_options(data, key: str, names: list[Any], fail: Problems) -> dict[str, Any]:
    """``[model_options.NAME]`` tables: they apply to every entry of that name (entry options
    win)."""
    table = typed(data, key, dict, {}, fail)
    for name, options in table.items():
        if name not in names:
            known = ", ".join(sorted(str(n) for n in names if isinstance(n, str)))
            fail.add(f"{key}.{name}", f"not one of this suite's entries: {known}")
        elif not isinstance(options, dict):
            fail.add(f"{key}.{name}", "expected a table")
    return {name: options for name, options in table.items() if isinstance(options, dict)}


def _parse_grid(grid: dict[str, Any], fail: Problems) -> dict[str, list[Any]] | None:
    """The grid, every key checked; ``None`` after a problem (recorded)."""
    before = len(fail.found)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            fail.add(f"grid.{key}", "expected a non-empty list of values")
        elif key not in TRAIN_OPTIONS and not key.startswith(("model.", "dataset.")):
            fail.add(
                f"grid.{key}",
                "expected a training option "
                f"({', '.join(TRAIN_OPTIONS)}) or model.OPTION / dataset.OPTION",
            )
        elif len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            fail.add(f"grid.{key}", "a value is listed twice; every run must differ")
    return grid if len(fail.found) == before else None


def _check_grid_values(
    grid: dict[str, list[Any]],
    registry: Registry,
    models: list[Entry],
    datasets: list[Entry],
    fail: Problems,
) -> None:
    """Every grid value must be valid for every entry it applies to, before anything runs."""
    owners: dict[str, list[tuple[str, Mapping[str, Option], dict[str, Any]]]] = {
        "model": [
            (f"model '{e.name}'", registry.models.get(e.name).options, e.options) for e in models
        ],
        "dataset": [
            (f"dataset '{e.name}'", registry.datasets.get(e.name).options, e.options)
            for e in datasets
        ],
    }
    for key, values in grid.items():
        kind, _, option = key.partition(".")
        targets = owners.get(kind) if option else [("training", TRAIN_OPTIONS, {})]
        for owner, declared, given in targets:
            for value in values:
                check = partial(resolve_options, owner, declared, {**given, option or key: value})
                fail.attempt(partial(validated, check, f"grid.{key}", fail))
