"""On-disk datasets, read from tiny files written here in the real on-disk formats."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from harness.cli import cli
from harness.data import DataContext, TensorSplit
from harness.errors import BenchError
from harness.planning.protocol import RunContext
from harness.training.steps import train_and_test

IDX_SETS = [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")]
COLORS = {"ant": (200, 30, 30), "bee": (30, 200, 30), "cat": (30, 30, 200)}


def _images(rng: np.random.Generator, n: int, shape: tuple[int, ...]) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _labels(n: int) -> np.ndarray:
    """Every class equally often (so stratified carving works), in a shuffled order."""
    return np.random.default_rng(n).permutation(np.arange(n) % 10).astype(np.uint8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: two zero bytes, type 0x08 (uint8), the number of dimensions, big-endian sizes, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    path.write_bytes(header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes())


def write_idx_set(root: Path, folder: str, n_train: int = 50, n_test: int = 10) -> dict:
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(1)
    data = {
        "train": (_images(rng, n_train, (28, 28)), _labels(n_train)),
        "t10k": (_images(rng, n_test, (28, 28)), _labels(n_test)),
    }
    for prefix, (images, labels) in data.items():
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return {
        "train": (data["train"][0][:, None], data["train"][1]),
        "test": (data["t10k"][0][:, None], data["t10k"][1]),
    }


def _pickle(path: Path, obj: dict) -> None:
    with path.open("wb") as f:
        pickle.dump(obj, f)


def write_cifar(root: Path, per_batch: int = 10, n_test: int = 10) -> dict:
    """The python version's layout: five training batches, a test batch and batches.meta."""
    directory = root / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(2)
    images, labels = _images(rng, 5 * per_batch, (3, 32, 32)), _labels(5 * per_batch)
    for i in range(5):
        part = slice(i * per_batch, (i + 1) * per_batch)
        _pickle(
            directory / f"data_batch_{i + 1}",
            {b"data": images[part].reshape(per_batch, 3072), b"labels": labels[part].tolist()},
        )
    test_images, test_labels = _images(rng, n_test, (3, 32, 32)), _labels(n_test)
    _pickle(
        directory / "test_batch",
        {b"data": test_images.reshape(n_test, 3072), b"labels": test_labels.tolist()},
    )
    _pickle(directory / "batches.meta", {b"label_names": [b"class%d" % i for i in range(10)]})
    return {"train": (images, labels), "test": (test_images, test_labels)}


def write_image_folder(directory: Path, per_class: dict[str, int]) -> None:
    """Solid-color PNGs (20x24) whose color says their class, in <part>/<class>/ folders."""
    for part, count in per_class.items():
        for name, color in COLORS.items():
            (directory / part / name).mkdir(parents=True)
            for i in range(count):
                image = Image.new("RGB", (20, 24), color)
                image.save(directory / part / name / f"{i}.png")


def _key(image: torch.Tensor) -> bytes:
    """An image's identity: its uint8 pixels (exact for splits loaded with normalize=false)."""
    return (image * 255).round().to(torch.uint8).numpy().tobytes()


def _assert_same_samples(splits: list[TensorSplit], images: np.ndarray, labels: np.ndarray):
    """The splits hold exactly the written images, each with the label written beside it."""
    written = {image.tobytes(): int(label) for image, label in zip(images, labels, strict=True)}
    seen = [(_key(x), int(y)) for split in splits for x, y in zip(split.x, split.y, strict=True)]
    assert sorted(key for key, _ in seen) == sorted(written)
    assert all(written[key] == label for key, label in seen)


def _val_keys(split: TensorSplit) -> set[bytes]:
    return {_key(x) for x in split.x}


RAW = {"val_fraction": 0.2, "normalize": False}


@pytest.mark.parametrize(("name", "folder"), IDX_SETS)
def test_idx_datasets_read_the_written_images_and_labels(registry, tmp_path, name, folder):
    written = write_idx_set(tmp_path, folder)
    splits = registry.datasets.get(name).open(RAW, DataContext(seed=0, data_root=tmp_path))
    assert splits.sizes() == {"train": 40, "val": 10, "test": 10}
    assert (splits.input_shape, splits.num_classes) == ((1, 28, 28), 10)
    assert splits.train.x.shape == (40, 1, 28, 28) and splits.train.x.dtype == torch.float32
    assert splits.train.y.dtype == torch.long
    _assert_same_samples([splits.train, splits.val], *written["train"])
    _assert_same_samples([splits.test], *written["test"])
    assert splits.test.y.tolist() == written["test"][1].tolist()  # test order is kept


