"""The old-api-mlp model: a small multi-layer perceptron with one option, ``hidden``."""

import math

from harness import hookimpl
from harness.options import Option
from harness.registry import ModelSpec
from torch import nn


def build_mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int) -> nn.Module:
    """``bench`` calls this with the dataset's geometry and the resolved options."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


MODEL = ModelSpec(
    name="old-api-mlp",
    description="Flatten, one hidden Linear+ReLU layer, Linear",
    build=build_mlp,
    input_shape=(16,),
    num_classes=3,
    accepts="any shape (flattened)",
    options={"hidden": Option(32, "hidden layer size", "int", minimum=1)},
)


@hookimpl
def register_models(register):
    register(MODEL)
