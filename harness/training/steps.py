"""The steps every procedure shares: open a dataset, build a model that fits it, train, test."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.data import DataContext, Splits, iterate_batches, labelled_subset
from harness.errors import BenchError
from harness.measuring.flops import count_params, forward_flops
from harness.options import resolve_options
from harness.planning.protocol import RunContext
from harness.planning.train_settings import TrainConfig
from harness.registry import pairing
from harness.tasks import Task
from harness.training.checkpoints import checkpoint_path, resume_from, save_checkpoint
from harness.training.loop import TrainingState, TrainResult, evaluate, seed_everything, train

if TYPE_CHECKING:
    from harness.planning.suite_files import Suite
    from harness.registry.specs import Registry


def open_splits(
    ctx: RunContext, name: str, options: dict[str, Any], seed: int, model: str | None = None
) -> Splits:
    """Load a dataset's splits on ``ctx.device``, once per dataset, options, seed and device;
    for ``model``, with the targets of the task it will be trained for (:func:`task_for`)."""
    key = "splits:" + json.dumps(
        [name, options, seed, str(ctx.device)], sort_keys=True, default=list
    )
    if key not in ctx.cache:
        spec = ctx.registry.datasets.get(name)
        context = DataContext(seed=seed, data_root=ctx.data.data_root, download=ctx.data.download)
        task = ctx.registry.tasks.get(spec.task)
        ctx.cache[key] = spec.open(options, context, task).to(ctx.device)
    splits = ctx.cache[key]
    task = task_for(ctx, model, splits.task) if model else None
    if task is None or task.name == splits.task:
        return splits
    if f"{key}:{task.name}" not in ctx.cache:
        ctx.cache[f"{key}:{task.name}"] = replace(task.derive(splits), task=task.name)
    return ctx.cache[f"{key}:{task.name}"]


def check_datasets(suite: Suite, registry: Registry, data: DataContext) -> None:
    """Stop before any run (a usage error) when a suite's dataset cannot be loaded here."""
    for entry in suite.datasets:
        spec = registry.datasets.get(entry.name)
        reason = spec.unavailable(spec.resolve(entry.options), data)
        if reason:
            raise BenchError(f"dataset '{entry.name}' is not available: {reason}")


def run_splits(ctx: RunContext, config: dict[str, Any]) -> Splits:
    """The splits a run trains on: :func:`open_splits` for its dataset, seed and model, with
    only ``train_per_class`` training samples of each class when its config says so (the
    validation and test splits stay whole)."""
    splits = open_splits(
        ctx, config["dataset"], config["dataset_options"], config["seed"], config.get("model")
    )
    per_class = config.get("train_per_class", 0)
    if not per_class:
        return splits
    key = "subset:" + json.dumps(
        [config[k] for k in ("dataset", "dataset_options", "seed")]
        + [config.get("model"), per_class, str(ctx.device)],
        sort_keys=True,
        default=list,
    )
    if key not in ctx.cache:
        train = labelled_subset(splits.train, per_class, config["seed"])
        ctx.cache[key] = replace(splits, train=train)
    return ctx.cache[key]


def run_identity(ctx: RunContext, config: dict[str, Any]) -> dict[str, Any]:
    """What a checkpoint must share with a run to continue it, with options resolved (defaults
    filled in, values typed), so that ``hidden=32`` from the command line and ``hidden = 32``
    from a suite file are the same model."""
    model = ctx.registry.models.get(config["model"])
    return {
        "model": config["model"],
        "model_options": resolve_options(
            f"model '{model.name}'", model.options, config["model_options"]
        ),
        "dataset": config["dataset"],
        "dataset_options": ctx.registry.datasets.get(config["dataset"]).resolve(
            config["dataset_options"]
        ),
        "seed": config["seed"],
        "train_per_class": config.get("train_per_class", 0),
    }


def task_for(ctx: RunContext, model: str, dataset_task: str) -> Task | None:
    """The task ``model`` trains for on a dataset of ``dataset_task``
    (:func:`harness.registry.pairing.task_for`); ``None``: ``build_model`` says why the pair
    does not fit."""
    return pairing.task_for(ctx.registry, model, dataset_task)


def task_of(ctx: RunContext, splits: Splits) -> Task:
    """The task the dataset's targets are for, as registered."""
    return ctx.registry.tasks.get(splits.task)


def build_model(ctx: RunContext, name: str, options: dict[str, Any], splits: Splits) -> nn.Module:
    """Build a model for the dataset's geometry and task, and check that one real batch gives
    the output the task expects, before any training."""
    spec = ctx.registry.models.get(name)
    # Both geometries in every message: the model's own and the dataset's.
    label = f"model '{name}' (made for input {tuple(spec.input_shape)})"
    if splits.task not in spec.tasks:
        raise BenchError(
            f"model '{name}' supports {', '.join(spec.tasks)}; the dataset is for the "
            f"{splits.task} task"
        )
    try:
        model = spec.create(splits.input_shape, splits.num_classes, options, data=splits.info)
    except ValueError as exc:
        raise BenchError(
            f"{label} cannot be built for the dataset's input shape "
            f"{tuple(splits.input_shape)}: {exc}"
        ) from None
    model = model.to(ctx.device)
    check_output(model, label, splits, task_of(ctx, splits), ctx.device)
    return model


