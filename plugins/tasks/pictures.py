"""What the autoencoders' pictures are drawn from, stored with each run (``Task.samples``):
test images beside their reconstructions, the decoded line between two codes, every test
image's code when the code has two numbers, and for the VAE images decoded from its prior.
Images are stored as rows of 0-255 integers, so ``bench report --plots`` redraws them from the
results alone (:mod:`harness.reporting.image_figures`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from bench_plugins.tasks.linear_probe import codes, has_class_labels
from torch import nn

from harness.data import Splits

SHOWN = 10  # test images shown with their reconstructions (one per class where there are ten)
STEPS = 10  # images of an interpolation, both ends included
PRIOR_SAMPLES = 32  # images decoded from the VAE's prior
PICTURE_SEED = 0  # the prior's samples are the same for every run


def _pixels(images: torch.Tensor) -> list[list[int]]:
    """Images in [0, 1] as rows of 0-255 integers: small in a JSON file, exact enough to draw."""
    flat = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return flat.reshape(len(flat), -1).tolist()


def _shown(labels: torch.Tensor | None, count: int) -> list[int]:
    """The first test image of each class (ten at most) when there are class labels, else the
    first ten."""
    if labels is None:
        return list(range(min(SHOWN, count)))
    return [int(torch.nonzero(labels == c)[0]) for c in torch.unique(labels)[:SHOWN]]


@torch.inference_mode()
def pictures(
    model: nn.Module,
    splits: Splits,
    device: torch.device,
    *,
    reconstruct: Callable[[Any], torch.Tensor],
) -> dict[str, Any]:
    """``reconstruct`` picks the reconstruction out of the model's output. Nothing is stored
    for inputs that are not images (channels x height x width)."""
    labelled = splits.labelled or splits
    x = labelled.test.x
    if x.dim() != 4:
        return {}
    labels = labelled.test.y.cpu() if has_class_labels(labelled.test.y) else None
    shown = _shown(labels, len(x))
    model.eval()
    originals = x[shown].to(device)
    images = {
        "shape": list(x.shape[1:]),
        "labels": [int(labels[i]) for i in shown] if labels is not None else None,
        "originals": _pixels(originals),
        "reconstructions": _pixels(reconstruct(model(originals))),
    }
    out = {"images": images}
    if hasattr(model, "encode") and hasattr(model, "decode"):
        ends = model.encode(originals[:2])
        weights = torch.linspace(0, 1, STEPS, device=device).unsqueeze(1)
        path = model.decode((1 - weights) * ends[0] + weights * ends[1])
        ends_labels = images["labels"][:2] if labels is not None else None
        out["interpolation"] = {"labels": ends_labels, "images": _pixels(path)}
        if labels is not None and codes(model, originals[:1]).shape[1] == 2:
            code = codes(model, x.to(device))
            out["latent"] = {"codes": np.round(code.numpy(), 3).tolist(), "labels": labels.tolist()}
    return out


@torch.inference_mode()
def vae_pictures(model: nn.Module, splits: Splits, device: torch.device) -> dict[str, Any]:
    """:func:`pictures`, and images decoded from codes drawn from the prior N(0, I): the
    course's generate_digit."""
    out = pictures(model, splits, device, reconstruct=lambda outputs: outputs[0])
    if out and hasattr(model, "encode") and hasattr(model, "decode"):
        size = codes(model, splits.test.x[:1].to(device)).shape[1]
        generator = torch.Generator().manual_seed(PICTURE_SEED)
        z = torch.randn(PRIOR_SAMPLES, size, generator=generator).to(device)
        model.eval()
        out["generated_images"] = _pixels(model.decode(z))
    return out
