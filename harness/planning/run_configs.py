"""The parts of a run's configuration that every procedure builds the same way from a suite's
entries: which model on which dataset, the points of a grid, and the training a run gets."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from harness.planning.suite_files import Entry
from harness.planning.train_settings import TrainConfig


def subject(
    model: Entry,
    dataset: Entry,
    model_options: dict[str, Any] | None = None,
    dataset_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The model-and-dataset part of a run's configuration, with the same keys in every
    procedure, because ``bench compare`` and ``--resume`` match runs on them. The options default
    to the entries' own; a grid point or a study passes its changed ones."""
    return {
        "model": model.name,
        "model_label": model.label,
        "model_options": model.options if model_options is None else model_options,
        "dataset": dataset.name,
        "dataset_label": dataset.label,
        "dataset_options": dataset.options if dataset_options is None else dataset_options,
    }


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of a grid as a list of ``{key: value}`` points (one empty point)."""
    keys = list(grid)
    combinations = itertools.product(*(grid[k] for k in keys))
    return [dict(zip(keys, values, strict=True)) for values in combinations]


def apply_point(point: Mapping[str, Any], model: Entry, dataset: Entry, train: dict[str, Any]):
    """Split a grid point into model options, dataset options and training options (the
    suite's, then the dataset entry's, the model entry's and the point's)."""
    model_options, dataset_options = dict(model.options), dict(dataset.options)
    train = {**train, **dataset.train, **model.train}
    for key, value in point.items():
        if key.startswith("model."):
            model_options[key[len("model.") :]] = value
        elif key.startswith("dataset."):
            dataset_options[key[len("dataset.") :]] = value
        else:
            train[key] = value
    return model_options, dataset_options, train


def entry_train(
    model: Entry, dataset: Entry, train: dict[str, Any], max_epochs: int | None = None
) -> dict[str, Any]:
    """The training of ``model`` on ``dataset``: the suite's ``train``, then the entries' own
    over it; at most ``max_epochs`` epochs when given (a procedure's ``--quick``)."""
    merged = apply_point({}, model, dataset, train)[2]
    if max_epochs is not None:
        merged["epochs"] = min(TrainConfig.from_options(merged).epochs, max_epochs)
    return merged
