"""Datasets read from files: mnist, fashion-mnist, cifar10 and image-folder.

Where the files are looked for (one rule, first that applies): ``DataContext.data_root`` (the
CLI's ``--data-root``, which also reads ``BENCH_DATA_ROOT``), else the ``BENCH_DATA_ROOT``
environment variable (for library use), else ``~/.cache/bench/data``. Each dataset keeps the
layout its original distribution uses under that root:

- mnist: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (uncompressed IDX);
- fashion-mnist: the same four files under ``FashionMNIST/raw``;
- cifar10: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (python pickles);
- image-folder: ``<dir>/train/<class>/<image>`` and ``<dir>/val/<class>/<image>``, where ``<dir>``
  is option ``path`` or, when that is empty, ``<data root>/image-folder``.

Nothing is downloaded unless ``context.download`` is true (``bench run --download``); then the
torchvision dataset classes fetch and verify mnist, fashion-mnist and cifar10 into the data root.
Without the files, ``unavailable`` names the directory, the files expected and how to get them.

mnist, fashion-mnist and cifar10 are held as tensors: scaled to [0, 1] and (option ``normalize``)
standardized per channel with the training split's mean and std, after the validation split is
carved from the training files per seed. image-folder stays on disk as torch Datasets, decoded and
transformed image by image (resize, center crop, ImageNet normalization) through a DataLoader.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from harness.data import (
    VAL_FRACTION,
    DataContext,
    Splits,
    TensorSplit,
    carve_validation,
    standardize,
)
from harness.errors import BenchError
from harness.options import Option
from harness.registry.specs import DatasetSpec

if TYPE_CHECKING:
    from torchvision.datasets import ImageFolder

ENV_VAR = "BENCH_DATA_ROOT"
IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_FILES = (*CIFAR_TRAIN, "test_batch", "batches.meta")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def data_root(context: DataContext) -> Path:
    """The directory on-disk datasets live in (see the module docstring for the rule)."""
    if context.data_root is not None:
        return Path(context.data_root).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return Path.home() / ".cache" / "bench" / "data"


def _missing_files(directory: Path, names: tuple[str, ...]) -> str | None:
    """``None`` when every file exists, else a sentence naming the directory and the files."""
    missing = [name for name in names if not (directory / name).is_file()]
    if not missing:
        return None
    return f"missing {', '.join(missing)} in {directory}"


def _download_hint(reason: str | None, context: DataContext, source: str) -> str | None:
    if reason is None or context.download:
        return None
    return f"{reason}; copy them there, or run with --download to fetch {source}"


# --- tensor datasets: mnist, fashion-mnist, cifar10 -----------------------------------------


def tensor_splits(
    train: TensorSplit, test: TensorSplit, options: dict[str, Any], seed: int
) -> Splits:
    """Carve validation from uint8 ``train`` per seed, scale to [0, 1], optionally standardize."""
    train, val = carve_validation(train, options["val_fraction"], seed)
    splits = [TensorSplit(s.x.float() / 255.0, s.y.long()) for s in (train, val, test)]
    if options["normalize"]:
        splits = standardize(*splits)
    return Splits(*splits, input_shape=tuple(train.x.shape[1:]), num_classes=10)


def carved_sizes(train: int, test: int) -> Callable[[dict[str, Any]], dict[str, int]]:
    """Split sizes as ``carve_validation`` (scikit-learn) rounds them: validation gets the ceil."""

    def sizes(options: dict[str, Any]) -> dict[str, int]:
        val = math.ceil(options["val_fraction"] * train)
        return {"train": train - val, "val": val, "test": test}

    return sizes


def idx_dataset(folder: str) -> tuple[Callable, Callable]:
    """``load`` and ``unavailable`` for an MNIST-format set stored in ``<root>/<folder>/raw``.

    ``folder`` is also the name of the torchvision class that reads it (``MNIST``,
    ``FashionMNIST``), since torchvision names the folder after the class.
    """

    def unavailable(options: dict[str, Any], context: DataContext) -> str | None:
        reason = _missing_files(data_root(context) / folder / "raw", IDX_FILES)
        return _download_hint(reason, context, f"torchvision's {folder} files")

    def load(options: dict[str, Any], context: DataContext) -> Splits:
        import torchvision

        reader = getattr(torchvision.datasets, folder)

        def split(train: bool) -> TensorSplit:
            data = reader(str(data_root(context)), train=train, download=context.download)
            return TensorSplit(data.data.unsqueeze(1), data.targets)  # uint8 N x 1 x 28 x 28

        return tensor_splits(split(True), split(False), options, context.seed)

    return unavailable, load


def _read_cifar_batch(path: Path) -> TensorSplit:
    """One pickled CIFAR-10 batch: ``b"data"`` is N x 3072 uint8 (1024 red, then green, then
    blue values, each 32x32 row-major), ``b"labels"`` N ints.

    Like torchvision, this unpickles the files, so the data root must hold files you trust.
    """
    with path.open("rb") as f:
        batch = pickle.load(f, encoding="bytes")  # the originals were pickled by Python 2
    x = torch.from_numpy(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    return TensorSplit(x, torch.as_tensor(batch[b"labels"], dtype=torch.long))


def cifar_unavailable(options: dict[str, Any], context: DataContext) -> str | None:
    reason = _missing_files(data_root(context) / CIFAR_DIR, CIFAR_FILES)
    return _download_hint(reason, context, "the CIFAR-10 python version")


def load_cifar10(options: dict[str, Any], context: DataContext) -> Splits:
    """CIFAR-10 read from the documented python-pickle layout rather than through torchvision.

    torchvision's ``CIFAR10`` checks each batch file's md5 before reading it, so it rejects any
    file other than the original download (including the small files the tests write in the same
    format). Reading the format directly accepts every well-formed copy; torchvision is still what
    downloads and verifies the original archive when ``--download`` is given.
    """
    root = data_root(context)
    if context.download and _missing_files(root / CIFAR_DIR, CIFAR_FILES):
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    directory = root / CIFAR_DIR
    batches = [_read_cifar_batch(directory / name) for name in CIFAR_TRAIN]
    train = TensorSplit(torch.cat([b.x for b in batches]), torch.cat([b.y for b in batches]))
    return tensor_splits(train, _read_cifar_batch(directory / "test_batch"), options, context.seed)


# --- image-folder -----------------------------------------------------------------------------


def image_dir(options: dict[str, Any], context: DataContext) -> Path:
    """Option ``path`` (``~`` expanded, relative to the working directory), else
    ``<data root>/image-folder``."""
    if options["path"]:
        return Path(options["path"]).expanduser()
    return data_root(context) / "image-folder"


def _classes(directory: Path) -> list[str] | None:
    from torchvision.datasets.folder import find_classes

    try:
        return find_classes(directory)[0]
    except FileNotFoundError:  # no such directory, or no class folders in it
        return None


def image_folder_unavailable(options: dict[str, Any], context: DataContext) -> str | None:
    directory = image_dir(options, context)
    if _classes(directory / "train") and _classes(directory / "val"):
        return None
    return (
        f"no image folder at {directory} (expected train/<class>/<image> and "
        "val/<class>/<image> in it, e.g. the ants/bees hymenoptera_data set); copy one there "
        "or pass --dataset-opt path=DIR"
    )


def image_folder_classes(options: dict[str, Any]) -> int | None:
    """Class folders under ``train/``; ``None`` when absent.

    Only options reach this function, so the data root is the one ``BENCH_DATA_ROOT`` or the
    default names; loading uses the run's own data root and reports its class count.
    """
    classes = _classes(image_dir(options, DataContext()) / "train")
    return len(classes) if classes else None


def _image_transform(options: dict[str, Any]) -> Callable:
    from torchvision import transforms

    steps = [
        transforms.Resize(options["resize"]),
        transforms.CenterCrop(options["crop"]),
        transforms.ToTensor(),
    ]
    if options["normalize"]:
        steps.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return transforms.Compose(steps)


def _carve_subsets(dataset: ImageFolder, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Stratified train/validation Subsets, chosen exactly as tensor splits are carved."""
    indices = TensorSplit(torch.arange(len(dataset)), torch.as_tensor(dataset.targets))
    train, val = carve_validation(indices, val_fraction, seed)
    return Subset(dataset, train.x.tolist()), Subset(dataset, val.x.tolist())


