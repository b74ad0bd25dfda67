"""The settings of recorded runs as dotted keys (``train.lr``, ``model_options.hidden``), and
which of them tell two sets of runs apart: the columns ``bench report`` adds beside several
results files, and what ``bench compare`` names for a configuration it cannot match.

A run's ``train`` table holds only the training options that were set; the others took their
defaults (:data:`harness.planning.train_settings.TRAIN_OPTIONS`), so a run that does not record
``train.lr`` is shown with the default learning rate, not as unset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from harness.planning.train_settings import TRAIN_OPTIONS

NOT_SETTINGS = ("seed", "name")  # what tells apart the runs of one configuration


def flat_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's configuration as dotted keys, its tables walked into and its seed and name left
    out: ``{"train": {"lr": 0.05}}`` gives ``{"train.lr": 0.05}``."""
    flat: dict[str, Any] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for key, value in table.items():
            if isinstance(value, Mapping):
                walk(value, f"{prefix}{key}.")
            else:
                flat[f"{prefix}{key}"] = value

    walk({k: v for k, v in config.items() if k not in NOT_SETTINGS}, "")
    return flat


def default_setting(key: str) -> Any:
    """What a run that does not record ``key`` used: a training option's default, else None."""
    table, _, option = key.partition(".")
    return TRAIN_OPTIONS[option].default if table == "train" and option in TRAIN_OPTIONS else None


def setting_changes(baseline: Mapping[str, Any], candidate: Mapping[str, Any]) -> list[str]:
    """``KEY: OLD -> NEW`` for every setting that differs between two run configurations; a
    side that does not record one shows its default (``0.01 (default)``), or ``unset``."""
    old, new = flat_settings(baseline), flat_settings(candidate)
    return [
        f"{key}: {_shown(old, key)} -> {_shown(new, key)}"
        for key in sorted(old.keys() | new.keys())
        if key not in old or key not in new or _text(old[key]) != _text(new[key])
    ]


def distinguishing_settings(
    groups: Mapping[str, Sequence[Mapping[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """The settings that hold one value in all the run configurations of each group (a results
    file) but differ between groups, as ``{key: {group: value}}``; a group's value is None where
    its runs leave the setting unset and it has no default. A setting that varies within a
    group (the model, a grid's values) is its tables' to show, not listed here."""
    groups = {name: [flat_settings(c) for c in configs] for name, configs in groups.items()}
    groups = {name: flats for name, flats in groups.items() if flats}
    keys = sorted({key for flats in groups.values() for flat in flats for key in flat})
    found = {}
    for key in keys:
        values = {  # per group, its runs' values by their text
            name: {_text(value): value for value in (_used(flat, key) for flat in flats)}
            for name, flats in groups.items()
        }
        texts = [list(by_text) for by_text in values.values()]
        if all(len(t) == 1 for t in texts) and len({t[0] for t in texts}) > 1:
            found[key] = {name: next(iter(by_text.values())) for name, by_text in values.items()}
    return found


def _used(flat: Mapping[str, Any], key: str) -> Any:
    """The value of ``key`` a run used: recorded, or its default."""
    return flat[key] if key in flat else default_setting(key)


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _shown(flat: Mapping[str, Any], key: str) -> str:
    if key in flat:
        value = flat[key]
        return value if isinstance(value, str) else _text(value)
    default = default_setting(key)
    return "unset" if default is None else f"{_shown({key: default}, key)} (default)"
