"""A single-file bench plugin: multinomial logistic regression, loaded with ``--plugin``.

    bench --plugin examples/single_file_plugin.py list models
    bench --plugin examples/single_file_plugin.py run --model logistic --dataset digits --epochs 5

``BENCH_PLUGINS=examples/single_file_plugin.py`` loads it for every command instead.
"""

import math

from torch import nn

from harness import hookimpl
from harness.options import Option
from harness.registry import ModelSpec


def logistic(input_shape: tuple[int, ...], num_classes: int, bias: bool) -> nn.Module:
    """One linear layer from the flattened input to the class logits."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes, bias=bias))


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="logistic",
            description="Multinomial logistic regression: Flatten, Linear",
            build=logistic,
            accepts="any shape (flattened)",
            options={"bias": Option(True, "learn a bias per class", "bool")},
        )
    )
