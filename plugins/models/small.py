"""The seed course's small models: mlp, cnn, cnn-small, lenet5 and convnet, with the
parameter counts of the course material.

All are ``nn.Sequential`` stacks built from one recipe, so their parameter counts can be checked
against the design table and pruning tools can trace them. ``width`` scales every hidden layer
(channels and units); it is how the pruning suite builds "small dense" models.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from harness.options import Option
from harness.registry.specs import ModelSpec
from harness.training.layers import make_dropout


@dataclass(frozen=True)
class Conv:
    out: int
    kernel: int
    padding: int = 0
    pool: bool = True


def _scale(n: int, width: float) -> int:
    return max(1, round(n * width))


def conv_classifier(
    input_shape: tuple[int, ...],
    num_classes: int,
    convs: list[Conv],
    hidden: list[int],
    *,
    width: float = 1.0,
    dropout: float = 0.0,
    dropout_impl: str = "torch",
    feature_dropout: float = 0.0,
) -> nn.Sequential:
    """Conv+ReLU(+MaxPool2) blocks, Flatten, Linear+ReLU(+Dropout) layers, then the logits."""
    if len(input_shape) != 3:
        raise ValueError(f"expects CxHxW images, got input shape {tuple(input_shape)}")
    layers: list[nn.Module] = []
    channels = input_shape[0]
    for conv in convs:
        out = _scale(conv.out, width)
        layers += [nn.Conv2d(channels, out, conv.kernel, padding=conv.padding), nn.ReLU()]
        if conv.pool:
            layers.append(nn.MaxPool2d(2))
        channels = out
    if feature_dropout:
        layers.append(nn.Dropout2d(feature_dropout))
    layers.append(nn.Flatten())
    features = channels * _feature_map_area(convs, input_shape)
    return nn.Sequential(
        *layers,
        *_dense(
            [features, *(_scale(h, width) for h in hidden)], num_classes, dropout, dropout_impl
        ),
    )


def _dense(
    sizes: list[int], num_classes: int, dropout: float, dropout_impl: str
) -> list[nn.Module]:
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        if dropout:
            layers.append(make_dropout(dropout, dropout_impl))
    return [*layers, nn.Linear(sizes[-1], num_classes)]


def _feature_map_area(convs: list[Conv], input_shape: tuple[int, ...]) -> int:
    """Height x width after the blocks (stride-1 convolutions, 2x2 max pools that round down),
    by arithmetic: a dummy forward pass costs milliseconds per model built, and the scratch
    variants' width search builds dozens."""
    height, width = input_shape[1:]
    for conv in convs:
        height, width = (side + 2 * conv.padding - conv.kernel + 1 for side in (height, width))
        if conv.pool:
            height, width = height // 2, width // 2
        if height < 1 or width < 1:
            raise ValueError(
                f"input shape {tuple(input_shape)} is too small: nothing is left of it after "
                f"the {conv.kernel}x{conv.kernel} convolution{' and pooling' if conv.pool else ''}"
            )
    return height * width


def mlp(input_shape, num_classes, hidden=(128,), dropout=0.0, dropout_impl="torch", width=1.0):
    n_in = 1
    for d in input_shape:
        n_in *= d
    sizes = [n_in, *(_scale(h, width) for h in hidden)]
    return nn.Sequential(nn.Flatten(), *_dense(sizes, num_classes, dropout, dropout_impl))


def cnn(input_shape, num_classes, width=1.0, dropout=0.0, dropout_impl="torch"):
    convs = [Conv(64, 3), Conv(128, 3), Conv(64, 3)]
    return conv_classifier(
        input_shape,
        num_classes,
        convs,
        [20],
        width=width,
        dropout=dropout,
        dropout_impl=dropout_impl,
    )


def cnn_small(input_shape, num_classes, width=1.0, dropout=0.0, dropout_impl="torch"):
    return conv_classifier(
        input_shape,
        num_classes,
        [Conv(10, 5), Conv(20, 5)],
        [128],
        width=width,
        dropout=dropout,
        dropout_impl=dropout_impl,
    )


def lenet5(input_shape, num_classes, width=1.0, dropout=0.0, dropout_impl="torch"):
    convs = [Conv(6, 5, padding=2), Conv(16, 5)]
    return conv_classifier(
        input_shape,
        num_classes,
        convs,
        [120, 84],
        width=width,
        dropout=dropout,
        dropout_impl=dropout_impl,
    )


def convnet(
    input_shape, num_classes, width=1.0, dropout=0.25, dropout2d=0.10, dropout_impl="torch"
):
    convs = [Conv(16, 3, pool=False), Conv(32, 3)]
    return conv_classifier(
        input_shape,
        num_classes,
        convs,
        [64],
        width=width,
        dropout=dropout,
        dropout_impl=dropout_impl,
        feature_dropout=dropout2d,
    )


WIDTH = Option(1.0, "multiplier for every hidden layer's channels/units", "float", minimum=0.01)


def _dropout(default: float) -> Option:
    return Option(
        default,
        "dropout probability after each hidden linear layer",
        "float",
        minimum=0.0,
        below=1.0,
    )


DROPOUT_IMPL = Option(
    "torch",
    "dropout layer: torch (nn.Dropout) or bernoulli (hand-written)",
    "str",
    choices=("torch", "bernoulli"),
)
CNN_OPTIONS = {"width": WIDTH, "dropout": _dropout(0.0), "dropout_impl": DROPOUT_IMPL}
IMAGES = "CxHxW images, at least 28x28 for the default layers"

MODELS = [
    ModelSpec(
        "mlp",
        "Multi-layer perceptron: Flatten, Linear+ReLU per hidden layer, Linear",
        mlp,
        accepts="any shape (flattened)",
        options={
            "hidden": Option((128,), "hidden layer sizes, e.g. 100 or 100,100", "ints", minimum=1),
            "dropout": _dropout(0.0),
            "dropout_impl": DROPOUT_IMPL,
            "width": WIDTH,
        },
        tasks=("classification", "regression"),  # one output per class, or per target
    ),
    ModelSpec(
        "cnn",
        "Seed course CNN: three Conv3x3+ReLU+MaxPool blocks (64-128-64), FC 20",
        cnn,
        accepts=IMAGES,
        options=CNN_OPTIONS,
    ),
    ModelSpec(
        "cnn-small",
        "Small CNN: Conv5x5 10 and 20 channels with MaxPool, FC 128",
        cnn_small,
        accepts=IMAGES,
        options=CNN_OPTIONS,
    ),
    ModelSpec(
        "lenet5",
        "LeNet-5: Conv5x5 6 (pad 2) and 16 with MaxPool, FC 120-84",
        lenet5,
        accepts=IMAGES,
        options=CNN_OPTIONS,
    ),
    ModelSpec(
        "convnet",
        "Two Conv3x3 (16, 32), MaxPool, Dropout2d, FC 64 with Dropout",
        convnet,
        accepts=IMAGES,
        options={
            "width": WIDTH,
            "dropout": _dropout(0.25),
            "dropout_impl": DROPOUT_IMPL,
            "dropout2d": Option(
                0.10, "Dropout2d probability after the pool", "float", minimum=0.0, below=1.0
            ),
        },
    ),
]


def register_models(register):
    for spec in MODELS:
        register(spec)