def load_image_folder(options: dict[str, Any], context: DataContext) -> Splits:
    """``train/`` minus a validation part carved per seed; ``val/`` is the test split."""
    from torchvision.datasets import ImageFolder

    directory, transform = image_dir(options, context), _image_transform(options)
    train, test = (ImageFolder(directory / part, transform=transform) for part in ("train", "val"))
    if train.classes != test.classes:
        raise BenchError(
            f"image folder {directory}: train/ has classes {train.classes} but val/ "
            f"has {test.classes}; both need the same class folders"
        )
    train_part, val_part = _carve_subsets(train, options["val_fraction"], context.seed)
    crop = options["crop"]
    return Splits(
        train_part, val_part, test, input_shape=(3, crop, crop), num_classes=len(train.classes)
    )


# --- registration -----------------------------------------------------------------------------

TENSOR_OPTIONS = {
    "val_fraction": VAL_FRACTION,
    "normalize": Option(
        True, "standardize per channel with the training split's mean and std", "bool"
    ),
}


def _idx_spec(name: str, folder: str, description: str) -> DatasetSpec:
    unavailable, load = idx_dataset(folder)
    return DatasetSpec(
        name,
        description,
        load,
        input_shape=(1, 28, 28),
        num_classes=10,
        options=TENSOR_OPTIONS,
        sizes=carved_sizes(60000, 10000),
        unavailable=unavailable,
    )


def register_datasets(register):
    register(_idx_spec("mnist", "MNIST", "MNIST handwritten digits (28x28 gray), from files"))
    register(
        _idx_spec(
            "fashion-mnist",
            "FashionMNIST",
            "Fashion-MNIST clothing images (28x28 gray), from files",
        )
    )
    register(
        DatasetSpec(
            "cifar10",
            "CIFAR-10 (32x32 color, 10 classes), from the python batch files",
            load_cifar10,
            input_shape=(3, 32, 32),
            num_classes=10,
            options=TENSOR_OPTIONS,
            sizes=carved_sizes(50000, 10000),
            unavailable=cifar_unavailable,
        )
    )
    register(
        DatasetSpec(
            "image-folder",
            "images in train/<class>/ and val/<class>/ folders (e.g. ants/bees)",
            load_image_folder,
            input_shape=lambda o: (3, o["crop"], o["crop"]),
            num_classes=image_folder_classes,
            unavailable=image_folder_unavailable,
            options={
                "path": Option(
                    "", "folder holding train/ and val/ (empty: <data root>/image-folder)", "str"
                ),
                "resize": Option(
                    256, "resize the shorter image side to this many pixels", "int", minimum=1
                ),
                "crop": Option(224, "then center-crop to crop x crop pixels", "int", minimum=1),
                "normalize": Option(True, "normalize with the ImageNet mean and std", "bool"),
                "val_fraction": VAL_FRACTION,
            },
        )
    )
