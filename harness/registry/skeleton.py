"""``bench new-plugin``: write a ready-to-install plugin package (pyproject, README, model, dataset,
test, and a GitHub workflow that checks every pull request for a slowdown).

The package registers itself through the ``bench`` entry-point group, exactly like the built-in
plugins, so ``pip install -e DIR`` is all it takes for ``bench list models`` to show its model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from harness.errors import BenchError
from harness.registry.plugin_workflow import WORKFLOW

NAME_PATTERN = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "$project"
version = "0.1.0"
description = "bench plugin: the $model model and the $dataset dataset"
readme = "README.md"
requires-python = ">=3.11"
dependencies = ["bench-harness"]

# pip install -e '.[test]' also installs what the tests need.
[project.optional-dependencies]
test = ["pytest"]

# bench loads each module in this group; the key is its name in `bench list plugins`.
[project.entry-points.bench]
$name-models = "$package.models"
$name-datasets = "$package.datasets"

[tool.setuptools]
packages = ["$package"]
"""

README = """\
# $project

A bench plugin: the `$model` model and the `$dataset` dataset.

## Install and test

```bash
pip install -e '.[test]'    # the plugin and its [test] extra (pytest)
pytest                      # the plugin is discovered, and its model learns its dataset
```

`pip install -e .` alone installs the plugin without pytest. Offline, with bench and pytest
already installed, add `--no-deps --no-build-isolation`.

## Use

```bash
bench list plugins          # $name-models and $name-datasets, loaded from entry points
bench list models           # $model, with its option `hidden`
bench run --model $model --dataset $dataset --epochs 3
```

## Performance checks

`.github/workflows/bench.yml` runs on every pull request: `bench ab` measures `$model` at the
pull request's base commit against the pull request, in alternating rounds on the same runner,
and fails the check on a regression. The same, here, for the last commit against the one
before (`current` is the installed package: with `pip install -e .`, this checkout):

```bash
bench ab --baseline git:HEAD~1 --candidate current --model $model --dataset $dataset
```

## Layout

- `pyproject.toml`: `[project.entry-points.bench]` names the two modules bench loads, and
  `[project.optional-dependencies] test` the test tools.
- `$package/models.py`: a `ModelSpec` whose `build(input_shape, num_classes, hidden)` returns
  the model.
- `$package/datasets.py`: a `DatasetSpec` whose `load(options, context)` returns `Splits` of
  `TensorSplit` (float32 inputs, int64 labels), deterministic for `context.seed`.
- `tests/test_$package.py`: loads the plugins and trains the model for three epochs.
- `.github/workflows/bench.yml`: the pull-request check; `BENCH_AB_ARGS` says what it measures.
"""

INIT = '''\
"""bench plugin $name: see models.py and datasets.py; pyproject.toml registers both."""
'''

MODELS = '''\
"""The $model model: a small multi-layer perceptron with one option, ``hidden``."""

import math

from harness import ModelSpec, Option, hookimpl
from torch import nn


def build_mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int) -> nn.Module:
    """``bench`` calls this with the dataset's geometry and the resolved options."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


MODEL = ModelSpec(
    name="$model",
    description="Flatten, one hidden Linear+ReLU layer, Linear",
    build=build_mlp,
    input_shape=(16,),
    num_classes=3,
    accepts="any shape (flattened)",
    options={"hidden": Option(32, "hidden layer size", "int", minimum=1)},
)


@hookimpl
def register_models(register):
    register(MODEL)
'''

