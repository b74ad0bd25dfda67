"""Training and evaluation through a task (:mod:`harness.tasks`), with per-epoch history.

Regularization lives here too, as training options: weight decay (coupled or decoupled), explicit
L1 and L2 penalties in the loss, and early stopping on the validation loss. Every penalty acts on
the same tensors, :func:`penalized_weights`.
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.data import Split, Splits, iterate_batches
from harness.options import Option, resolve_options
from harness.tasks import DataInfo, Task

OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adadelta": torch.optim.Adadelta,
}
OPTIMIZERS = tuple(OPTIMIZER_CLASSES)
WEIGHT_DECAY_MODES = ("coupled", "decoupled")
PENALIZED_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)
# How often the loss is read on CUDA, where each read makes the host wait for the GPU.
CUDA_CHECK_EVERY = 50

TRAIN_OPTIONS: dict[str, Option] = {
    "epochs": Option(10, "training epochs", "int", minimum=1),
    "batch_size": Option(32, "training batch size", "int", minimum=1),
    "optimizer": Option("sgd", "sgd, adam, adamw or adadelta", "str", choices=OPTIMIZERS),
    "lr": Option(0.01, "learning rate", "float", minimum=1e-12),
    "momentum": Option(0.9, "SGD momentum", "float", minimum=0.0, below=1.0),
    "weight_decay": Option(
        0.0, "weight decay of Linear/Conv weights (see weight_decay_mode)", "float", minimum=0.0
    ),
    "weight_decay_mode": Option(
        "coupled",
        "coupled (the optimizer adds wd*w to the gradient) or decoupled (weights shrink by "
        "lr*wd before each step, as AdamW); adamw is always decoupled",
        "str",
        choices=WEIGHT_DECAY_MODES,
    ),
    "l1": Option(
        0.0, "L1 penalty: adds l1 * sum|w| of Linear/Conv weights to the loss", "float", minimum=0.0
    ),
    "l2_loss": Option(
        0.0,
        "explicit L2 penalty: adds l2_loss/2 * sum w^2 of Linear/Conv weights to the loss",
        "float",
        minimum=0.0,
    ),
    "patience": Option(
        0,
        "early stopping: stop after this many epochs without a lower validation loss and restore "
        "the best epoch's weights (0 = off)",
        "int",
        minimum=0,
    ),
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
    weight_decay_mode: str
    l1: float
    l2_loss: float
    patience: int
    eval_batch_size: int

    @classmethod
    def from_options(cls, options: Mapping[str, Any] = {}) -> TrainConfig:
        return cls(**resolve_options("training", TRAIN_OPTIONS, options))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def weight_decay_kind(self) -> str:
        """How ``weight_decay`` acts here: ``coupled`` or ``decoupled`` (always for adamw)."""
        return "decoupled" if self.optimizer == "adamw" else self.weight_decay_mode


class DivergedError(RuntimeError):
    """Training produced a NaN or infinite loss, first seen at batch ``step`` of ``epoch``;
    ``history`` holds the epochs completed before it."""

    def __init__(
        self, loss: float, step: int, epoch: int | None = None, history: list | None = None
    ):
        where = f"step {step}" + (f" of epoch {epoch}" if epoch else "")
        super().__init__(f"training loss became {loss} (first seen at {where})")
        self.loss, self.step, self.epoch, self.history = loss, step, epoch, history or []

    def __reduce__(self):  # picklable, e.g. across a worker process
        return type(self), (self.loss, self.step, self.epoch, self.history)


@dataclass
class TrainResult:
    """Per-epoch ``history``; ``best_epoch`` has the lowest validation loss, and ``restored``
    says the model was given that epoch's weights back (early stopping)."""

    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int = 0
    restored: bool = False

    @property
    def final(self) -> dict[str, float]:
        """The record of the epoch whose weights the model holds now."""
        return self.history[self.best_epoch - 1] if self.restored else self.history[-1]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) so a run repeats exactly on the same device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def penalized_weights(model: nn.Module) -> list[torch.Tensor]:
    """What weight decay, ``l1`` and ``l2_loss`` act on (and what weight norms are taken of):
    the weight of every Linear and Conv layer (``weight_orig`` under a pruning mask). Biases and
    normalization parameters are never penalized."""
    return [
        getattr(m, "weight_orig", m.weight)
        for m in model.modules()
        if isinstance(m, PENALIZED_LAYERS)
    ]


def penalty(weights: list[torch.Tensor], config: TrainConfig) -> torch.Tensor | float:
    """``l1 * sum|w| + l2_loss / 2 * sum w^2`` over ``weights``: what is added to the loss.

    The gradient of the L2 term is ``l2_loss * w``, exactly what coupled weight decay adds to
    the gradient, so for plain SGD ``l2_loss=x`` and ``weight_decay=x`` make the same update.
    """
    total: torch.Tensor | float = 0.0
    if config.l1:
        total = total + config.l1 * sum(w.abs().sum() for w in weights)
    if config.l2_loss:
        total = total + config.l2_loss / 2 * sum(w.pow(2).sum() for w in weights)
    return total


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The configured optimizer over the trainable parameters.

    Weight decay acts only on :func:`penalized_weights`. ``coupled``: the optimizer's own
    ``weight_decay`` adds ``wd * w`` to the gradient (L2 regularization; with Adam it is then
    rescaled by the adaptive step). ``decoupled`` (Loshchilov & Hutter, SGDW/AdamW): the weights
    are multiplied by ``1 - lr * wd`` just before each step, apart from the gradient, for any
    optimizer; adam with decoupled decay is then exactly torch's AdamW. ``adamw`` is decoupled by
    definition and uses torch's AdamW whatever the mode.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    decayed = [w for w in penalized_weights(model) if w.requires_grad]
    native = config.optimizer == "adamw" or config.weight_decay_mode == "coupled"
    groups: list[dict[str, Any]] = [{"params": trainable}]
    if config.weight_decay and native:
        ids = {id(w) for w in decayed}
        groups = [
            {"params": decayed, "weight_decay": config.weight_decay},
            {"params": [p for p in trainable if id(p) not in ids], "weight_decay": 0.0},
        ]
    extra = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    optimizer = OPTIMIZER_CLASSES[config.optimizer](
        [g for g in groups if g["params"]], lr=config.lr, weight_decay=0.0, **extra
    )
    if config.weight_decay and not native:
        optimizer.register_step_pre_hook(_decoupled_decay(decayed, config.weight_decay))
    return optimizer


