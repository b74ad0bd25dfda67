"""A single-file bench plugin for a regression task: a dataset and a model made for each other.

    bench --plugin examples/regression_plugin.py run --model diabetes-mlp --dataset diabetes \\
        --epochs 20 --optimizer adam --lr 0.01 --threads 1

``diabetes`` is scikit-learn's bundled diabetes data (442 patients, 10 baseline measurements,
the disease progression one year later; nothing is downloaded), split per seed. ``diabetes-mlp``
is a small multi-layer perceptron that supports only the ``regression`` task. Besides the model,
the run reports two baselines the dataset names: the training mean, and least squares.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split
from torch import nn

from harness import hookimpl
from harness.data import DataContext, Splits, TensorSplit
from harness.options import Option
from harness.registry import DatasetSpec, ModelSpec

FEATURES = 10
SIZES = {"train": 310, "val": 44, "test": 88}  # 442 patients
UNIT = "disease progression"


def load(options: dict, context: DataContext) -> Splits:
    """Train/validation/test splits drawn with ``context.seed``; inputs and targets standardised
    with the training split's statistics only, so nothing of the test split leaks into training.

    Targets are stored normalised, shape (N, 1): ``target_scale`` = (mean, std) turns them back
    into disease progression, the unit RMSE and MAE are reported in.
    """
    x, y = load_diabetes(return_X_y=True)
    index = np.arange(len(y))
    rest, test = train_test_split(index, test_size=SIZES["test"], random_state=context.seed)
    train, val = train_test_split(rest, test_size=SIZES["val"], random_state=context.seed)
    x_mean, x_std = x[train].mean(0), x[train].std(0)
    y_mean, y_std = float(y[train].mean()), float(y[train].std())

    def split(rows: np.ndarray) -> TensorSplit:
        inputs = torch.as_tensor((x[rows] - x_mean) / x_std, dtype=torch.float32)
        targets = torch.as_tensor((y[rows] - y_mean) / y_std, dtype=torch.float32)
        return TensorSplit(inputs, targets.unsqueeze(1))  # (N, 10) float32, (N, 1) float32

    return Splits(
        split(train),
        split(val),
        split(test),
        input_shape=(FEATURES,),
        num_classes=1,  # for regression: targets per sample
        target_scale=(y_mean, y_std),
        target_unit=UNIT,
    )


def _metrics(predicted: torch.Tensor, splits: Splits) -> dict[str, float]:
    """Test RMSE and MAE in disease progression, and R², as the regression task names them."""
    error, actual = predicted - splits.test.y, splits.test.y
    std = splits.target_scale[1]
    return {
        "test_rmse": math.sqrt(error.pow(2).mean().item()) * std,
        "test_mae": error.abs().mean().item() * std,
        "test_r2": 1 - error.pow(2).sum().item() / (actual - actual.mean()).pow(2).sum().item(),
    }


def training_mean(splits: Splits) -> dict[str, float]:
    """Every patient gets the training split's mean (0 in normalised units)."""
    return _metrics(torch.zeros_like(splits.test.y), splits)


def least_squares(splits: Splits) -> dict[str, float]:
    """Linear regression with an intercept, fitted on the training split."""

    def design(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, torch.ones(len(x), 1)], dim=1).double()

    solution = torch.linalg.lstsq(design(splits.train.x), splits.train.y.double()).solution
    return _metrics((design(splits.test.x) @ solution).float(), splits)


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int, dropout: float) -> nn.Module:
    """``num_classes`` is the number of outputs: one target per sample here."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


@hookimpl
def register_datasets(register):
    register(
        DatasetSpec(
            name="diabetes",
            description="scikit-learn's diabetes data: 10 baseline measurements -> disease "
            "progression a year later (regression)",
            load=load,
            input_shape=(FEATURES,),
            num_classes=1,
            sizes=SIZES,
            task="regression",
            baselines={"training mean": training_mean, "least squares": least_squares},
        )
    )


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="diabetes-mlp",
            description="Flatten, Linear+ReLU, Dropout, Linear: one output per target",
            build=mlp,
            input_shape=(FEATURES,),
            num_classes=1,
            accepts="any shape (flattened)",
            tasks=("regression",),
            options={
                "hidden": Option(32, "hidden units", "int", minimum=1),
                "dropout": Option(0.1, "dropout before the output layer", "float", below=1.0),
            },
        )
    )