def test_cifar10_reads_the_pickled_batches(registry, tmp_path):
    written = write_cifar(tmp_path)
    splits = registry.datasets.get("cifar10").open(RAW, DataContext(seed=0, data_root=tmp_path))
    assert splits.sizes() == {"train": 40, "val": 10, "test": 10}
    assert (splits.input_shape, splits.num_classes) == ((3, 32, 32), 10)
    assert splits.val.x.shape == (10, 3, 32, 32) and splits.val.y.dtype == torch.long
    _assert_same_samples([splits.train, splits.val], *written["train"])
    _assert_same_samples([splits.test], *written["test"])


@pytest.mark.parametrize(
    ("name", "write"),
    [("mnist", lambda root: write_idx_set(root, "MNIST")), ("cifar10", write_cifar)],
)
def test_standardized_with_the_training_splits_channel_statistics(registry, tmp_path, name, write):
    write(tmp_path)
    spec, context = registry.datasets.get(name), DataContext(seed=0, data_root=tmp_path)
    raw, normalized = spec.open(RAW, context), spec.open({"val_fraction": 0.2}, context)
    dims = (0, 2, 3)
    mean, std = raw.train.x.mean(dims, keepdim=True), raw.train.x.std(dims, keepdim=True)
    assert mean.shape == (1, normalized.input_shape[0], 1, 1)
    for part in ("train", "val", "test"):
        expected = (getattr(raw, part).x - mean) / std
        assert torch.allclose(getattr(normalized, part).x, expected, atol=1e-5)
    per_channel = normalized.train.x.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.std(1), torch.ones(len(per_channel)), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "write"),
    [("fashion-mnist", lambda root: write_idx_set(root, "FashionMNIST")), ("cifar10", write_cifar)],
)
def test_validation_split_is_deterministic_per_seed(registry, tmp_path, name, write):
    write(tmp_path)
    spec = registry.datasets.get(name)

    def open_seed(seed: int):
        return spec.open(RAW, DataContext(seed=seed, data_root=tmp_path))

    first, again, other = open_seed(0), open_seed(0), open_seed(1)
    assert torch.equal(first.val.x, again.val.x) and torch.equal(first.train.y, again.train.y)
    assert _val_keys(first.val) != _val_keys(other.val)
    assert torch.equal(first.test.x, other.test.x)  # only the validation carve depends on seed


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("mnist", {"train": 54000, "val": 6000, "test": 10000}),
        ("fashion-mnist", {"train": 54000, "val": 6000, "test": 10000}),
        ("cifar10", {"train": 45000, "val": 5000, "test": 10000}),
    ],
)
def test_declared_sizes_are_the_real_ones(registry, name, sizes):
    spec = registry.datasets.get(name)
    assert spec.describe(spec.resolve({}))["sizes"] == sizes


@pytest.mark.parametrize(
    ("name", "directory", "expected"),
    [
        ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
        ("fashion-mnist", "FashionMNIST/raw", "t10k-labels-idx1-ubyte"),
        ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ],
)
def test_missing_files_are_named_and_never_loaded(registry, tmp_path, name, directory, expected):
    spec = registry.datasets.get(name)
    context = DataContext(data_root=tmp_path)
    reason = spec.unavailable(spec.resolve({}), context)
    assert str(tmp_path / directory) in reason and expected in reason and "--download" in reason
    with pytest.raises(BenchError, match=f"dataset '{name}' is not available: .*{expected}"):
        spec.open({}, context)
    assert (
        spec.unavailable(spec.resolve({}), DataContext(data_root=tmp_path, download=True)) is None
    )


