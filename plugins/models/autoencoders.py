"""Autoencoders and the course's VAE: models of the ``reconstruction`` and ``vae`` tasks.

Each has ``encode(x)`` (the code; a VAE's posterior mean) and ``decode(z)`` (an image shaped like
the input, in [0, 1]), which the tasks use for the linear probe, interpolations and samples.
"""

from __future__ import annotations

import math

import torch
from bench_plugins.models.small import DROPOUT_IMPL
from torch import nn

from harness.options import Option
from harness.registry.specs import ModelSpec
from harness.training.layers import make_dropout

LATENT = Option(16, "size of the code", "int", minimum=1)
HIDDEN = Option(128, "hidden units of the encoder and of the decoder", "int", minimum=1)


class Autoencoder(nn.Module):
    """An encoder to ``latent`` numbers and a decoder back to an image shaped like the input."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, shape: tuple[int, ...]):
        super().__init__()
        self.encoder, self.decoder, self.shape = encoder, decoder, shape

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(len(z), *self.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


def mlp_autoencoder(
    input_shape: tuple[int, ...],
    num_classes: int,
    latent: int,
    hidden: int,
    dropout: float,
    dropout_impl: str,
) -> Autoencoder:
    pixels = math.prod(input_shape)
    encoder = nn.Sequential(
        nn.Flatten(),
        nn.Linear(pixels, hidden),
        nn.ReLU(),
        make_dropout(dropout, dropout_impl),
        nn.Linear(hidden, latent),
    )
    decoder = nn.Sequential(
        nn.Linear(latent, hidden), nn.ReLU(), nn.Linear(hidden, pixels), nn.Sigmoid()
    )
    return Autoencoder(encoder, decoder, tuple(input_shape))


def conv_autoencoder(
    input_shape: tuple[int, ...], num_classes: int, latent: int, channels: int
) -> Autoencoder:
    """Two stride-2 convolutions down to a quarter of the side, a linear code, and two
    transposed convolutions back: for images whose sides are multiples of 4."""
    c, h, w = input_shape
    if h % 4 or w % 4:
        raise ValueError(f"conv-autoencoder needs image sides that are multiples of 4, not {h}x{w}")
    inner = (2 * channels, h // 4, w // 4)
    encoder = nn.Sequential(
        nn.Conv2d(c, channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(math.prod(inner), latent),
    )
    decoder = nn.Sequential(
        nn.Linear(latent, math.prod(inner)),
        nn.ReLU(),
        nn.Unflatten(1, inner),
        nn.ConvTranspose2d(2 * channels, channels, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(channels, c, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )
    return Autoencoder(encoder, decoder, tuple(input_shape))


class VariationalAutoencoder(nn.Module):
    """The course's VAE (lab 12): encoder 784-100-100 (ReLU, dropout 0.2, sigmoid), mean and
    log-variance heads, decoder BatchNorm1d(latent)-100-100-784 with a sigmoid output.

    The course's code feeds its second head into the sampling step as a standard deviation
    while its loss treats it as a log variance; here it is a log variance throughout, and the
    code is sampled as mean + exp(log_var / 2) * noise.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        latent: int,
        hidden: int,
        dropout: float,
        dropout_impl: str = "torch",
    ):
        super().__init__()
        pixels = math.prod(input_shape)
        self.shape = tuple(input_shape)
        self.encoder = nn.Sequential(
            nn.Flatten(),
            nn.Linear(pixels, hidden),
            nn.ReLU(),
            make_dropout(dropout, dropout_impl),
            nn.Linear(hidden, hidden),
            nn.Sigmoid(),
        )
        self.mean = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(
            nn.BatchNorm1d(latent),
            nn.Linear(latent, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, pixels),
            nn.Sigmoid(),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.mean(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z).view(len(z), *self.shape)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.encoder(x)
        mean, log_var = self.mean(hidden), self.log_var(hidden)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        return self.decode(z), mean, log_var


def vae(
    input_shape: tuple[int, ...],
    num_classes: int,
    latent: int,
    hidden: int,
    dropout: float,
    dropout_impl: str,
) -> VariationalAutoencoder:
    return VariationalAutoencoder(input_shape, latent, hidden, dropout, dropout_impl)


def register_models(register):
    register(
        ModelSpec(
            name="autoencoder",
            description="MLP autoencoder: Flatten, Linear+ReLU, Linear to the code; Linear+ReLU, "
            "Linear, Sigmoid back",
            build=mlp_autoencoder,
            accepts="any shape (flattened)",
            options={
                "latent": LATENT,
                "hidden": HIDDEN,
                "dropout": Option(
                    0.0, "dropout after the encoder's hidden layer", "float", minimum=0.0, below=1.0
                ),
                "dropout_impl": DROPOUT_IMPL,
            },
            tasks=("reconstruction",),
        )
    )
    register(
        ModelSpec(
            name="conv-autoencoder",
            description="Conv3x3 stride 2 (16, 32 channels), Linear to the code; Linear, two "
            "ConvTranspose4x4 stride 2, Sigmoid back",
            build=conv_autoencoder,
            accepts="CxHxW images, sides multiples of 4",
            options={
                "latent": LATENT,
                "channels": Option(16, "channels of the first convolution", "int", minimum=1),
            },
            tasks=("reconstruction",),
        )
    )
    register(
        ModelSpec(
            name="vae",
            description="the course's VAE: encoder 784-100-100, mean and log-variance heads, "
            "decoder BatchNorm1d-100-100-784, Sigmoid",
            build=vae,
            accepts="any shape (flattened), pixels in [0, 1]",
            options={
                "latent": Option(10, "size of the code", "int", minimum=1),
                "hidden": Option(
                    100, "hidden units of the encoder and the decoder", "int", minimum=1
                ),
                "dropout": Option(0.2, "dropout in the encoder", "float", minimum=0.0, below=1.0),
                "dropout_impl": DROPOUT_IMPL,
            },
            tasks=("vae",),
        )
    )
