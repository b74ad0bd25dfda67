"""Run after ``pip install -e .``: bench finds this plugin and can train its model on its data."""

import pytest
import torch
from harness.experiment import train_and_test
from harness.plugins import Plugins, load_plugins
from harness.procedure import RunContext

MODEL, DATASET = "old-api-mlp", "old-api-blobs"


@pytest.fixture(scope="module")
def plugins() -> Plugins:
    return load_plugins()


def test_plugin_is_discovered_through_its_entry_points(plugins):
    mine = {p.name: p for p in plugins.plugins if p.source.startswith("entry point bench_old_api.")}
    assert sorted(mine) == ["old-api-datasets", "old-api-models"]
    assert all(p.status == "loaded" for p in mine.values()), mine
    assert mine["old-api-models"].provides == [f"model {MODEL}"]
    assert mine["old-api-datasets"].provides == [f"dataset {DATASET}"]


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
