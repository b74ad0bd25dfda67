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
from harness.training import TrainConfig, evaluate, seed_everything, train


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
    try:
        model = spec.create(splits.input_shape, splits.num_classes, options)
    except ValueError as exc:
        raise BenchError(
            f"model '{name}' cannot be built for input shape {tuple(splits.input_shape)}: {exc}"
        ) from None
    model = model.to(ctx.device)
    check_geometry(model, name, splits)
    return model


def check_geometry(model: nn.Module, name: str, splits: Splits) -> None:
    shape = tuple(splits.input_shape)
    probe = torch.zeros(2, *shape, device=next(model.parameters()).device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(probe)
    except RuntimeError as exc:
        raise BenchError(
            f"model '{name}' does not accept the dataset's input shape {shape}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    finally:
        model.train(was_training)
    if tuple(out.shape) != (2, splits.num_classes):
        raise BenchError(
            f"model '{name}' returns shape {tuple(out.shape[1:])} per sample for "
            f"input {shape}; expected ({splits.num_classes},) logits"
        )


def model_facts(model: nn.Module, splits: Splits) -> dict[str, int]:
    return {"params": count_params(model), "flops": forward_flops(model, splits.input_shape)}


def train_and_test(
    ctx: RunContext, config: dict[str, Any], *, on_epoch=None
) -> tuple[nn.Module, dict[str, Any]]:
    """Seed, build, train, then evaluate the test split exactly once. Returns model and metrics."""
    seed = config["seed"]
    splits = open_splits(ctx, config["dataset"], config["dataset_options"], seed)
    seed_everything(seed)
    model = build_model(ctx, config["model"], config["model_options"], splits)
    train_config = TrainConfig.from_options(config["train"])
    start = time.perf_counter()
    result = train(model, splits, train_config, device=ctx.device, seed=seed, on_epoch=on_epoch)
    test = evaluate(model, splits.test, device=ctx.device, batch_size=train_config.eval_batch_size)
    final = result.history[-1]
    metrics = {
        **model_facts(model, splits),
        "test_accuracy": test.accuracy,
        "test_loss": test.loss,
        "val_accuracy": final["val_accuracy"],
        "val_loss": final["val_loss"],
        "train_accuracy": final["train_accuracy"],
        "train_loss": final["train_loss"],
        "epochs": len(result.history),
        "train_seconds": result.seconds,
        "wall_seconds": time.perf_counter() - start,
        "history": result.history,
        "split_sizes": splits.sizes(),
    }
    return model, metrics
