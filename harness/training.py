"""Training and evaluation: cross-entropy classification with per-epoch history."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.data import Split, Splits, iterate_batches
from harness.options import Option, resolve_options

OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta")

TRAIN_OPTIONS: dict[str, Option] = {
    "epochs": Option(10, "training epochs", "int", minimum=1),
    "batch_size": Option(32, "training batch size", "int", minimum=1),
    "optimizer": Option("sgd", "sgd, adam, adamw or adadelta", "str", choices=OPTIMIZERS),
    "lr": Option(0.01, "learning rate", "float", minimum=1e-12),
    "momentum": Option(0.9, "SGD momentum", "float", minimum=0.0, below=1.0),
    "weight_decay": Option(0.0, "weight decay passed to the optimizer", "float", minimum=0.0),
    "eval_batch_size": Option(1024, "batch size for evaluation", "int", minimum=1),
}


@dataclass(frozen=True)
class TrainConfig:
    """Training settings; build with :meth:`from_options` so defaults and checks come from
    ``TRAIN_OPTIONS`` (the single source the CLI, suite files and this class share)."""

    epochs: int
    batch_size: int
    optimizer: str
    lr: float
    momentum: float
    weight_decay: float
    eval_batch_size: int

    @classmethod
    def from_options(cls, options: Mapping[str, Any] = {}) -> TrainConfig:
        return cls(**resolve_options("training", TRAIN_OPTIONS, options))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss."""


@dataclass
class Evaluation:
    loss: float
    accuracy: float


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run repeats exactly on the same device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adadelta(params, lr=config.lr, weight_decay=config.weight_decay)


def train(
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.epochs`` epochs on ``splits.train``.

    Each epoch records training loss/accuracy (running, in train mode) and validation
    loss/accuracy. The test split is not touched here: evaluate it once, after selection.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, config)
    result = TrainResult()
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        train_loss, train_accuracy = train_epoch(
            model, splits.train, optimizer, config, device, generator
        )
        val = evaluate(model, splits.val, device=device, batch_size=config.eval_batch_size)
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "val_loss": val.loss,
            "val_accuracy": val.accuracy,
            "seconds": time.perf_counter() - epoch_start,
        }
        result.history.append(record)
        if on_epoch:
            on_epoch(record)
    result.seconds = time.perf_counter() - start
    return result


def train_epoch(
    model: nn.Module,
    split: Split,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
) -> tuple[float, float]:
    """One pass over ``split`` in shuffled batches; returns mean training loss and accuracy.

    Public so the ``epoch`` timing measures exactly the loop that training runs.
    """
    model.train()
    # Sums stay on the device so the loop never waits for the GPU; one sync per epoch.
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for inputs, targets in iterate_batches(
        split, config.batch_size, device=device, shuffle=True, generator=generator
    ):
        logits = model(inputs)
        loss = F.cross_entropy(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(targets)
        correct += (logits.detach().argmax(1) == targets).sum()
        seen += len(targets)
    mean_loss = loss_sum.item() / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise DivergedError(f"training loss became {mean_loss}")
    return mean_loss, correct.item() / max(seen, 1)


@torch.inference_mode()
def evaluate(
    model: nn.Module, split: Split, *, device: torch.device, batch_size: int = 1024
) -> Evaluation:
    """Mean cross-entropy and accuracy (a fraction) in eval mode."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    for inputs, targets in iterate_batches(split, batch_size, device=device):
        logits = model(inputs)
        loss_sum += F.cross_entropy(logits, targets, reduction="sum")
        correct += (logits.argmax(1) == targets).sum()
        seen += len(targets)
    model.train(was_training)
    return Evaluation(loss=loss_sum.item() / max(seen, 1), accuracy=correct.item() / max(seen, 1))
