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
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from harness.devices import resolve_device
from harness.errors import BenchError, OptionError, SuiteError, UnknownNameError
from harness.options import Option, resolve_options
from harness.planning.train_settings import TRAIN_OPTIONS
from harness.registry.specs import Registry, SuiteSpec

TOP_LEVEL_KEYS = {
    "name",
    "description",
    "procedure",
    "models",
    "datasets",
    "seeds",
    "device",
    "threads",
    "train",
    "model_options",
    "dataset_options",
    "grid",
}


def suite_error(source: str, key: str, message: str) -> SuiteError:
    """An error about ``key`` of the suite read from ``source`` (a file, or ``command line``),
    worded the same wherever a suite is checked: ``suite file X: key 'K': message``."""
    where = source if source == "command line" else f"suite file {source}"
    return SuiteError(f"{where}: key '{key}': {message}")


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
    """Validate a parsed suite document against the registry; errors name ``source`` and the key."""
    fail = partial(suite_error, source)
    procedure_name = _typed(data, "procedure", str, "accuracy", fail)
    try:
        procedure = registry.procedures.get(procedure_name)
    except UnknownNameError as exc:
        raise fail("procedure", str(exc)) from None
    _check_keys(data, TOP_LEVEL_KEYS | {procedure_name}, "", fail)

    models = _entries(data, "models", registry.models, fail, procedure.default_models)
    datasets = _entries(data, "datasets", registry.datasets, fail, procedure.default_datasets)
    _merge_options(data, "model_options", models, fail)
    _merge_options(data, "dataset_options", datasets, fail)
    for kind, entries, collection in (
        ("models", models, registry.models),
        ("datasets", datasets, registry.datasets),
    ):
        for i, entry in enumerate(entries):
            owner = f"{collection.kind} '{entry.name}'"
            declared = collection.get(entry.name).options
            _resolved(f"{kind}[{i}].options", fail, owner, declared, entry.options)

    seeds = _typed(data, "seeds", list, [0], fail)
    if not seeds or not all(
        isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**63 for s in seeds
    ):
        raise fail("seeds", "expected a non-empty list of non-negative integers")
    if len(set(seeds)) != len(seeds):
        raise fail("seeds", "a seed is listed twice; every run must differ from the others")
    train = _typed(data, "train", dict, {}, fail)
    _resolved("train", fail, "training", TRAIN_OPTIONS, train)
    grid = _parse_grid(_typed(data, "grid", dict, {}, fail), fail)
    _check_grid_values(grid, registry, models, datasets, fail)
    device = _typed(data, "device", str, "auto", fail)
    _validated(lambda: resolve_device(device), "device", fail)
    threads = _typed(data, "threads", int, 0, fail)
    if isinstance(threads, bool) or threads < 0:
        raise fail("threads", "expected a number of torch CPU threads >= 1 (0: bench's default)")
    settings_table = _typed(data, procedure_name, dict, {}, fail)
    owner = f"[{procedure_name}]"
    settings = _resolved(procedure_name, fail, owner, procedure.settings, settings_table)
    return Suite(
        name=_typed(data, "name", str, default_name, fail),
        description=_typed(data, "description", str, "", fail),
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
    )


# TOML's names for what tomllib returns, as a suite's author knows them
_TOML_TYPES = {
    str: "a string",
    list: "an array",
    dict: "a table",
    int: "an integer",
    float: "a float",
    bool: "a boolean",
}


def _toml_type(kind: type) -> str:
    return _TOML_TYPES.get(kind, f"a {kind.__name__}")


def _typed(data: Mapping[str, Any], key: str, kind: type, default: Any, fail) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind):
        raise fail(key, f"expected {_toml_type(kind)}, got {_toml_type(type(value))}")
    return value


def _validated(check, key: str, fail) -> Any:
    try:
        return check()
    except BenchError as exc:
        raise fail(key, str(exc)) from None


def _resolved(
    key: str, fail, owner: str, declared: Mapping[str, Option], given: Mapping[str, Any]
) -> dict[str, Any]:
    """:func:`resolve_options` for the table at ``key``; an error names ``key.OPTION``."""
    try:
        return resolve_options(owner, declared, given)
    except OptionError as exc:
        raise fail(f"{key}.{exc.key}", str(exc)) from None


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str, fail) -> None:
    """Refuse a key not in ``allowed``, suggesting the closest (``where`` prefixes the key)."""
    for key in table:
        if key not in allowed:
            message = str(UnknownNameError("key", key, allowed))
            if key in TRAIN_OPTIONS:
                message += f"; training options such as {key} go in the [train] table"
            raise fail(f"{where}{key}", message)


def _entries(data, key: str, collection, fail, default: list[str]) -> list[Entry]:
    raw = data.get(key, default)
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise fail(key, "expected a non-empty list of names or tables")
    entries: list[Entry] = []
    for i, item in enumerate(raw):
        where = f"{key}[{i}]"
        if isinstance(item, str):
            item = {"name": item}
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise fail(where, "expected a name or a table with a 'name' key")
        _check_keys(item, {"name", "label", "options", "train"}, f"{where}.", fail)
        if item["name"] not in collection:
            raise fail(
                f"{where}.name",
                str(UnknownNameError(collection.kind, item["name"], collection.names())),
            )
        options = item.get("options", {})
        if not isinstance(options, dict):
            raise fail(f"{where}.options", "expected a table")
        label = item.get("label", item["name"])
        label_key = f"{where}.label" if "label" in item else f"{where}.name"
        if not isinstance(label, str) or safe_name(label) != label:
            raise fail(
                label_key,
                f"label {label!r} must be letters, digits and ._,=+@- (not starting with a dot): "
                "it names runs and files",
            )
        if any(entry.label == label for entry in entries):
            raise fail(label_key, f"label '{label}' is used twice; give each entry its own label")
        train = item.get("train", {})
        if not isinstance(train, dict):
            raise fail(f"{where}.train", "expected a table of training options")
        _resolved(f"{where}.train", fail, "training", TRAIN_OPTIONS, train)
        entries.append(Entry(item["name"], label, dict(options), dict(train)))
    return entries


def _merge_options(data, key: str, entries: list[Entry], fail) -> None:
    """``[model_options.NAME]`` tables apply to every entry of that name (entry options win)."""
    table = _typed(data, key, dict, {}, fail)
    names = {e.name for e in entries}
    for name, options in table.items():
        if name not in names:
            raise fail(
                f"{key}.{name}", f"not one of this suite's entries: {', '.join(sorted(names))}"
            )
        if not isinstance(options, dict):
            raise fail(f"{key}.{name}", "expected a table")
    for i, entry in enumerate(entries):
        entries[i] = replace(entry, options={**table.get(entry.name, {}), **entry.options})


def _parse_grid(grid: dict[str, Any], fail) -> dict[str, list[Any]]:
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise fail(f"grid.{key}", "expected a non-empty list of values")
        if key not in TRAIN_OPTIONS and not key.startswith(("model.", "dataset.")):
            raise fail(
                f"grid.{key}",
                "expected a training option "
                f"({', '.join(TRAIN_OPTIONS)}) or model.OPTION / dataset.OPTION",
            )
        if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
            raise fail(f"grid.{key}", "a value is listed twice; every run must differ")
    return grid


def _check_grid_values(
    grid: dict[str, list[Any]], registry: Registry, models: list[Entry], datasets: list[Entry], fail
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
                _validated(check, f"grid.{key}", fail)
