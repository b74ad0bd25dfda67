"""digits, mnist1d and synthetic: shapes, split sizes, stratification, determinism, no leakage."""

import pytest
import torch

from harness.data import DataContext, TensorSplit, iterate_batches
from harness.errors import BenchError


def load(registry, name, seed=0, **options):
    return registry.datasets.get(name).open(options, DataContext(seed=seed))


def test_digits_default_is_28x28_with_stratified_splits(registry):
    splits = load(registry, "digits")
    assert splits.input_shape == (1, 28, 28) and splits.num_classes == 10
    assert splits.train.x.shape[1:] == (1, 28, 28)
    assert (
        splits.sizes()
        == registry.datasets.get("digits").describe(registry.datasets.get("digits").resolve({}))[
            "sizes"
        ]
    )
    assert sum(splits.sizes().values()) == 1797
    for split in (splits.train, splits.val, splits.test):
        counts = torch.bincount(split.y, minlength=10).float()
        assert counts.min() / counts.max() > 0.8  # every class present in proportion


def test_digits_standardized_on_training_statistics(registry):
    splits = load(registry, "digits")
    assert abs(splits.train.x.mean().item()) < 1e-4
    assert abs(splits.train.x.std().item() - 1) < 1e-3
    raw = load(registry, "digits", normalize="false")
    assert raw.train.x.min() >= 0 and raw.train.x.max() <= 1


def test_digits_native_resolution(registry):
    splits = load(registry, "digits", size="8")
    assert splits.input_shape == (1, 8, 8) and splits.test.x.shape[1:] == (1, 8, 8)


def test_splits_are_disjoint(registry):
    splits = load(registry, "digits", normalize="false", size="8")
    rows = lambda s: {tuple(r.tolist()) for r in s.x.flatten(1)}  # noqa: E731
    assert not rows(splits.train) & rows(splits.test)
    assert not rows(splits.val) & rows(splits.test)


@pytest.mark.parametrize("name", ["digits", "mnist1d", "synthetic"])
def test_same_seed_same_splits_other_seed_differs(registry, name):
    a, b, c = load(registry, name, 0), load(registry, name, 0), load(registry, name, 1)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.val.x, c.val.x)


def test_mnist1d_generated_offline_with_paper_sizes(registry):
    splits = load(registry, "mnist1d")
    assert splits.input_shape == (1, 40) and splits.num_classes == 10
    assert splits.sizes() == {"train": 3600, "val": 400, "test": 1000}
    assert splits.train.x.shape[1:] == (1, 40)
    # the test split is the generator's own, independent of the seed
    assert torch.equal(splits.test.x, load(registry, "mnist1d", seed=5).test.x)


def test_synthetic_takes_any_shape(registry):
    splits = load(registry, "synthetic", shape="3x32x32", classes="4", samples="20")
    assert splits.train.x.shape == (20, 3, 32, 32)
    assert int(splits.train.y.max()) < 4


def test_synthetic_rejects_bad_shape(registry):
    with pytest.raises(BenchError, match="shape must look like"):
        load(registry, "synthetic", shape="3xabc")


def test_batches_cover_split_once_and_shuffle_per_generator():
    split = TensorSplit(torch.arange(10.0).unsqueeze(1), torch.arange(10))
    device = torch.device("cpu")
    plain = [y.tolist() for _, y in iterate_batches(split, 4, device=device)]
    assert plain == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]

    def order(seed):
        generator = torch.Generator().manual_seed(seed)
        batches = iterate_batches(split, 3, device=device, shuffle=True, generator=generator)
        return torch.cat([y for _, y in batches])

    assert sorted(order(0).tolist()) == list(range(10))
    assert torch.equal(order(0), order(0)) and not torch.equal(order(0), order(1))


def test_mnist1d_is_made_once_per_machine_and_read_back_exactly(tmp_path, monkeypatch):
    """Worker processes of --jobs read the cached arrays instead of making them again."""
    import mnist1d.data
    import numpy as np
    from bench_plugins.datasets import embedded as ed

    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path))
    ed.mnist1d_arrays.cache_clear()
    made = ed.mnist1d_arrays()
    (cached,) = tmp_path.glob("mnist1d-*.npz")
    ed.mnist1d_arrays.cache_clear()
    read = ed.mnist1d_arrays()
    assert all(np.array_equal(made[k], read[k]) and made[k].dtype == read[k].dtype for k in made)

    cached.write_bytes(b"not a zip file")  # damaged: made again, and the cache repaired
    calls = []
    real = mnist1d.data.make_dataset
    monkeypatch.setattr(mnist1d.data, "make_dataset", lambda args: calls.append(1) or real(args))
    ed.mnist1d_arrays.cache_clear()
    again = ed.mnist1d_arrays()
    assert calls == [1] and np.array_equal(again["x"], made["x"])
    ed.mnist1d_arrays.cache_clear()
    assert np.array_equal(ed.mnist1d_arrays()["y_test"], made["y_test"]) and calls == [1]
    ed.mnist1d_arrays.cache_clear()


@pytest.mark.parametrize("name, trained", [("mnist1d", 4000), ("digits", 1437)])
def test_val_fraction_zero_trains_on_the_whole_training_set(registry, name, trained):
    """The MNIST-1D paper trains on all 4,000 signals: no validation split at all."""
    splits = load(registry, name, val_fraction="0")
    assert splits.sizes() == {**splits.sizes(), "train": trained, "val": 0}
    spec = registry.datasets.get(name)
    assert spec.describe(spec.resolve({"val_fraction": 0}))["sizes"] == splits.sizes()
    whole = load(registry, name, val_fraction="0.1")
    assert len(whole.train) + len(whole.val) == trained
