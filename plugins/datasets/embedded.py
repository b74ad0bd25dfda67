"""Datasets that need no files and no network: digits, mnist1d and synthetic."""

from __future__ import annotations

import contextlib
import functools
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harness.data import (
    VAL_FRACTION,
    DataContext,
    Splits,
    TensorSplit,
    carve_validation,
    standardize,
    stratified_splits,
)
from harness.options import Option
from harness.registry.specs import DatasetSpec
from harness.results.store import atomic_write

DIGITS_TOTAL = 1797


def load_digits(options: dict, context: DataContext) -> Splits:
    """scikit-learn's 1,797 real 8x8 handwritten digits, scaled to [0, 1], optionally resized."""
    from sklearn.datasets import load_digits as sklearn_digits

    raw = sklearn_digits()
    images = torch.as_tensor(raw.images, dtype=torch.float32).unsqueeze(1) / 16.0
    size = options["size"]
    if size != 8:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    train, val, test = stratified_splits(
        images,
        raw.target,
        test=options["test_fraction"],
        val=options["val_fraction"],
        seed=context.seed,
    )
    if options["normalize"]:
        train, val, test = standardize(train, val, test)
    return Splits(train, val, test, input_shape=(1, size, size), num_classes=10)


def _digits_sizes(options: dict) -> dict[str, int]:
    test = int(np.ceil(DIGITS_TOTAL * options["test_fraction"]))
    val = int(np.ceil((DIGITS_TOTAL - test) * options["val_fraction"]))
    return {"train": DIGITS_TOTAL - test - val, "val": val, "test": test}


def load_mnist1d(options: dict, context: DataContext) -> Splits:
    """MNIST-1D generated offline by ``mnist1d.data.make_dataset`` with its default arguments.

    The generator's own seed fixes the data (as in the paper); ``context.seed`` only chooses
    which training signals form the validation split.
    """
    data = mnist1d_arrays()
    as_split = lambda x, y: TensorSplit(  # noqa: E731
        torch.as_tensor(x, dtype=torch.float32).unsqueeze(1), torch.as_tensor(y).long()
    )
    train, val = carve_validation(
        as_split(data["x"], data["y"]), options["val_fraction"], context.seed
    )
    return Splits(
        train, val, as_split(data["x_test"], data["y_test"]), input_shape=(1, 40), num_classes=10
    )


MNIST1D_KEYS = ("x", "y", "x_test", "y_test")


@functools.cache
def mnist1d_arrays() -> dict[str, np.ndarray]:
    """``make_dataset(get_dataset_args())``, made once per machine and kept as a ``.npz`` (no
    pickles) in the cache directory (``BENCH_CACHE_DIR``, else ``~/.cache/bench``): it takes
    seconds, and every worker process of ``--jobs`` would otherwise make it again. The arrays
    are saved exactly, so the data are the same either way; a cache that cannot be read is
    made again, and one that cannot be written is skipped."""
    import mnist1d
    from mnist1d.data import get_dataset_args, make_dataset

    version = getattr(mnist1d, "__version__", "unknown")
    path = cache_dir() / f"mnist1d-{version}-default.npz"
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {key: saved[key] for key in MNIST1D_KEYS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        pass  # not made yet, or damaged: make it
    data = make_dataset(get_dataset_args())
    arrays = {key: np.asarray(data[key]) for key in MNIST1D_KEYS}
    with contextlib.suppress(OSError):  # a read-only home: made again next time, still right
        atomic_write(path, lambda handle: np.savez(handle, **arrays))
    return arrays


def cache_dir() -> Path:
    if os.environ.get("BENCH_CACHE_DIR"):
        return Path(os.environ["BENCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bench"


def _parse_shape(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in text.lower().replace(",", "x").split("x") if d)


def load_synthetic(options: dict, context: DataContext) -> Splits:
    """Random inputs and labels: meaningless for accuracy, right for timing any geometry."""
    shape = _parse_shape(options["shape"])
    generator = torch.Generator().manual_seed(context.seed)

    def split(n: int) -> TensorSplit:
        x = torch.randn(n, *shape, generator=generator)
        return TensorSplit(x, torch.randint(0, options["classes"], (n,), generator=generator))

    n = options["samples"]
    return Splits(
        split(n),
        split(max(1, n // 8)),
        split(max(1, n // 8)),
        input_shape=shape,
        num_classes=options["classes"],
    )


def _check_shape(text: str) -> None:
    try:
        shape = _parse_shape(text)
    except ValueError:
        shape = ()
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"shape must look like 1x28x28, got {text!r}")


def register_datasets(register):
    register(
        DatasetSpec(
            "digits",
            "scikit-learn handwritten digits (1,797 real 8x8 images), served at 28x28",
            load_digits,
            input_shape=lambda o: (1, o["size"], o["size"]),
            num_classes=10,
            sizes=_digits_sizes,
            options={
                "size": Option(
                    28, "image side in pixels (8 = native resolution)", "int", minimum=8
                ),
                "test_fraction": Option(
                    0.2, "fraction held out for test", "float", minimum=0.05, below=0.5
                ),
                "val_fraction": VAL_FRACTION,
                "normalize": Option(
                    True, "standardize with the training split's mean and std", "bool"
                ),
            },
        )
    )
    register(
        DatasetSpec(
            "mnist1d",
            "MNIST-1D (Greydanus & Kobak): 1x40 signals, generated offline",
            load_mnist1d,
            input_shape=(1, 40),
            num_classes=10,
            sizes=lambda o: {
                "train": 4000 - round(4000 * o["val_fraction"]),
                "val": round(4000 * o["val_fraction"]),
                "test": 1000,
            },
            options={"val_fraction": VAL_FRACTION},
        )
    )
    register(
        DatasetSpec(
            "synthetic",
            "random tensors of any shape, for timing only",
            load_synthetic,
            input_shape=lambda o: _parse_shape(o["shape"]),
            num_classes=lambda o: o["classes"],
            sizes=lambda o: {
                "train": o["samples"],
                "val": max(1, o["samples"] // 8),
                "test": max(1, o["samples"] // 8),
            },
            options={
                "shape": Option(
                    "1x28x28", "input shape, e.g. 3x224x224", "str", check=_check_shape
                ),
                "classes": Option(10, "number of classes", "int", minimum=2),
                "samples": Option(512, "training samples", "int", minimum=1),
            },
        )
    )
