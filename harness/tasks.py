"""Tasks: how a model's outputs are trained and scored against a dataset's targets.

A task is the contract between a dataset and a model: the loss a model is trained on, the
metrics it is scored by (each with a direction and a unit), the headline metric of a table, what
a model's output must look like for a dataset (checked on a real batch before any training), and
how a batch's inputs reach the model (variable-length sequences are packed there, once, rather
than by every model). Training, evaluation, early stopping, timing, FLOP counts and profiling call
the task and never ask which task it is. A dataset names its task (``DatasetSpec.task``), a model
the tasks it supports (``ModelSpec.tasks``); plugins add tasks through the ``register_tasks``
hook, and the built-in ones are in ``plugins/tasks.py``.

A task's meter accumulates over batches on the device and syncs once, in ``compute``: the
training step pays for a few tensor additions, never for a host round trip.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import torch

HIGHER, LOWER = "higher", "lower"


@dataclass(frozen=True)
class Metric:
    """A number a task reports: ``direction`` says which way is better; ``unit`` is ``fraction``
    (reported as %), ``nats``, ``bits``, ``target`` (the dataset's own units, see
    :attr:`DataInfo.target_unit`) or ``""`` (a pure number)."""

    name: str
    direction: str
    unit: str
    description: str = ""
    label: str = ""  # how tables name it (default: the name, underscores as spaces)


@dataclass(frozen=True)
class DataInfo:
    """What a task and a model may know of a dataset besides its tensors.

    ``num_outputs``: classes (classification), targets per sample (regression) or the
    vocabulary (language models). Token inputs hold ids in ``1..vocab_size - 1``, with 0 as
    padding. Regression targets are stored normalised: ``target_scale`` = (mean, std) turns them
    back into ``target_unit``.
    """

    task: str = "classification"
    input_shape: tuple[int, ...] = ()
    num_outputs: int = 0
    vocab_size: int | None = None
    target_scale: tuple[float, float] | None = None
    target_unit: str = ""
    class_names: tuple[str, ...] | None = None
    vocabulary: tuple[str, ...] | None = None  # the string of each token id


class Meter(Protocol):
    """Accumulates a task's metrics over batches. ``loss`` is the batch's mean training loss
    when the caller has it (training); otherwise the meter computes its own."""

    def update(self, outputs: Any, targets: torch.Tensor, loss: torch.Tensor | None = None): ...

    def compute(self) -> dict[str, Any]: ...


def _identity(inputs: torch.Tensor) -> Any:
    return inputs


@dataclass(frozen=True)
class Task:
    """A way to train and score models; see the module docstring.

    ``loss(outputs, targets)`` is the mean training objective of a batch. ``meter(info, train)``
    makes a fresh :class:`Meter`; with ``train`` it may keep only the cheap ``epoch_metrics``.
    ``check(outputs, targets, info)`` returns ``None`` or what is wrong with a model's output for
    one batch, in words. ``prepare(inputs)`` turns a batch's inputs into what the model takes.
    ``check_targets(targets, info)``, if given, returns ``None`` or what is wrong with a whole
    split's targets (checked once, when the dataset opens), e.g. labels beyond the classes.
    ``derive(splits)``, if given, makes the task's targets from any dataset's inputs
    (reconstruction: the input itself), so a model that supports only such tasks runs on any
    dataset; the splits it returns keep the originals as ``labelled``. ``model_metrics(model,
    splits, device)``, if given, adds test metrics that need the whole trained model rather
    than batches of outputs (a linear probe of an autoencoder's codes).
    ``expects`` says in words what a model must return. ``samples(model, splits, device)``, if
    given, returns a few of a trained model's test outputs to show beside its figures (a
    ``series`` of actual and predicted values, ``predictions`` of some inputs, ``generated``
    text), stored with the run's metrics.
    """

    name: str
    description: str
    loss: Callable[[Any, torch.Tensor], torch.Tensor]
    meter: Callable[[DataInfo, bool], Meter]
    check: Callable[[Any, torch.Tensor, DataInfo], str | None]
    metrics: tuple[Metric, ...]
    headline: str
    epoch_metrics: tuple[str, ...] = ()
    prepare: Callable[[torch.Tensor], Any] = _identity
    expects: str = ""
    loss_unit: str = "nats"
    samples: Callable[[Any, Any, torch.device], dict[str, Any]] | None = None
    check_targets: Callable[[torch.Tensor, DataInfo], str | None] | None = None
    derive: Callable[[Any], Any] | None = None
    model_metrics: Callable[[Any, Any, torch.device], dict[str, float]] | None = None

    def metric(self, name: str) -> Metric:
        for metric in self.all_metrics():
            if metric.name == name:
                return metric
        raise KeyError(f"task '{self.name}' has no metric '{name}'")

    def all_metrics(self) -> tuple[Metric, ...]:
        """The task's metrics and, first, its loss (always lower is better)."""
        return (Metric("loss", LOWER, self.loss_unit, "the training objective"), *self.metrics)

    def describe(self) -> dict[str, Any]:
        """What a results file records of the task, so that readers (``bench compare``) take
        each metric's direction from it rather than from the metric's name."""
        return {
            "name": self.name,
            "headline": self.headline,
            "metrics": {
                m.name: {"direction": m.direction, "unit": m.unit, "label": m.label or m.name}
                for m in self.all_metrics()
            },
        }


def output_shape(outputs: Any) -> str:
    """A model output's per-sample shape in words, whatever it is."""
    import torch  # tasks are declared without torch; they run once it is loaded

    if isinstance(outputs, torch.Tensor):
        return str(tuple(outputs.shape[1:]))
    if isinstance(outputs, (tuple, list)):
        return "a tuple of " + ", ".join(output_shape(o) for o in outputs)
    return f"a {type(outputs).__name__}"


def check_same_shape(outputs: Any, targets: torch.Tensor, info: DataInfo) -> str | None:
    """A ``Task.check`` for outputs shaped exactly like the targets (regression, reconstruction)."""
    import torch

    if isinstance(outputs, torch.Tensor) and outputs.shape == targets.shape:
        return None
    return f"returns {output_shape(outputs)} per sample; expected {tuple(targets.shape[1:])}"


def bits(nats: float) -> float:
    """A loss in nats as bits (what the sequence tasks report per character or sample)."""
    return nats / math.log(2)