def _decoupled_decay(weights: list[torch.Tensor], weight_decay: float) -> Callable[..., None]:
    """A step pre-hook multiplying ``weights`` by ``1 - lr * weight_decay`` (lr read at each
    step, so a learning-rate schedule applies to the decay as in AdamW)."""

    def shrink(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
        factor = 1.0 - optimizer.param_groups[0]["lr"] * weight_decay
        with torch.no_grad():
            for w in weights:
                w.mul_(factor)

    return shrink


def train(
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    *,
    task: Task,
    device: torch.device,
    seed: int,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.epochs`` epochs on ``splits.train``.

    Each epoch records the training loss (running, in train mode, without penalties) and the
    task's ``epoch_metrics`` (``train_accuracy`` for classification), then the validation loss
    and the same metrics (``val_loss``, ``val_accuracy``). With ``config.patience`` > 0,
    training stops once the validation loss has not improved for that many epochs, and the
    model gets the weights of its best epoch back. The test split is not touched here: evaluate
    it once, after selection.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(model, config)
    result = TrainResult()
    best_loss, best_state = math.inf, None
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        try:
            running = train_epoch(
                model, splits.train, optimizer, config, device, generator, task, splits.info
            )
        except DivergedError as exc:
            raise DivergedError(exc.loss, exc.step, epoch, result.history) from None
        val = evaluate(
            model,
            splits.val,
            task=task,
            info=splits.info,
            device=device,
            batch_size=config.eval_batch_size,
        )
        kept = ("loss", *task.epoch_metrics)
        record = {
            "epoch": epoch,
            **{f"train_{name}": running[name] for name in kept},
            **{f"val_{name}": val[name] for name in kept},
            "seconds": time.perf_counter() - epoch_start,
        }
        result.history.append(record)
        if on_epoch:
            on_epoch(record)
        if val["loss"] < best_loss:
            best_loss, result.best_epoch = val["loss"], epoch
            if config.patience:
                best_state = copy.deepcopy(model.state_dict())
        elif config.patience and epoch - result.best_epoch >= config.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        result.restored = True
    result.seconds = time.perf_counter() - start
    return result


def train_epoch(
    model: nn.Module,
    split: Split,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    device: torch.device,
    generator: torch.Generator,
    task: Task,
    info: DataInfo,
) -> dict[str, float]:
    """One pass over ``split`` in shuffled batches; returns the mean training loss and the
    task's running metrics, in train mode.

    Raises :class:`DivergedError` at the first non-finite loss (with penalties), before it
    reaches the weights. Public so the ``epoch`` timing measures exactly the loop that training
    runs.
    """
    model.train()
    weights = penalized_weights(model) if config.l1 or config.l2_loss else []
    # Reading the loss (.item(), ~0.2 us on the CPU; torch.isfinite would cost ~4 us) is cheap
    # on the CPU, so it is checked every step, before backward() and step() can spread a NaN
    # into the weights. On CUDA each read would make the host wait for the GPU, so it is read
    # every CUDA_CHECK_EVERY steps: a divergence (NaN weights stay NaN) is then caught within
    # that many steps, and the epoch's sum catches the rest. The meter's sums stay on the device
    # for the same reason; one sync per epoch.
    check_every = 1 if device.type == "cpu" else CUDA_CHECK_EVERY
    meter = task.meter(info, True)
    step = 0
    batches = iterate_batches(
        split, config.batch_size, device=device, shuffle=True, generator=generator
    )
    for step, (inputs, targets) in enumerate(batches, 1):
        outputs = model(task.prepare(inputs))
        loss = task.loss(outputs, targets)
        objective = loss + penalty(weights, config) if weights else loss
        if step % check_every == 0:
            value = objective.item()
            if not math.isfinite(value):
                raise DivergedError(value, step)
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        meter.update(outputs, targets, loss)
    running = meter.compute()
    if not math.isfinite(running["loss"]):
        raise DivergedError(running["loss"], step)
    return running


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    split: Split,
    *,
    task: Task,
    info: DataInfo,
    device: torch.device,
    batch_size: int = 1024,
) -> dict[str, Any]:
    """The task's metrics of ``split`` (the loss, and e.g. accuracy), in eval mode."""
    was_training = model.training
    model.eval()
    meter = task.meter(info, False)
    for inputs, targets in iterate_batches(split, batch_size, device=device):
        meter.update(model(task.prepare(inputs)), targets)
    model.train(was_training)
    return meter.compute()
