"""Training settings: every option's default, type and check (``TRAIN_OPTIONS``, the one source
the CLI, suite files and :class:`TrainConfig` share)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from harness.options import Option, resolve_options

OPTIMIZERS = ("sgd", "adam", "adamw", "adadelta")  # torch.optim's SGD, Adam, AdamW, Adadelta
AUGMENTATIONS = ("none", "affine")  # see harness.training.augmentation
WEIGHT_DECAY_MODES = ("coupled", "decoupled")

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
    "augment": Option(
        "none",
        "none, or affine: a random rotation, shift and scale of each training image, applied "
        "to the batch on the device",
        "str",
        choices=AUGMENTATIONS,
    ),
    "augment_degrees": Option(10.0, "affine: rotation within +-degrees", "float", minimum=0.0),
    "augment_translate": Option(
        0.1, "affine: shift within +- this fraction of the side", "float", minimum=0.0, below=1.0
    ),
    "augment_scale": Option(0.1, "affine: scale within 1 +- this", "float", minimum=0.0, below=1.0),
    "save_checkpoint": Option(
        False,
        "keep the final model, optimizer and generator states as OUT/checkpoints/<run>.pt",
        "bool",
    ),
    "from_checkpoint": Option(
        "", "continue training from this checkpoint (epochs = how many more)", "str"
    ),
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
    augment: str
    augment_degrees: float
    augment_translate: float
    augment_scale: float
    save_checkpoint: bool
    from_checkpoint: str

    @classmethod
    def from_options(cls, options: Mapping[str, Any] = {}) -> TrainConfig:
        return cls(**resolve_options("training", TRAIN_OPTIONS, options))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def weight_decay_kind(self) -> str:
        """How ``weight_decay`` acts here: ``coupled`` or ``decoupled`` (always for adamw)."""
        return "decoupled" if self.optimizer == "adamw" else self.weight_decay_mode