DATASETS = '''\
"""The $dataset dataset: Gaussian blobs from scikit-learn, deterministic for a seed."""

from harness import DataContext, DatasetSpec, Option, Splits, hookimpl, stratified_splits
from sklearn.datasets import make_blobs

FEATURES, CLASSES = 16, 3


def load_blobs(options: dict, context: DataContext) -> Splits:
    """Train/validation/test splits of ``samples`` points, 20% test and 10% validation."""
    x, y = make_blobs(
        n_samples=options["samples"],
        n_features=FEATURES,
        centers=CLASSES,
        random_state=context.seed,
    )
    train, val, test = stratified_splits(x, y, test=0.2, val=0.1, seed=context.seed)
    return Splits(train, val, test, input_shape=(FEATURES,), num_classes=CLASSES)


DATASET = DatasetSpec(
    name="$dataset",
    description=f"{CLASSES} Gaussian blobs in {FEATURES} dimensions (scikit-learn make_blobs)",
    load=load_blobs,
    input_shape=(FEATURES,),
    num_classes=CLASSES,
    options={"samples": Option(600, "number of points", "int", minimum=30)},
)


@hookimpl
def register_datasets(register):
    register(DATASET)
'''

TEST = '''\
"""Run after ``pip install -e .``: bench finds this plugin and can train its model on its data."""

import pytest
import torch
from harness import Plugins, RunContext, load_plugins, train_and_test

MODEL, DATASET = "$model", "$dataset"


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins()


def test_plugin_is_discovered_through_its_entry_points(plugins):
    mine = {p.name: p for p in plugins.plugins if p.source.startswith("entry point $package.")}
    assert sorted(mine) == ["$name-datasets", "$name-models"]
    assert all(p.status == "loaded" for p in mine.values()), mine
    assert mine["$name-models"].provides == [f"model {MODEL}"]
    assert mine["$name-datasets"].provides == [f"dataset {DATASET}"]


def test_model_learns_the_dataset(plugins):
    ctx = RunContext(registry=plugins.registry, device=torch.device("cpu"))
    config = {
        "model": MODEL,
        "model_options": {"hidden": 16},
        "dataset": DATASET,
        "dataset_options": {},
        "train": {"epochs": 3, "optimizer": "adam", "lr": 0.01},
        "seed": 0,
    }
    _, metrics = train_and_test(ctx, config)
    assert metrics["epochs"] == 3
    assert metrics["test_accuracy"] > 0.9  # well-separated blobs; chance is 1/3
'''


@dataclass(frozen=True)
class PluginNames:
    """Every name the skeleton of plugin ``name`` uses, derived in one place."""

    name: str

    @property
    def project(self) -> str:
        return f"bench-{self.name}"

    @property
    def package(self) -> str:
        return "bench_" + self.name.replace("-", "_")

    @property
    def model(self) -> str:
        return f"{self.name}-mlp"

    @property
    def dataset(self) -> str:
        return f"{self.name}-blobs"

    def fill(self, template: str) -> str:
        return Template(template).substitute(
            name=self.name,
            project=self.project,
            package=self.package,
            model=self.model,
            dataset=self.dataset,
        )


def plugin_files(name: str) -> dict[str, str]:
    """Relative path -> content of every file of the skeleton for plugin ``name``."""
    names = PluginNames(name)
    package = names.package
    return {
        "pyproject.toml": names.fill(PYPROJECT),
        "README.md": names.fill(README),
        f"{package}/__init__.py": names.fill(INIT),
        f"{package}/models.py": names.fill(MODELS),
        f"{package}/datasets.py": names.fill(DATASETS),
        f"tests/test_{package}.py": names.fill(TEST),
        ".github/workflows/bench.yml": names.fill(WORKFLOW),
    }


def check_name(name: str) -> None:
    """Raise :class:`BenchError` unless ``name`` is a lowercase slug such as ``my-models``."""
    if not NAME_PATTERN.fullmatch(name):
        raise BenchError(
            f"plugin name {name!r} is not valid: use lowercase letters, digits and single "
            "'-' or '_' between them, starting with a letter (e.g. 'my-models')"
        )


def write_plugin(name: str, directory: Path) -> list[Path]:
    """Write the skeleton of plugin ``name`` into ``directory`` (new or empty); return its files."""
    check_name(name)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BenchError(
            f"{directory} already exists and is not an empty directory; choose another --dir"
        )
    written = []
    for relative, content in plugin_files(name).items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written
