"""Checks of what plugins hand over: spec fields at registration, splits when a dataset opens.

A plugin's mistake is caught where it is made and named in words (the spec, the field, what it
must be), rather than surfacing later as a raw torch error deep in training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harness.errors import BenchError, SpecError
from harness.options import Option

if TYPE_CHECKING:
    from harness.tasks import Task

# What each checked field must be, in the words of the error.
SHAPE = "a tuple of positive ints, e.g. (1, 28, 28)"
SHAPE_OR = f"{SHAPE}, or a function of the options"
CLASSES = "an int >= 1"
CLASSES_OR = f"{CLASSES}, None, or a function of the options"
SIZES_OR = "a dict {'train': int, 'val': int, 'test': int}, None, or a function of the options"
OPTIONS = "a mapping of option name to harness.options.Option"
INFO = "a harness.tasks.DataInfo or None"


def require(spec: Any, checks: Mapping[str, tuple[bool, str]]) -> None:
    """Raise a :class:`SpecError` naming the first field whose check failed and what it must be."""
    for name, (ok, expected) in checks.items():
        if not ok:
            raise SpecError(
                f"{type(spec).__name__} {spec.name!r}: {name} must be {expected}, "
                f"got {shown(getattr(spec, name))}"
            )


def texts(spec: Any) -> dict[str, tuple[bool, str]]:
    """The checks of the fields every spec has: its name and description."""
    return {
        "name": (isinstance(spec.name, str) and bool(spec.name), "a non-empty str"),
        "description": (isinstance(spec.description, str), "a str"),
    }


def check_splits(where: str, splits: Any, task: Task | None = None) -> None:
    """Refuse what a dataset's ``load`` returned where training would trip over it: a split that
    is neither a ``TensorSplit`` of tensors nor a torch ``Dataset``, inputs and targets of
    different lengths, and targets the ``task`` refuses (``Task.check_targets``, e.g. labels
    beyond the classes, which would otherwise be an IndexError in the loss). A ``Dataset`` is
    read lazily, so only its type is checked."""
    from torch.utils.data import Dataset  # torch is imported once data is loaded, not before

    from harness.data import Splits, TensorSplit

    if not isinstance(splits, Splits):
        raise BenchError(f"{where}: load returned {shown(splits)}, not harness.data.Splits")
    for part in ("train", "val", "test"):
        split, what = getattr(splits, part), f"{where}: the {part} split"
        if isinstance(split, Dataset):
            continue
        if not isinstance(split, TensorSplit):
            raise BenchError(
                f"{what} is {shown(split)}; expected a harness.data.TensorSplit or a torch Dataset"
            )
        _check_tensors(what, split)
        problem = task.check_targets(split.y, splits.info) if task and task.check_targets else None
        if problem:
            raise BenchError(f"{what}'s {problem}")


def _check_tensors(what: str, split: Any) -> None:
    import torch

    for part in ("x", "y"):
        value = getattr(split, part)
        if not isinstance(value, torch.Tensor):
            raise BenchError(
                f"{what}'s {part} is {shown(value)}; expected a torch tensor "
                "(torch.as_tensor converts a NumPy array)"
            )
    if len(split.x) != len(split.y):
        raise BenchError(f"{what} has {len(split.x)} inputs but {len(split.y)} targets")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_count(value: Any) -> bool:
    return is_int(value) and value >= 1


def is_shape(value: Any) -> bool:
    return isinstance(value, tuple) and all(is_count(v) for v in value)


def is_sizes(value: Any) -> bool:
    return (
        isinstance(value, Mapping)
        and set(value) == {"train", "val", "test"}
        and all(is_int(v) and v >= 0 for v in value.values())
    )


def is_names(value: Any) -> bool:
    return isinstance(value, tuple) and bool(value) and all(isinstance(v, str) for v in value)


def is_options(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and isinstance(o, Option) for k, o in value.items()
    )


def is_functions(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and callable(f) for k, f in value.items()
    )


def shown(value: Any) -> str:
    """A value in an error message, on one line: its type and a short repr (an array's shape
    and dtype)."""
    kind = type(value).__name__
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{kind} of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = " ".join(repr(value).split())
    return f"{kind} {text if len(text) <= 60 else text[:57] + '...'}"