def example_batch(
    splits: Splits, size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training samples: real inputs, with their real dtype and lengths."""
    return next(iterate_batches(splits.train, size, device=device))


def check_output(
    model: nn.Module, label: str, splits: Splits, task: Task, device: torch.device
) -> None:
    """Run two real training samples through the model; refuse what the task cannot score."""
    inputs, targets = example_batch(splits, 2, device)
    shape = tuple(splits.input_shape)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(task.prepare(inputs))
    except RuntimeError as exc:
        raise BenchError(
            f"{label} does not accept the dataset's input shape {shape}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        model.train(was_training)
    problem = task.check(outputs, targets, splits.info)
    if problem:
        raise BenchError(f"{label} {problem} for input {shape} ({task.name} task)")


def model_facts(model: nn.Module, splits: Splits, task: Task) -> dict[str, int]:
    """Parameters, and forward FLOPs of the first training sample."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    inputs, _ = example_batch(splits, 1, device)
    return {"params": count_params(model), "flops": forward_flops(model, inputs, task)}


def fit(
    ctx: RunContext,
    model: nn.Module,
    splits: Splits,
    train_config: TrainConfig,
    seed: int,
    start: TrainingState | None = None,
) -> TrainResult:
    """Train ``model`` on the context's device (on from ``start``), reporting each epoch to
    ``ctx.on_epoch``."""
    return train(
        model,
        splits,
        train_config,
        task=task_of(ctx, splits),
        device=ctx.device,
        seed=seed,
        on_epoch=ctx.on_epoch,
        start=start,
    )


def split_metrics(
    ctx: RunContext, model: nn.Module, splits: Splits, split: str = "test", batch_size: int = 1024
) -> dict[str, Any]:
    """The task's metrics of one split (the test split: once per trained model)."""
    return evaluate(
        model,
        getattr(splits, split),
        task=task_of(ctx, splits),
        info=splits.info,
        device=ctx.device,
        batch_size=batch_size,
    )


def seeded_model(ctx: RunContext, config: dict[str, Any]) -> tuple[Splits, nn.Module]:
    """A run's splits and its freshly built model, seeded in between, as every training of the
    run starts: alone, or as a member of a stacked group (which must start from the very same
    weights and random state)."""
    splits = run_splits(ctx, config)
    seed_everything(config["seed"])
    return splits, build_model(ctx, config["model"], config["model_options"], splits)


def train_and_test(
    ctx: RunContext,
    config: dict[str, Any],
    prepare: Callable[[nn.Module, Splits], None] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Seed, build, train, then evaluate the test split exactly once. Returns model and metrics:
    ``test_<metric>``, ``val_<metric>`` and ``train_<metric>`` of the kept epoch for the task's
    loss and epoch metrics, every test metric of the task, and the task's description.

    With the ``from_checkpoint`` training option the model continues a saved training for
    ``epochs`` more; with ``save_checkpoint`` its final state is kept
    (:mod:`harness.training.checkpoints`). ``prepare`` gets the built model before training
    (transfer loads weights and freezes layers).
    """
    seed = config["seed"]
    splits, model = seeded_model(ctx, config)
    train_config = TrainConfig.from_options(config["train"])
    task = task_of(ctx, splits)
    if prepare:
        prepare(model, splits)
    resumed = None
    if train_config.from_checkpoint:
        path = Path(train_config.from_checkpoint).expanduser()
        resumed = resume_from(path, run_identity(ctx, config), train_config.to_dict(), model)
    start = time.perf_counter()
    stacked = ctx.stacked.pop(config["name"], None) if ctx.stacked else None
    if stacked is not None:  # trained in a stacked group: the same weights and result as alone
        result = stacked.into(model)
    else:
        result = fit(ctx, model, splits, train_config, seed, resumed)
    test = split_metrics(ctx, model, splits, batch_size=train_config.eval_batch_size)
    if task.model_metrics:
        test.update(task.model_metrics(model, splits, ctx.device))
    final = result.final  # the restored epoch's record after early stopping
    kept = (*task.epoch_metrics, "loss")
    metrics = {
        **model_facts(model, splits, task),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        **{f"test_{name}": value for name, value in test.items() if name != "confusion_matrix"},
        **{f"val_{name}": final[f"val_{name}"] for name in kept if f"val_{name}" in final},
        **{f"train_{name}": final[f"train_{name}"] for name in kept},
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "train_seconds": result.seconds,
        "wall_seconds": time.perf_counter() - start,
        "history": result.history,
        "split_sizes": splits.sizes(),
        "train_config": train_config.to_dict(),  # resolved: the defaults too, not only overrides
        "task": task.describe(),
    }
    if splits.target_unit:
        metrics["target_unit"] = splits.target_unit
    if train_config.save_checkpoint:
        path = checkpoint_path(ctx.out_dir, config["name"])
        save_checkpoint(
            path, run_identity(ctx, config), model, result.state, train_config.to_dict()
        )
        metrics["checkpoint"] = str(path)
    if "confusion_matrix" in test:
        metrics["confusion_matrix"] = test["confusion_matrix"]
        if splits.class_names:
            metrics["class_names"] = list(splits.class_names)
    return model, metrics