def test_one_missing_file_makes_a_dataset_unavailable(registry, tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").unlink()
    spec = registry.datasets.get("cifar10")
    reason = spec.unavailable(spec.resolve({}), DataContext(data_root=tmp_path))
    assert "batches.meta" in reason and "data_batch_1" not in reason


def test_data_root_falls_back_to_the_environment_then_the_cache(registry, tmp_path, monkeypatch):
    spec = registry.datasets.get("mnist")
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path / "env"))
    assert str(tmp_path / "env" / "MNIST" / "raw") in spec.unavailable(
        spec.resolve({}), DataContext()
    )
    monkeypatch.delenv("BENCH_DATA_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    expected = tmp_path / "home" / ".cache" / "bench" / "data" / "MNIST" / "raw"
    assert str(expected) in spec.unavailable(spec.resolve({}), DataContext())


def test_bench_list_datasets_says_why_files_are_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_DATA_ROOT", str(tmp_path))
    result = CliRunner().invoke(cli, ["list", "datasets", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    for name, directory in [
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
        ("cifar10", "cifar-10-batches-py"),
        ("image-folder", "image-folder"),
    ]:
        assert not rows[name]["available"] and str(tmp_path / directory) in rows[name]["reason"]
    assert rows["image-folder"]["num_classes"] is None
    assert rows["digits"]["available"]


# --- image-folder -----------------------------------------------------------------------------

FOLDER = {"resize": 16, "crop": 12, "normalize": False, "val_fraction": 0.5}


@pytest.fixture
def image_folder(tmp_path) -> Path:
    write_image_folder(tmp_path / "image-folder", {"train": 6, "val": 2})
    return tmp_path / "image-folder"


def _color_label(image: torch.Tensor) -> int:
    """The class whose color the (un-normalized) image shows."""
    rgb = tuple((image.mean((1, 2)) * 255).round().int().tolist())
    return sorted(COLORS).index(
        min(COLORS, key=lambda c: sum(abs(a - b) for a, b in zip(COLORS[c], rgb, strict=True)))
    )


def test_image_folder_serves_transformed_datasets(registry, image_folder):
    context = DataContext(
        seed=0, data_root=image_folder.parent
    )  # default path: <root>/image-folder
    splits = registry.datasets.get("image-folder").open(FOLDER, context)
    assert not isinstance(splits.train, TensorSplit)
    assert splits.sizes() == {"train": 9, "val": 9, "test": 6}
    assert (splits.input_shape, splits.num_classes) == ((3, 12, 12), 3)
    for split in (splits.train, splits.val, splits.test):
        for image, label in split:
            assert image.shape == (3, 12, 12) and image.dtype == torch.float32
            assert _color_label(image) == label


def test_image_folder_path_option_and_imagenet_normalization(registry, image_folder, tmp_path):
    spec = registry.datasets.get("image-folder")
    options = {**FOLDER, "path": str(image_folder), "normalize": True}
    splits = spec.open(options, DataContext(seed=0, data_root=tmp_path / "elsewhere"))
    image, label = splits.test[0]
    red = COLORS[sorted(COLORS)[label]][0] / 255
    assert image[0, 0, 0].item() == pytest.approx((red - 0.485) / 0.229, abs=1e-4)
    assert spec.describe(spec.resolve(options)) == {
        "input_shape": [3, 12, 12],
        "num_classes": 3,
        "sizes": None,
    }


def test_image_folder_validation_is_deterministic_per_seed(registry, image_folder):
    spec = registry.datasets.get("image-folder")

    def carve(seed: int) -> tuple[list[int], list[int]]:
        splits = spec.open(FOLDER, DataContext(seed=seed, data_root=image_folder.parent))
        return splits.train.indices, splits.val.indices

    (train, val), (_, other_val) = carve(0), carve(1)
    assert (train, val) == carve(0)
    assert set(val) != set(other_val)
    assert sorted(train + val) == list(range(18))


def test_image_folder_missing_or_mismatched(registry, tmp_path):
    spec = registry.datasets.get("image-folder")
    reason = spec.unavailable(spec.resolve({}), DataContext(data_root=tmp_path))
    assert str(tmp_path / "image-folder") in reason and "val/<class>" in reason
    assert spec.describe(spec.resolve({"path": str(tmp_path)}))["num_classes"] is None
    write_image_folder(tmp_path / "odd", {"train": 2})
    (tmp_path / "odd" / "val" / "dog").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "odd" / "val" / "dog" / "0.png")
    with pytest.raises(BenchError, match="same class folders"):
        spec.open({"path": str(tmp_path / "odd")}, DataContext(data_root=tmp_path))


def test_one_training_epoch_through_the_dataloader(registry, image_folder):
    ctx = RunContext(
        registry=registry,
        device=torch.device("cpu"),
        data=DataContext(data_root=image_folder.parent),
    )
    config = {
        "seed": 0,
        "dataset": "image-folder",
        "dataset_options": FOLDER,
        "model": "mlp",
        "model_options": {},
        "train": {"epochs": 1, "batch_size": 4},
    }
    model, metrics = train_and_test(ctx, config)
    hidden = 128
    assert metrics["params"] == (3 * 12 * 12 * hidden + hidden) + (hidden * 3 + 3)
    assert metrics["split_sizes"] == {"train": 9, "val": 9, "test": 6}
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_accuracy"] <= 1.0
    assert np.isfinite(metrics["train_loss"])
