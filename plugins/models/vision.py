"""torchvision's ResNet-18 and AlexNet, randomly initialised, for any channel count and classes.

Pretrained weights are never downloaded: ``weights=PATH`` loads a state dict the user saved
(``weights_only=True``); layers whose shapes differ (the classifier head, a 1-channel stem) keep
their fresh initialisation, as in transfer learning. ``freeze=true`` trains only the new head
(feature extraction).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from harness.errors import BenchError
from harness.options import Option
from harness.registry.specs import ModelSpec


def resnet18(input_shape, num_classes, weights="", freeze=False):
    import torchvision  # imported when a model is built: it adds ~1.5 s to every bench start

    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if input_shape[0] != 3:
        model.conv1 = nn.Conv2d(input_shape[0], 64, kernel_size=7, stride=2, padding=3, bias=False)
    return _finish(model, weights, freeze, head=model.fc)


def alexnet(input_shape, num_classes, weights="", freeze=False, dropout=0.5):
    import torchvision

    model = torchvision.models.alexnet(weights=None, num_classes=num_classes, dropout=dropout)
    if input_shape[0] != 3:
        model.features[0] = nn.Conv2d(input_shape[0], 64, kernel_size=11, stride=4, padding=2)
    return _finish(model, weights, freeze, head=model.classifier[-1])


def _finish(model: nn.Module, weights: str, freeze: bool, head: nn.Module) -> nn.Module:
    if weights:
        load_matching_weights(model, Path(weights).expanduser())
    if freeze:
        for p in model.parameters():
            p.requires_grad_(False)
        for p in head.parameters():
            p.requires_grad_(True)
    return model


def load_matching_weights(model: nn.Module, path: Path) -> list[str]:
    """Load a local state dict safely; return the keys left at their initialisation."""
    if not path.is_file():
        raise BenchError(f"weights file {path} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise BenchError(f"weights file {path} has no tensor matching the model's layers")
    model.load_state_dict(matching, strict=False)
    return sorted(set(own) - set(matching))


def _options(with_dropout: bool) -> dict[str, Option]:
    options = {
        "weights": Option("", "path of a local state dict to start from (never downloaded)", "str"),
        "freeze": Option(False, "train only the classifier head (feature extraction)", "bool"),
    }
    if with_dropout:
        options["dropout"] = Option(
            0.5, "dropout probability in the classifier", "float", minimum=0.0, below=1.0
        )
    return options


def register_models(register):
    register(
        ModelSpec(
            "resnet18",
            "torchvision ResNet-18, random init (any channels/classes)",
            resnet18,
            input_shape=(3, 224, 224),
            accepts="CxHxW images, >= 32x32",
            options=_options(False),
        )
    )
    register(
        ModelSpec(
            "alexnet",
            "torchvision AlexNet, random init (any channels/classes)",
            alexnet,
            input_shape=(3, 224, 224),
            accepts="CxHxW images, >= 63x63",
            options=_options(True),
        )
    )
