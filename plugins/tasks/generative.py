"""Tasks whose targets are the inputs: ``reconstruction`` (autoencoders) and ``vae``.

Both derive their targets from a dataset's inputs (``Task.derive``), so an autoencoder runs on
a classification dataset of [0, 1] pixels such as ``mnist-5k`` as it is. Both score what the
code is worth with the linear probe (:mod:`linear_probe`), for models that have an ``encode``
method, and store what the pictures need (:mod:`generative_pictures`).
"""

from __future__ import annotations

import math
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from bench_plugins.tasks.linear_probe import codes, has_class_labels, probe_accuracy
from bench_plugins.tasks.pictures import pictures, vae_pictures
from torch import nn

from harness.data import Splits, TensorSplit
from harness.errors import BenchError
from harness.tasks import HIGHER, LOWER, DataInfo, Metric, Task, check_same_shape, output_shape


def derive_pixels(splits: Splits) -> Splits:
    """The same splits with every target replaced by its input; the labels stay in
    ``labelled`` for the probe and the pictures. Inputs must be pixel intensities in [0, 1]
    in every split: PSNR's peak is 1, the models end in a sigmoid, and the VAE's Bernoulli
    likelihood (binary cross-entropy) is defined for [0, 1] only."""
    parts = (splits.train, splits.val, splits.test)
    if not all(isinstance(split, TensorSplit) for split in parts):
        raise BenchError("reconstruction needs a dataset held as tensors (not an image folder)")
    low = min(float(split.x.min()) for split in parts)
    high = max(float(split.x.max()) for split in parts)
    if low < 0 or high > 1:
        raise BenchError(
            f"reconstruction and the vae task reconstruct pixel intensities in [0, 1]; this "
            f"dataset's inputs run from {low:.3g} to {high:.3g} (mnist-5k serves [0, 1] pixels)"
        )

    def own(split: TensorSplit) -> TensorSplit:
        return TensorSplit(split.x, split.x)

    return replace(
        splits, train=own(splits.train), val=own(splits.val), test=own(splits.test), labelled=splits
    )


class ReconstructionMeter:
    """Squared error per pixel over the split; PSNR for a peak of 1 ([0, 1] pixels)."""

    def __init__(self, info: DataInfo, train: bool):
        self.sse = None
        self.pixels = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss=None) -> None:
        error = (outputs.detach() - targets).pow(2).sum()
        self.sse = error if self.sse is None else self.sse + error
        self.pixels += targets.numel()

    def compute(self) -> dict[str, Any]:
        if self.sse is None:
            return {"loss": math.nan, "mse": math.nan, "psnr": math.nan}
        mse = self.sse.item() / max(self.pixels, 1)
        return {"loss": mse, "mse": mse, "psnr": -10 * math.log10(mse) if mse > 0 else math.inf}


