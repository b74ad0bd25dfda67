"""Data as the harness uses it: splits held as tensors (or an on-disk Dataset), batched by index."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from harness.errors import BenchError
from harness.options import Option
from harness.tasks import DataInfo


@dataclass(frozen=True)
class DataContext:
    """What a dataset loader may depend on besides its options."""

    seed: int = 0
    data_root: Path | None = None
    download: bool = False


@dataclass(frozen=True)
class TensorSplit:
    """A split small enough to live on the device: batches are index lookups, not Python loops."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device) -> TensorSplit:
        return TensorSplit(self.x.to(device), self.y.to(device))

    def subset(self, indices: np.ndarray) -> TensorSplit:
        """The rows at ``indices``, kept in their original order."""
        order = torch.as_tensor(np.sort(indices))
        return TensorSplit(self.x[order], self.y[order])


Split = TensorSplit | Dataset


@dataclass(frozen=True)
class Splits:
    """A dataset's three splits and what a task and a model need to know of them.

    ``num_classes`` is the number of outputs a model must produce: classes, targets per sample
    (regression) or the vocabulary (language models). The rest is :class:`harness.tasks.DataInfo`:
    ``task`` (set from ``DatasetSpec.task``), ``vocab_size`` for token inputs, ``target_scale``
    (mean, std) and ``target_unit`` for normalised regression targets, ``class_names``, and
    ``vocabulary`` (each token id's string). ``labelled`` is the dataset's own splits when a
    task derived these targets from its inputs (``Task.derive``), for probes that need labels.
    """

    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    num_classes: int
    task: str = "classification"
    vocab_size: int | None = None
    target_scale: tuple[float, float] | None = None
    target_unit: str = ""
    class_names: tuple[str, ...] | None = None
    vocabulary: tuple[str, ...] | None = None
    labelled: Splits | None = None

    @property
    def info(self) -> DataInfo:
        return DataInfo(
            task=self.task,
            input_shape=tuple(self.input_shape),
            num_outputs=self.num_classes,
            vocab_size=self.vocab_size,
            target_scale=self.target_scale,
            target_unit=self.target_unit,
            class_names=self.class_names,
            vocabulary=self.vocabulary,
        )

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def to(self, device: torch.device) -> Splits:
        """Move tensor splits to ``device`` once, so batching never copies from the host."""

        def move(split: Split) -> Split:
            return split.to(device) if isinstance(split, TensorSplit) else split

        labelled = self.labelled.to(device) if self.labelled else None
        return replace(
            self,
            train=move(self.train),
            val=move(self.val),
            test=move(self.test),
            labelled=labelled,
        )


VAL_FRACTION = Option(
    0.1,
    "fraction of the training data held out for validation (0: none, all of it trains; refused "
    "where early stopping or a study selects on validation)",
    "float",
    minimum=0.0,
    below=1.0,
)
# Why a run cannot do without a validation split, for whatever needs one.
NO_VALIDATION = (
    "{} needs a validation split, and {} has none (val_fraction=0); "
    "keep a validation fraction, e.g. --dataset-opt val_fraction=0.1"
)


def standardize(train: TensorSplit, *others: TensorSplit) -> tuple[TensorSplit, ...]:
    """Zero mean, unit variance per channel, using the training split's statistics only."""
    dims = [0, *range(2, train.x.dim())]
    mean, std = train.x.mean(dims, keepdim=True), train.x.std(dims, keepdim=True)
    return tuple(TensorSplit((s.x - mean) / std, s.y) for s in (train, *others))


def stratified_splits(
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    test: float | int,
    val: float | int,
    seed: int,
) -> tuple[TensorSplit, TensorSplit, TensorSplit]:
    """Stratified train/val/test split; ``val`` is carved from what remains for training."""
    from sklearn.model_selection import train_test_split  # 2 s to import: only when splitting

    x, y = torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(np.asarray(y))
    index = np.arange(len(y))
    rest, test_idx = train_test_split(index, test_size=test, stratify=y, random_state=seed)
    train_idx, val_idx = rest, rest[:0]
    if val:
        train_idx, val_idx = train_test_split(
            rest, test_size=val, stratify=y[rest], random_state=seed
        )
    whole = TensorSplit(x, y.long())
    return whole.subset(train_idx), whole.subset(val_idx), whole.subset(test_idx)


def labelled_subset(split: Split, per_class: int, seed: int) -> Split:
    """``per_class`` training samples of each class, drawn with ``seed``; the draws for a
    smaller count are the first of a larger one's, so 5 per class are among the 10 per class.
    A class with fewer samples keeps all of them."""
    labels = split_labels(split)
    order = np.random.default_rng(seed).permutation(len(labels))
    chosen = np.concatenate([order[labels[order] == c][:per_class] for c in np.unique(labels)])
    if isinstance(split, TensorSplit):
        return split.subset(chosen)
    return torch.utils.data.Subset(split, np.sort(chosen).tolist())


def split_labels(split: Split) -> np.ndarray:
    """The class of every sample: a tensor split's targets, or an image folder's (through any
    ``Subset`` of it) without opening an image."""
    if isinstance(split, TensorSplit):
        if split.y.dim() != 1 or split.y.is_floating_point():
            raise BenchError("labelled subsets need one class label per sample")
        return split.y.cpu().numpy()
    indices = np.arange(len(split))
    while isinstance(split, torch.utils.data.Subset):
        indices, split = np.asarray(split.indices)[indices], split.dataset
    targets = getattr(split, "targets", None)
    if targets is None:
        raise BenchError(
            f"labelled subsets need the class of each sample; {type(split).__name__} has no targets"
        )
    return np.asarray(targets)[indices]


def carve_validation(
    split: TensorSplit, val: float | int, seed: int
) -> tuple[TensorSplit, TensorSplit]:
    """Carve a stratified validation split from a training split (none when ``val`` is 0)."""
    from sklearn.model_selection import train_test_split

    index = np.arange(len(split))
    if not val:
        return split, split.subset(index[:0])
    try:
        train_idx, val_idx = train_test_split(
            index, test_size=val, stratify=split.y.numpy(), random_state=seed
        )
    except ValueError as exc:  # e.g. fewer validation samples than classes
        raise BenchError(
            f"cannot carve a stratified validation split of {val} from {len(split)} samples: {exc}"
        ) from None
    return split.subset(train_idx), split.subset(val_idx)


def iterate_batches(
    split: Split,
    batch_size: int,
    *,
    device: torch.device,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
    num_workers: int = 0,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(inputs, targets)`` batches on ``device``.

    Tensor splits are indexed with a permutation drawn from ``generator`` (reproducible per seed);
    other datasets go through a ``DataLoader``.
    """
    if isinstance(split, TensorSplit):
        n = len(split)
        order = torch.randperm(n, generator=generator).to(split.x.device) if shuffle else None
        for start in range(0, n, batch_size):
            if order is None:
                yield split.x[start : start + batch_size], split.y[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                yield split.x[idx], split.y[idx]
        return
    loader = DataLoader(
        split,
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    for inputs, targets in loader:
        yield inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
