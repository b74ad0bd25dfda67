"""Which models fit which datasets, decided from their specs before any data is loaded: the task
a model trains for on a dataset, and, where a model's spec says so, inputs it cannot read. A pair
that does not fit is refused when a suite is planned, naming both and what would fit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.tasks import DataInfo, Task

if TYPE_CHECKING:
    from harness.registry.specs import Registry


def task_for(registry: Registry, model: str, dataset_task: str) -> Task | None:
    """The task ``model`` trains for on a dataset of ``dataset_task``: that one if the model
    supports it, else the first task of the model that derives its targets from any dataset's
    inputs (an autoencoder on a classification dataset), else ``None``."""
    spec = registry.models.get(model)
    if dataset_task in spec.tasks:
        return registry.tasks.get(dataset_task)
    derived = [registry.tasks.get(t) for t in spec.tasks if t in registry.tasks]
    return next((task for task in derived if task.derive), None)


def misfit(registry: Registry, model: str, dataset: str, options: dict[str, Any]) -> str | None:
    """``None``, or in one line why ``model`` cannot train on ``dataset`` with ``options`` and
    what would fit instead."""
    spec, data = registry.models.get(model), registry.datasets.get(dataset)
    task = task_for(registry, model, data.task)
    if task is None:
        return (
            f"model '{model}' supports {', '.join(spec.tasks)}; dataset '{dataset}' is for the "
            f"{data.task} task (models for it: {', '.join(models_for(registry, data.task))}; "
            f"datasets for {model}: {', '.join(datasets_for(registry, model)) or 'none'})"
        )
    if spec.misfit is None or task.name != data.task:
        return None
    described = data.describe(data.resolve(options))
    info = DataInfo(
        task=data.task,
        input_shape=tuple(described["input_shape"]),
        num_outputs=described["num_classes"] or 0,
    )
    reason = spec.misfit(info)
    return f"model '{model}' cannot take dataset '{dataset}': it {reason}" if reason else None


def models_for(registry: Registry, dataset_task: str) -> list[str]:
    """The models made for ``dataset_task`` (not those that would derive another task)."""
    return [m.name for m in registry.models if dataset_task in m.tasks]


def datasets_for(registry: Registry, model: str) -> list[str]:
    return [d.name for d in registry.datasets if task_for(registry, model, d.task)]
