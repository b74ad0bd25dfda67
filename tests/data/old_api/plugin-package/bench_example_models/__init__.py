"""Example bench plugin package: ``tiny-cnn``, a one-convolution network for any CxHxW images.

Registered by ``[project.entry-points.bench]`` in this package's pyproject.toml.
"""

from torch import nn

from harness import hookimpl
from harness.options import Option
from harness.registry import ModelSpec


def tiny_cnn(input_shape: tuple[int, ...], num_classes: int, channels: int) -> nn.Module:
    """Conv3x3 + ReLU, pooled to 4x4 whatever the image size, then one Linear layer."""
    if len(input_shape) != 3:
        raise ValueError(f"expects CxHxW images, got input shape {tuple(input_shape)}")
    return nn.Sequential(
        nn.Conv2d(input_shape[0], channels, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(4),
        nn.Flatten(),
        nn.Linear(channels * 16, num_classes),
    )


@hookimpl
def register_models(register):
    register(
        ModelSpec(
            name="tiny-cnn",
            description="Conv3x3+ReLU, adaptive average pool to 4x4, Linear",
            build=tiny_cnn,
            accepts="CxHxW images of any size",
            options={"channels": Option(8, "convolution channels", "int", minimum=1)},
        )
    )
