"""Tasks whose targets are the inputs: ``reconstruction`` (autoencoders) and ``vae``.

Both derive their targets from any dataset's inputs (``Task.derive``), so an autoencoder runs on
``mnist-5k`` or ``digits`` as they are. Both score what the code is worth with a linear probe
(logistic regression on the frozen codes of the training split, scored on the test split), for
models that have an ``encode`` method, and store what the pictures need: test digits with their
reconstructions, an interpolation between two of them, the 2-D code of every test digit when the
code has two dimensions, and for the VAE digits decoded from its prior.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness import hookimpl
from harness.data import TensorSplit
from harness.options import BenchError
from harness.tasks import HIGHER, LOWER, DataInfo, Metric, Task, output_shape

SHOWN = 10  # test digits shown with their reconstructions (one per class where there are ten)
STEPS = 10  # images of an interpolation, both ends included
PRIOR_SAMPLES = 32  # digits decoded from the VAE's prior
PICTURE_SEED = 0  # the prior's samples are the same for every run


def derive_from_inputs(splits):
    """The same splits with every target replaced by its input; the labels stay in
    ``labelled`` for the probe and the pictures."""
    if not all(isinstance(s, TensorSplit) for s in (splits.train, splits.val, splits.test)):
        raise BenchError("reconstruction needs a dataset held as tensors (not an image folder)")

    def own(split: TensorSplit) -> TensorSplit:
        return TensorSplit(split.x, split.x)

    return replace(
        splits, train=own(splits.train), val=own(splits.val), test=own(splits.test), labelled=splits
    )


def derive_pixels(splits):
    """As :func:`derive_from_inputs`, refusing inputs outside [0, 1]: the VAE's
    Bernoulli likelihood (binary cross-entropy) is defined for pixel intensities only."""
    low, high = (float(v) for v in torch.aminmax(splits.train.x))
    if low < 0 or high > 1:
        raise BenchError(
            f"the vae task reconstructs pixel intensities in [0, 1]; this dataset's inputs run "
            f"from {low:.3g} to {high:.3g} (mnist-5k serves [0, 1] pixels)"
        )
    return derive_from_inputs(splits)


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


def _check_image(outputs: Any, targets: torch.Tensor, info: DataInfo) -> str | None:
    if isinstance(outputs, torch.Tensor) and outputs.shape == targets.shape:
        return None
    return f"returns {output_shape(outputs)} per sample; expected {tuple(targets.shape[1:])}"


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


@torch.inference_mode()
def codes(model, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """The model's codes of ``x`` in eval mode, batched (a VAE's: the posterior means)."""
    model.eval()
    return torch.cat([model.encode(x[i : i + batch]) for i in range(0, len(x), batch)]).cpu()


def probe(model, splits, device: torch.device) -> dict[str, float]:
    """Logistic regression on the frozen codes of the training split, scored on the test split;
    nothing for a model without ``encode`` or a dataset without class labels."""
    labelled = splits.labelled
    if not hasattr(model, "encode") or labelled is None or labelled.task != "classification":
        return {}
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train, test = labelled.train, labelled.test
    fit = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    fit.fit(codes(model, train.x).numpy(), train.y.cpu().numpy())
    return {"probe_accuracy": float(fit.score(codes(model, test.x).numpy(), test.y.cpu().numpy()))}


def pca_error(model, splits, device: torch.device) -> dict[str, float]:
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


def reconstruction_metrics(model, splits, device: torch.device) -> dict[str, float]:
    return {**probe(model, splits, device), **pca_error(model, splits, device)}


def _pixels(images: torch.Tensor) -> list[list[int]]:
    """Images as rows of 0-255 integers: small in a JSON file, exact enough to draw."""
    flat = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return flat.reshape(len(flat), -1).tolist()


def _shown_indices(labels: torch.Tensor) -> list[int]:
    """The first test image of each class (ten images at most), or the first ten."""
    firsts = [int(torch.nonzero(labels == c)[0]) for c in torch.unique(labels)[:SHOWN]]
    return firsts if len(firsts) > 1 else list(range(min(SHOWN, len(labels))))


def _reconstruct(outputs) -> torch.Tensor:
    return outputs[0] if isinstance(outputs, tuple) else outputs


@torch.inference_mode()
def pictures(model, splits, device: torch.device) -> dict[str, Any]:
    """What the suite's pictures are drawn from, stored with the run."""
    model.eval()
    labelled = splits.labelled or splits
    x, labels = labelled.test.x, labelled.test.y
    shown = _shown_indices(labels)
    originals = x[shown].to(device)
    decoded = _reconstruct(model(originals))
    images = {"shape": list(x.shape[1:]), "labels": [int(labels[i]) for i in shown]}
    images |= {"originals": _pixels(originals), "reconstructions": _pixels(decoded)}
    out = {"images": images}
    if hasattr(model, "encode") and hasattr(model, "decode"):
        ends = model.encode(originals[:2])
        weights = torch.linspace(0, 1, STEPS, device=device).unsqueeze(1)
        path = model.decode((1 - weights) * ends[0] + weights * ends[1])
        out["interpolation"] = {"labels": images["labels"][:2], "images": _pixels(path)}
        code = codes(model, x.to(device))
        if code.shape[1] == 2:
            out["latent"] = {"codes": np.round(code.numpy(), 3).tolist(), "labels": labels.tolist()}
    return out


@torch.inference_mode()
def vae_pictures(model, splits, device: torch.device) -> dict[str, Any]:
    """:func:`pictures`, and digits decoded from the prior N(0, I): the course's generate_digit."""
    out = pictures(model, splits, device)
    generator = torch.Generator().manual_seed(PICTURE_SEED)
    z = torch.randn(PRIOR_SAMPLES, model.latent, generator=generator).to(device)
    out["generated_images"] = _pixels(model.decode(z))
    return out


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
    check=_check_image,
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
    samples=pictures,
    derive=derive_from_inputs,
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


@hookimpl
def register_tasks(register):
    register(RECONSTRUCTION)
    register(VAE)
