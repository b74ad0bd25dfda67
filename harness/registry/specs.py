"""What plugins provide: model, dataset and suite specifications, kept in named collections."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from harness.errors import BenchError, DuplicateNameError, SpecError, UnknownNameError
from harness.options import Option, resolve_options
from harness.registry import checks
from harness.registry.checks import check_splits, require, shown, texts
from harness.tasks import DataInfo, Task

if TYPE_CHECKING:
    from torch import nn

    from harness.data import DataContext, Splits


@dataclass(frozen=True)
class ModelSpec:
    """A model a plugin provides.

    ``build(input_shape, num_classes, **options)`` returns a fresh module; a ``build`` with a
    parameter named ``data`` also gets the dataset's :class:`harness.tasks.DataInfo`.
    ``input_shape`` and ``num_classes`` are the geometry its parameter and FLOP counts are listed
    for (``example`` the whole :class:`DataInfo` of that listing, for models that need more);
    ``accepts`` says in words what inputs work; ``tasks`` names the tasks it supports.
    ``misfit(data)``, if given, returns ``None`` or why the model cannot take a dataset it
    supports the task of, from the :class:`DataInfo` a dataset's description gives (its task,
    input shape and classes; no ``vocab_size``): a pair it refuses is a usage error before any run
    starts, rather than a failed run.
    """

    name: str
    description: str
    build: Callable[..., nn.Module]
    input_shape: tuple[int, ...] = (1, 28, 28)
    accepts: str = "any shape"
    options: Mapping[str, Option] = field(default_factory=dict)
    num_classes: int = 10
    tasks: tuple[str, ...] = ("classification",)
    example: DataInfo | None = None
    misfit: Callable[[DataInfo], str | None] | None = None

    def create(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        options: Mapping[str, Any] = {},
        data: DataInfo | None = None,
    ) -> nn.Module:
        resolved = resolve_options(f"model '{self.name}'", self.options, options)
        if "data" in inspect.signature(self.build).parameters:
            resolved["data"] = data or self.listing_info()
        return self.build(tuple(input_shape), num_classes, **resolved)

    def listing_info(self) -> DataInfo:
        """The data the listed parameter and FLOP counts are for."""
        return self.example or DataInfo(
            task=self.tasks[0], input_shape=tuple(self.input_shape), num_outputs=self.num_classes
        )

    def validate(self) -> None:
        """Refuse a field of the wrong type when the plugin registers the spec, rather than with
        a traceback far from the plugin when a command first uses it."""
        require(
            self,
            {
                **texts(self),
                "build": (callable(self.build), "a function"),
                "input_shape": (checks.is_shape(self.input_shape), checks.SHAPE),
                "accepts": (isinstance(self.accepts, str), "a str"),
                "options": (checks.is_options(self.options), checks.OPTIONS),
                "num_classes": (checks.is_count(self.num_classes), checks.CLASSES),
                "tasks": (checks.is_names(self.tasks), "a non-empty tuple of task names"),
                "example": (
                    self.example is None or isinstance(self.example, DataInfo),
                    checks.INFO,
                ),
                "misfit": (self.misfit is None or callable(self.misfit), "a function or None"),
            },
        )


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset a plugin provides.

    ``load(options, context)`` returns the train/validation/test :class:`~harness.data.Splits`.
    ``input_shape``, ``num_classes`` and ``sizes`` may be values or functions of the resolved
    options (``num_classes`` may be ``None`` when only the files know it). ``unavailable`` returns
    ``None`` or the reason the data cannot be loaded here and how to get it. ``task`` names the
    task (:mod:`harness.tasks`) its targets are for. ``baselines`` maps a name to a function of
    the loaded splits returning test metrics (``test_rmse``, ...) that a model must beat, fitted
    on the training split only; procedures report them beside the models.
    """

    name: str
    description: str
    load: Callable[[dict[str, Any], DataContext], Splits]
    input_shape: tuple[int, ...] | Callable[[dict[str, Any]], tuple[int, ...]]
    num_classes: int | None | Callable[[dict[str, Any]], int | None]
    options: Mapping[str, Option] = field(default_factory=dict)
    sizes: dict[str, int] | Callable[[dict[str, Any]], dict[str, int] | None] | None = None
    unavailable: Callable[[dict[str, Any], DataContext], str | None] = lambda options, context: None
    task: str = "classification"
    baselines: Mapping[str, Callable[[Splits], dict[str, float]]] = field(default_factory=dict)

    def resolve(self, options: Mapping[str, Any]) -> dict[str, Any]:
        return resolve_options(f"dataset '{self.name}'", self.options, options)

    def describe(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Geometry, classes and split sizes for resolved ``options`` (without loading data)."""
        return {
            "input_shape": list(_value(self.input_shape, options)),
            "num_classes": _value(self.num_classes, options),
            "sizes": _value(self.sizes, options),
        }

    def open(
        self, options: Mapping[str, Any], context: DataContext, task: Task | None = None
    ) -> Splits:
        """Load the splits for ``options``, checked (and their targets checked by ``task``)."""
        resolved = self.resolve(options)
        reason = self.unavailable(resolved, context)
        if reason:
            raise BenchError(f"dataset '{self.name}' is not available: {reason}")
        splits = self.load(resolved, context)
        check_splits(f"dataset '{self.name}'", splits, task)
        return replace(splits, task=self.task)

    def validate(self) -> None:
        """Refuse a field of the wrong type at registration (see :meth:`ModelSpec.validate`)."""
        shape, classes, sizes = self.input_shape, self.num_classes, self.sizes
        require(
            self,
            {
                **texts(self),
                "load": (callable(self.load), "a function"),
                "input_shape": (callable(shape) or checks.is_shape(shape), checks.SHAPE_OR),
                "num_classes": (
                    callable(classes) or classes is None or checks.is_count(classes),
                    checks.CLASSES_OR,
                ),
                "options": (checks.is_options(self.options), checks.OPTIONS),
                "sizes": (
                    callable(sizes) or sizes is None or checks.is_sizes(sizes),
                    checks.SIZES_OR,
                ),
                "unavailable": (callable(self.unavailable), "a function"),
                "task": (isinstance(self.task, str) and bool(self.task), "a task name"),
                "baselines": (checks.is_functions(self.baselines), "a mapping of name to function"),
            },
        )


@dataclass(frozen=True)
class SuiteSpec:
    """A suite: a TOML file that is data, validated by :mod:`harness.planning.suite_files`, never
    executed."""

    name: str
    description: str
    path: Path

    def validate(self) -> None:
        """Refuse a field of the wrong type at registration (see :meth:`ModelSpec.validate`)."""
        require(self, {**texts(self), "path": (isinstance(self.path, Path), "a pathlib.Path")})


def _value(item: Any, options: Mapping[str, Any]) -> Any:
    return item(options) if callable(item) else item


T = TypeVar("T")


class Collection(Generic[T]):
    """Items of one kind by unique name, remembering which plugin provided each."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, tuple[T, str]] = {}

    def add(self, item: T, source: str) -> None:
        """Add ``item`` from ``source``: a :class:`SpecError` if it is malformed (a spec's
        ``validate``), a :class:`DuplicateNameError` if its name is taken."""
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise SpecError(f"a {self.kind} needs a non-empty str name; got {shown(item)}")
        validate = getattr(item, "validate", None)
        if callable(validate):
            validate()
        if name in self._items:
            first = self._items[name][1]
            raise DuplicateNameError(
                f"{self.kind} '{name}' is registered twice: by {first} and by {source}"
            )
        self._items[name] = (item, source)

    def get(self, name: str) -> T:
        if name not in self._items:
            raise UnknownNameError(self.kind, name, self._items)
        return self._items[name][0]

    def source(self, name: str) -> str:
        return self._items[name][1]

    def names(self) -> list[str]:
        return list(self._items)

    def __iter__(self) -> Iterator[T]:
        return (item for item, _ in self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)


class Registry:
    """Everything the loaded plugins registered; one :class:`Collection` per hook."""

    def __init__(self) -> None:
        self.tasks: Collection[Task] = Collection("task")
        self.models: Collection[ModelSpec] = Collection("model")
        self.datasets: Collection[DatasetSpec] = Collection("dataset")
        self.suites: Collection[SuiteSpec] = Collection("suite")
        self.procedures: Collection[Any] = Collection("procedure")
        self.pruning_methods: Collection[Any] = Collection("pruning method")
        self.executors: Collection[Any] = Collection("executor")
        self.sinks: Collection[Any] = Collection("result sink")
