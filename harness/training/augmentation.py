"""Random affine augmentation of image batches, on the device the batch is already on.

The training loop's batches are slices of tensors that already live on the device, so a
per-sample ``torchvision.transforms`` pipeline (one PIL or tensor op per image, on the host)
would undo the tensor data path. Instead each batch gets one affine matrix per sample and a
single ``affine_grid`` + ``grid_sample`` call: a few kernel launches per batch on any device.

Parameters are drawn from a CPU generator of their own, so that an augmented run shuffles its
batches exactly as the unaugmented run of the same seed does, and so that a checkpoint can carry
the generator's state (:mod:`harness.training.checkpoints`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.errors import BenchError
from harness.planning.train_settings import TrainConfig

# Seed offset of the augmentation generator, apart from the shuffling generator's seed.
SEED_OFFSET = 7919


@dataclass(frozen=True)
class Affine:
    """Rotation within ``±degrees``, shifts within ``±translate`` of the side, scale within
    ``1 ± scale``; pixels outside the image repeat the border (the background, for digits)."""

    degrees: float
    translate: float
    scale: float

    @classmethod
    def of(cls, config: TrainConfig) -> Affine:
        """The ranges ``config``'s ``augment_*`` settings ask for."""
        return cls(config.augment_degrees, config.augment_translate, config.augment_scale)

    def matrices(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random 2x3 matrices mapping output to input coordinates (``affine_grid``)."""
        u = torch.rand(n, 4, generator=generator) * 2 - 1  # uniform in [-1, 1)
        angle = u[:, 0] * math.radians(self.degrees)
        zoom = 1 + u[:, 1] * self.scale
        shift = u[:, 2:] * self.translate * 2  # grid coordinates span 2 per side
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        return torch.stack(
            [
                torch.stack([cos, -sin, shift[:, 0]], dim=1),
                torch.stack([sin, cos, shift[:, 1]], dim=1),
            ],
            dim=1,
        )

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        theta = self.matrices(len(images), generator).to(images.device, images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


Augmenter = Callable[[torch.Tensor], torch.Tensor]


def make_augmenter(
    kind: str,
    affine: Affine,
    input_shape: tuple[int, ...],
    generator: torch.Generator,
    dataset: str = "the dataset",
) -> Augmenter | None:
    """What training applies to each batch of inputs (``None`` for ``none``); refuses inputs
    that are not images (channels x height x width) before any training."""
    if kind == "none":
        return None
    if len(input_shape) != 3:
        raise BenchError(
            f"augment={kind} needs image inputs (channels x height x width); {dataset} has "
            f"inputs of shape {tuple(input_shape)}"
        )
    return lambda images: affine(images, generator)


def augmentation_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed + SEED_OFFSET)
