"""The steps every procedure shares: open a dataset, build a model that fits it, train, test."""

from __future__ import annotations

import json
import time
from typing import Any

import torch
from torch import nn

from harness.data import DataContext, Splits
from harness.flops import count_params, forward_flops
from harness.options import BenchError
from harness.procedure import RunContext
from harness.training import TrainConfig, TrainResult, evaluate, seed_everything, train


def open_splits(ctx: RunContext, name: str, options: dict[str, Any], seed: int) -> Splits:
    """Load a dataset's splits on ``ctx.device``, once per dataset, options, seed and device."""
    key = "splits:" + json.dumps(
        [name, options, seed, str(ctx.device)], sort_keys=True, default=list
    )
    if key not in ctx.cache:
        spec = ctx.registry.datasets.get(name)
        context = DataContext(seed=seed, data_root=ctx.data.data_root, download=ctx.data.download)
        ctx.cache[key] = spec.open(options, context).to(ctx.device)
    return ctx.cache[key]


def build_model(ctx: RunContext, name: str, options: dict[str, Any], splits: Splits) -> nn.Module:
    """Build a model for the dataset's geometry and check one batch fits before any training."""
    spec = ctx.registry.models.get(name)
    # Both geometries in every message: the model's own and the dataset's.
    label = f"model '{name}' (made for input {tuple(spec.input_shape)})"
    try:
        model = spec.create(splits.input_shape, splits.num_classes, options)
    except ValueError as exc:
        raise BenchError(
            f"{label} cannot be built for the dataset's input shape "
            f"{tuple(splits.input_shape)}: {exc}"
        ) from None
    model = model.to(ctx.device)
    check_geometry(model, label, splits)
    return model


def check_geometry(model: nn.Module, label: str, splits: Splits) -> None:
    shape = tuple(splits.input_shape)
    probe = torch.zeros(2, *shape, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
    except RuntimeError as exc:
        raise BenchError(
            f"{label} does not accept the dataset's input shape {shape}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, splits.num_classes):
        raise BenchError(
            f"{label} returns shape {tuple(out.shape[1:])} per sample for "
            f"input {shape}; expected ({splits.num_classes},) logits"
        )


def model_facts(model: nn.Module, splits: Splits) -> dict[str, int]:
    return {"params": count_params(model), "flops": forward_flops(model, splits.input_shape)}


def fit(
    ctx: RunContext, model: nn.Module, splits: Splits, train_config: TrainConfig, seed: int
) -> TrainResult:
    """Train ``model`` on the context's device, reporting each epoch to ``ctx.on_epoch``."""
    return train(model, splits, train_config, device=ctx.device, seed=seed, on_epoch=ctx.on_epoch)


def train_and_test(ctx: RunContext, config: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """Seed, build, train, then evaluate the test split exactly once. Returns model and metrics."""
    seed = config["seed"]
    splits = open_splits(ctx, config["dataset"], config["dataset_options"], seed)
    seed_everything(seed)
    model = build_model(ctx, config["model"], config["model_options"], splits)
    train_config = TrainConfig.from_options(config["train"])
    start = time.perf_counter()
    result = fit(ctx, model, splits, train_config, seed)
    test = evaluate(model, splits.test, device=ctx.device, batch_size=train_config.eval_batch_size)
    final = result.final  # the restored epoch's record after early stopping
    metrics = {
        **model_facts(model, splits),
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "val_accuracy": final["val_accuracy"],
        "val_loss": final["val_loss"],
        "train_accuracy": final["train_accuracy"],
        "train_loss": final["train_loss"],
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "train_seconds": result.seconds,
        "wall_seconds": time.perf_counter() - start,
        "history": result.history,
        "split_sizes": splits.sizes(),
    }
    return model, metrics