def vae_terms(outputs, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed over a batch: the Bernoulli reconstruction term (binary cross-entropy, nats) and
    the KL divergence of N(mean, exp(log_var)) from N(0, I)."""
    reconstruction, mean, log_var = outputs
    bce = F.binary_cross_entropy(reconstruction, targets, reduction="sum")
    kl = -0.5 * torch.sum(1 + log_var - mean.pow(2) - log_var.exp())
    return bce, kl


def negative_elbo(outputs, targets: torch.Tensor) -> torch.Tensor:
    """Mean negative ELBO per image (one sample of the code per image), in nats."""
    bce, kl = vae_terms(outputs, targets)
    return (bce + kl) / len(targets)


class VAEMeter:
    """Negative ELBO and its two terms, in nats per image."""

    def __init__(self, info: DataInfo, train: bool):
        self.sums = None
        self.images = 0

    def update(self, outputs, targets: torch.Tensor, loss=None) -> None:
        terms = torch.stack([t.detach() for t in vae_terms(outputs, targets)])
        self.sums = terms if self.sums is None else self.sums + terms
        self.images += len(targets)

    def compute(self) -> dict[str, Any]:
        if self.sums is None:
            return {"loss": math.nan}
        bce, kl = (v / max(self.images, 1) for v in self.sums.tolist())
        return {"loss": bce + kl, "neg_elbo": bce + kl, "reconstruction": bce, "kl": kl}


def _check_vae(outputs: Any, targets: torch.Tensor, info: DataInfo) -> str | None:
    if (
        isinstance(outputs, tuple)
        and len(outputs) == 3
        and all(isinstance(o, torch.Tensor) for o in outputs)
        and outputs[0].shape == targets.shape
        and outputs[1].shape == outputs[2].shape
        and outputs[1].shape[0] == len(targets)
    ):
        return None
    return (
        f"returns {output_shape(outputs)} per sample; expected (reconstruction "
        f"{tuple(targets.shape[1:])} in [0, 1], mean (latent,), log variance (latent,))"
    )


def probe(model: nn.Module, splits: Splits, device: torch.device) -> dict[str, float]:
    """The linear probe of the frozen codes (:mod:`linear_probe`); nothing for a model without
    ``encode`` or a dataset without class labels."""
    labelled = splits.labelled
    if not hasattr(model, "encode") or labelled is None or not has_class_labels(labelled.test.y):
        return {}
    train, test = labelled.train, labelled.test
    accuracy = probe_accuracy(
        codes(model, train.x.to(device)), train.y, codes(model, test.x.to(device)), test.y
    )
    return {"probe_accuracy": accuracy}


def pca_error(model: nn.Module, splits: Splits, device: torch.device) -> dict[str, float]:
    """The test split's squared error per pixel through PCA with as many components as the
    model's code, fitted on the training split: the linear autoencoder a model must beat."""
    if not hasattr(model, "encode"):
        return {}
    from sklearn.decomposition import PCA

    train, test = (split.x.flatten(1).cpu().numpy() for split in (splits.train, splits.test))
    size = codes(model, splits.test.x[:1].to(device)).shape[1]
    pca = PCA(n_components=min(size, *train.shape), random_state=0).fit(train)
    restored = pca.inverse_transform(pca.transform(test))
    return {"pca_mse": float(np.mean((restored - test) ** 2))}


def reconstruction_metrics(
    model: nn.Module, splits: Splits, device: torch.device
) -> dict[str, float]:
    return {**probe(model, splits, device), **pca_error(model, splits, device)}


PROBE = Metric(
    "probe_accuracy",
    HIGHER,
    "fraction",
    "logistic regression on the frozen training codes, scored on the test codes",
    "probe acc",
)

RECONSTRUCTION = Task(
    name="reconstruction",
    description="the target is the input; mean squared error per pixel; PSNR for [0, 1] pixels; "
    "a linear probe of the code",
    loss=F.mse_loss,
    meter=ReconstructionMeter,
    check=check_same_shape,
    metrics=(
        Metric("mse", LOWER, "", "mean squared error per pixel", "MSE/pixel"),
        Metric("psnr", HIGHER, "dB", "peak signal-to-noise ratio, peak 1", "PSNR"),
        Metric(
            "pca_mse",
            LOWER,
            "",
            "MSE per pixel of PCA with as many components as the code (a linear autoencoder)",
            "PCA MSE/pixel",
        ),
        PROBE,
    ),
    headline="mse",
    epoch_metrics=("mse",),
    loss_unit="squared error per pixel",
    expects="a tensor shaped like the input",
    samples=partial(pictures, reconstruct=lambda outputs: outputs),
    derive=derive_pixels,
    model_metrics=reconstruction_metrics,
)

VAE = Task(
    name="vae",
    description="the target is the input in [0, 1]; negative ELBO = Bernoulli reconstruction "
    "(binary cross-entropy) + KL to N(0, I), in nats per image; a linear probe of the means",
    loss=negative_elbo,
    meter=VAEMeter,
    check=_check_vae,
    metrics=(
        Metric("neg_elbo", LOWER, "nats", "negative evidence lower bound per image", "-ELBO"),
        Metric("reconstruction", LOWER, "nats", "binary cross-entropy per image", "recon"),
        Metric("kl", LOWER, "nats", "KL divergence of the posterior from the prior", "KL"),
        PROBE,
    ),
    headline="neg_elbo",
    epoch_metrics=("neg_elbo",),
    loss_unit="nats per image",
    expects="(reconstruction in [0, 1] shaped like the input, mean, log variance)",
    samples=vae_pictures,
    derive=derive_pixels,
    model_metrics=probe,
)


def register_tasks(register):
    register(RECONSTRUCTION)
    register(VAE)
