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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.data import NO_VALIDATION, Split, Splits, iterate_batches
from harness.errors import BenchError, DivergedError
from harness.planning.train_settings import TrainConfig
from harness.tasks import DataInfo, Task
from harness.training.augmentation import Affine, augmentation_generator, make_augmenter

PENALIZED_LAYERS = (nn.Linear, nn.modules.conv._ConvNd)
# How often the loss is read on CUDA, where each read makes the host wait for the GPU.
CUDA_CHECK_EVERY = 50

OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adadelta": torch.optim.Adadelta,
}


@dataclass
class TrainingState:
    """Everything continuing a training needs: the last epoch's weights, the optimizer's state
    (momentum, Adam's moments), the shuffling and augmentation generators, the global RNG and
    the device's (dropout draws from them), the epochs done and their history, and early
    stopping's best so far (``stopped``: it ended the training). Training on from it gives what
    training straight through would have."""

    epochs_done: int
    weights: dict[str, torch.Tensor] | None  # None: the model's own (nothing was restored)
    optimizer: dict[str, Any]
    shuffle_rng: torch.Tensor
    augment_rng: torch.Tensor
    torch_rng: torch.Tensor
    device_rng: torch.Tensor | None
    history: list[dict[str, float]]
    best_loss: float
    best_epoch: int
    best_weights: dict[str, torch.Tensor] | None = None
    stopped: bool = False


@dataclass
class TrainResult:
    """Per-epoch ``history``; ``best_epoch`` has the lowest validation loss, and ``restored``
    says the model was given that epoch's weights back (early stopping). ``state`` is where
    training stopped, to continue from (:mod:`harness.training.checkpoints`)."""

    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    best_epoch: int = 0
    restored: bool = False
    state: TrainingState | None = None

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
    start: TrainingState | None = None,
) -> TrainResult:
    """Train ``model`` in place for ``config.epochs`` epochs on ``splits.train`` (that many
    more after ``start``, the state an earlier training stopped in).

    Each epoch records the training loss (running, in train mode, without penalties) and the
    task's ``epoch_metrics`` (``train_accuracy`` for classification), then the validation loss
    and the same metrics (``val_loss``, ``val_accuracy``). With ``config.patience`` > 0,
    training stops once the validation loss has not improved for that many epochs, and the
    model gets the weights of its best epoch back. The test split is not touched here: evaluate
    it once, after selection.
    """
    generator = torch.Generator().manual_seed(seed)
    augment_rng = augmentation_generator(seed)
    augment = make_augmenter(config.augment, Affine.of(config), splits.input_shape, augment_rng)
    if augment is not None and splits.labelled is not None:
        raise BenchError(
            f"augment={config.augment} would change the inputs but not the targets, which the "
            f"{task.name} task derives from the inputs"
        )
    validated = len(splits.val) > 0
    if config.patience and not validated:
        what = f"early stopping (patience {config.patience})"
        raise BenchError(NO_VALIDATION.format(what, "the dataset"))
    optimizer = make_optimizer(model, config)
    result = TrainResult()
    best_loss, best_state, done, stopped = math.inf, None, 0, False
    if start is not None:
        optimizer.load_state_dict(start.optimizer)
        generator.set_state(start.shuffle_rng)
        augment_rng.set_state(start.augment_rng)
        torch.set_rng_state(start.torch_rng)
        if device.type == "cuda" and start.device_rng is not None:
            torch.cuda.set_rng_state(start.device_rng, device)
        result.history, result.best_epoch = list(start.history), start.best_epoch
        best_loss, best_state, done = start.best_loss, start.best_weights, start.epochs_done
    begin = time.perf_counter()
    for epoch in range(done + 1, done + config.epochs + 1):
        epoch_start = time.perf_counter()
        try:
            running = train_epoch(
                model, splits.train, optimizer, config, device, generator, task, splits.info,
                augment,
            )  # fmt: skip
        except DivergedError as exc:
            raise DivergedError(exc.loss, exc.step, epoch, result.history) from None
        val = {}  # without a validation split, the last epoch is the one kept
        if validated:
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
            **{f"val_{name}": val[name] for name in kept if validated},
            "seconds": time.perf_counter() - epoch_start,
        }
        result.history.append(record)
        if on_epoch:
            on_epoch(record)
        if not validated or val["loss"] < best_loss:
            best_loss, result.best_epoch = val.get("loss", best_loss), epoch
            if config.patience:
                best_state = copy.deepcopy(model.state_dict())
        elif config.patience and epoch - result.best_epoch >= config.patience:
            stopped = True
            break
    result.seconds = time.perf_counter() - begin
    result.state = TrainingState(
        epochs_done=len(result.history),
        weights=copy.deepcopy(model.state_dict()) if best_state is not None else None,
        optimizer=optimizer.state_dict(),
        shuffle_rng=generator.get_state(),
        augment_rng=augment_rng.get_state(),
        torch_rng=torch.get_rng_state(),
        device_rng=torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        history=result.history,
        best_loss=best_loss,
        best_epoch=result.best_epoch,
        best_weights=best_state,
        stopped=stopped,
    )
    if best_state is not None and config.patience:
        model.load_state_dict(best_state)
        result.restored = True
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
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """One pass over ``split`` in shuffled batches (each batch's inputs through ``augment``, if
    given); returns the mean training loss and the task's running metrics, in train mode.

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
        if augment is not None:
            inputs = augment(inputs)
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
