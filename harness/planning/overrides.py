"""A suite as the command line asks for it: a named suite or file with ``--model``,
``--epochs``, ``--seed``... applied to its document before validation, or a one-off
``accuracy`` suite of the given models and datasets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.errors import SuiteError
from harness.planning.suite_files import Suite, find_suite, parse_suite, read_toml
from harness.registry.specs import Registry


@dataclass
class Overrides:
    """Command-line changes to a suite document, applied before it is validated."""

    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    model_options: dict[str, str] = field(default_factory=dict)
    dataset_options: dict[str, str] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    device: str | None = None

    def apply(self, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` with the overrides applied; parts of the wrong shape are left for
        :func:`parse_suite` to report."""
        data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
        for key, names, options in (
            ("models", self.models, self.model_options),
            ("datasets", self.datasets, self.dataset_options),
        ):
            table = f"{key[:-1]}_options"
            if not isinstance(data.get(table, {}), dict):
                continue
            if names:
                data[key] = list(names)
                data[table] = {n: o for n, o in data.get(table, {}).items() if n in names}
            if options:
                for name in _entry_names(data.get(key, [])):
                    previous = data.get(table, {}).get(name, {})
                    if isinstance(previous, dict):
                        data.setdefault(table, {})[name] = {**previous, **options}
        procedure = data.get("procedure", "accuracy")
        for key, values in (("train", self.train), (procedure, self.settings)):
            if values and isinstance(key, str) and isinstance(data.get(key, {}), dict):
                data[key] = {**data.get(key, {}), **values}
        if self.train:  # a flag wins over an entry's own train table too
            for key in ("models", "datasets"):
                if key in data:
                    data[key] = _with_train(data[key], self.train)
        if self.seeds:
            data["seeds"] = list(self.seeds)
        if self.device:
            data["device"] = self.device
        return data


def _with_train(entries: Any, train: dict[str, Any]) -> Any:
    """``entries`` with ``train`` merged into each entry's own ``train`` table."""
    if not isinstance(entries, list):
        return entries
    return [
        {**item, "train": {**item["train"], **train}}
        if isinstance(item, dict) and isinstance(item.get("train"), dict)
        else item
        for item in entries
    ]


def _entry_names(entries: Any) -> list[str]:
    """The names in a suite's ``models``/``datasets`` value, skipping malformed items."""
    items = [entries] if isinstance(entries, str) else entries if isinstance(entries, list) else []
    names = [
        item if isinstance(item, str) else item.get("name")
        for item in items
        if isinstance(item, (str, dict))
    ]
    return [name for name in names if isinstance(name, str)]


def load_suite_with(name_or_path: str | None, registry: Registry, overrides: Overrides) -> Suite:
    """A named suite or file; without one, an ``accuracy`` suite of the given models/datasets."""
    if name_or_path:
        path = find_suite(name_or_path, registry)
        data, source, default_name = read_toml(path), str(path), path.stem
    else:
        if not overrides.models or not overrides.datasets:
            raise SuiteError("give --suite NAME, or at least one --model and one --dataset")
        default_name = "-".join([*overrides.models, *overrides.datasets])
        data, source = {"procedure": "accuracy"}, "command line"
    return parse_suite(overrides.apply(data), registry, source=source, default_name=default_name)
