"""The course's CIFAR-10 MLP with hand-written backpropagation, beside the same MLP on autograd.

3072 inputs, 100 sigmoid units, a softmax over 10 classes and the cross-entropy loss, on raw
tensors (no ``nn.Module``). Backpropagation is written out as the course writes it: the output
error ``p - y`` (the gradient of the loss summed over the batch), through ``w2``, times the
sigmoid's derivative ``h (1 - h)``, into ``w1``. The autograd twin computes the gradient of the
same summed loss with ``torch.autograd``; :func:`gradient_check` compares the two, and
:func:`train_mlp` trains with either, from the same initial weights on the same batches, so the
two trainings can be compared step for step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

Params = dict[str, torch.Tensor]
Gradients = Callable[[Params, torch.Tensor, torch.Tensor], Params]


@dataclass(frozen=True)
class MLPConfig:
    """The course's settings: lr 1e-3 decayed by 0.9 per epoch, batch 50, init scale 1e-5."""

    hidden: int = 100
    init_std: float = 1e-5
    lr: float = 1e-3
    lr_decay: float = 0.9
    batch_size: int = 50
    epochs: int = 10


def init_params(inputs: int, classes: int, config: MLPConfig, seed: int) -> Params:
    generator = torch.Generator().manual_seed(seed)
    return {
        "w1": torch.randn(inputs, config.hidden, generator=generator) * config.init_std,
        "b1": torch.zeros(config.hidden),
        "w2": torch.randn(config.hidden, classes, generator=generator) * config.init_std,
        "b2": torch.zeros(classes),
    }


def forward(params: Params, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden activations and the class probabilities of flattened inputs ``x``."""
    hidden = torch.sigmoid(x @ params["w1"] + params["b1"])
    return hidden, torch.softmax(hidden @ params["w2"] + params["b2"], dim=1)


def summed_loss(probabilities: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """Cross-entropy summed over the batch (the loss whose gradient backprop computes)."""
    return -(onehot * torch.log(probabilities)).sum()


def manual_gradients(params: Params, x: torch.Tensor, onehot: torch.Tensor) -> Params:
    """Backpropagation by hand, no autograd."""
    hidden, probabilities = forward(params, x)
    output_error = probabilities - onehot  # d loss / d logits, softmax and cross-entropy
    hidden_error = (output_error @ params["w2"].T) * hidden * (1 - hidden)
    return {
        "w2": hidden.T @ output_error,
        "b2": output_error.sum(dim=0),
        "w1": x.T @ hidden_error,
        "b1": hidden_error.sum(dim=0),
    }


def autograd_gradients(params: Params, x: torch.Tensor, onehot: torch.Tensor) -> Params:
    """The same gradients from ``torch.autograd``."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in params.items()}
    _, probabilities = forward(leaves, x)
    grads = torch.autograd.grad(summed_loss(probabilities, onehot), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True))


def gradient_check(params: Params, x: torch.Tensor, onehot: torch.Tensor) -> dict[str, float]:
    """The largest relative difference between hand-written and autograd gradients, per
    tensor, relative to the largest autograd gradient entry of that tensor."""
    manual, auto = manual_gradients(params, x, onehot), autograd_gradients(params, x, onehot)
    return {
        name: (
            (manual[name] - auto[name]).abs().max() / auto[name].abs().max().clamp_min(1e-30)
        ).item()
        for name in params
    }


def accuracy(params: Params, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (forward(params, x)[1].argmax(dim=1) == y).float().mean().item()


def batches(
    x: torch.Tensor, y: torch.Tensor, size: int, seed: int, epochs: int
) -> Iterable[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Each epoch's shuffled batches, the same for every gradient function given the seed."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        yield [(x[i], y[i]) for i in order.split(size)]


def train_mlp(
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: int,
    config: MLPConfig,
    gradients: Gradients,
    seed: int,
) -> tuple[Params, list[dict[str, float]]]:
    """Plain SGD with ``gradients`` (hand-written or autograd); per-epoch mean loss and the
    running training accuracy. Returns the trained parameters and that history."""
    params = {k: v.clone() for k, v in params.items()}
    lr, history = config.lr, []
    for epoch, epoch_batches in enumerate(batches(x, y, config.batch_size, seed, config.epochs), 1):
        loss_sum, correct = 0.0, 0
        for inputs, labels in epoch_batches:
            onehot = torch.nn.functional.one_hot(labels, classes).float()
            with torch.no_grad():
                _, probabilities = forward(params, inputs)
                loss_sum += summed_loss(probabilities, onehot).item()
                correct += (probabilities.argmax(dim=1) == labels).sum().item()
            step = gradients(params, inputs, onehot)
            with torch.no_grad():
                for name in params:
                    params[name] = params[name] - lr * step[name]
        loss = loss_sum / len(y)
        if not math.isfinite(loss):
            raise RuntimeError(f"the MLP's loss became {loss} in epoch {epoch}")
        history.append({"epoch": epoch, "train_loss": loss, "train_accuracy": correct / len(y)})
        lr *= config.lr_decay
    return params, history
