"""The course's first labs on the manual's own data points: linear, multiple linear and logistic
regression (lab 3), the XOR network (lab 4) and the CIFAR-10 MLP with hand-written
backpropagation beside autograd (the course's assignment on backprop).

Each lab function takes the run context, a seed and ``quick`` and returns what the ``course``
report shows: a one-line ``headline``, the numbers behind it (``figures``) and, where the lab
draws one, a loss ``curve`` per epoch. Every setting the manual gives is used as given; where it
gives none, the choice is stated in the headline's lab description (:mod:`course`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from bench_plugins.procedures.course.manual_backprop import (
    MLPConfig,
    accuracy,
    autograd_gradients,
    gradient_check,
    init_params,
    manual_gradients,
    train_mlp,
)
from torch import nn

from harness.planning.protocol import RunContext
from harness.training.loop import seed_everything

# Lab 3, the manual's data (lines 956-961, 1171-1176 and 1182-1184 of the lab manual).
LINEAR_X = [5.0, 7.0, 12.0, 16.0, 20.0]
LINEAR_Y = [40.0, 120.0, 180.0, 210.0, 240.0]
MULTIPLE_X = [[3.0, 8.0], [4.0, 5.0], [5.0, 7.0], [6.0, 3.0], [2.0, 1.0]]
MULTIPLE_Y = [-3.7, 3.5, 2.5, 11.5, 5.7]
MULTIPLE_CHECK = [3.0, 2.0]  # "verify your answer for the data point X1=3, X2=2"
LOGISTIC_X = [1.0, 5.0, 10.0, 10.0, 25.0, 50.0, 70.0, 75.0, 100.0]
LOGISTIC_Y = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
# Lab 4: the XOR truth table.
XOR_X = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
XOR_Y = [0.0, 1.0, 1.0, 0.0]
NOISE = 24.0  # the synthetic stand-in for CIFAR-10: per-pixel noise around class prototypes


def _least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weights then bias of the exact least-squares fit: the optimum gradient descent nears."""
    design = np.column_stack([x, np.ones(len(x))])
    return np.linalg.lstsq(design, y, rcond=None)[0]


def linear_regression(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
    """Lab 3: y = w x + b from w = b = 1, gradient descent on the mean squared error with
    autograd, lr 0.001, 100 epochs, as the manual does it."""
    x, y = torch.tensor(LINEAR_X), torch.tensor(LINEAR_Y)
    w = torch.ones(1, requires_grad=True)
    b = torch.ones(1, requires_grad=True)
    curve = []
    for _ in range(100):
        loss = ((w * x + b - y) ** 2).mean()
        curve.append(loss.item())
        loss.backward()
        with torch.no_grad():
            w -= 0.001 * w.grad
            b -= 0.001 * b.grad
        w.grad = b.grad = None
    final = ((w * x + b - y) ** 2).mean().item()
    best_w, best_b = _least_squares(np.array(LINEAR_X), np.array(LINEAR_Y))
    best = float(np.mean((best_w * np.array(LINEAR_X) + best_b - np.array(LINEAR_Y)) ** 2))
    return {
        "headline": f"w = {w.item():.3f}, b = {b.item():.3f}, MSE {curve[0]:,.0f} → {final:,.1f}"
        f" (least squares: w = {best_w:.3f}, b = {best_b:.3f}, MSE {best:,.1f})",
        "figures": {"w": w.item(), "b": b.item(), "mse": final, "ls_w": best_w, "ls_b": best_b},
        "curve": curve,
    }


def _full_batch(model, optimizer, loss_fn, x, y, epochs: int) -> list[float]:
    """Train on all points at once for ``epochs`` steps; the loss before each step."""
    curve = []
    for _ in range(epochs):
        loss = loss_fn(model(x), y)
        curve.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return curve


def multiple_regression(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
    """Lab 3: nn.Linear(2, 1) on the five subjects, SGD on the mean squared error."""
    seed_everything(seed)
    x, y = torch.tensor(MULTIPLE_X), torch.tensor(MULTIPLE_Y).unsqueeze(1)
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    curve = _full_batch(model, optimizer, nn.functional.mse_loss, x, y, 2000 if quick else 5000)
    with torch.no_grad():
        predicted = model(torch.tensor([MULTIPLE_CHECK])).item()
    (w1, w2), b = model.weight[0].tolist(), model.bias.item()
    ls = _least_squares(np.array(MULTIPLE_X), np.array(MULTIPLE_Y))
    ls_predicted = float(ls[:2] @ np.array(MULTIPLE_CHECK) + ls[2])
    return {
        "headline": f"w1 = {w1:.3f}, w2 = {w2:.3f}, b = {b:.3f}; y(3, 2) = {predicted:.3f} "
        f"(least squares: {ls[0]:.3f}, {ls[1]:.3f}, {ls[2]:.3f}; y(3, 2) = {ls_predicted:.3f})",
        "figures": {"w1": w1, "w2": w2, "b": b, "y_3_2": predicted, "ls_y_3_2": ls_predicted},
        "curve": curve,
    }


def logistic_regression(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
    """Lab 3: p = sigmoid(w x + b) on the nine points, binary cross-entropy, Adam."""
    seed_everything(seed)
    x, y = torch.tensor(LOGISTIC_X).unsqueeze(1), torch.tensor(LOGISTIC_Y).unsqueeze(1)
    model = nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = nn.functional.binary_cross_entropy_with_logits
    curve = _full_batch(model, optimizer, loss, x, y, 1000 if quick else 3000)
    with torch.no_grad():
        correct = ((model(x) > 0).float() == y).float().mean().item()
    boundary = -model.bias.item() / model.weight.item()
    return {
        "headline": f"{correct:.0%} of the 9 points right; p = 0.5 at x = {boundary:.1f} (the "
        f"classes are separable anywhere in 25 < x < 50); loss {curve[-1]:.3f}",
        "figures": {"accuracy": correct, "boundary": boundary, "loss": curve[-1]},
        "curve": curve,
    }


def xor(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
    """Lab 4: Linear(2, 2), Sigmoid, Linear(2, 1), MSE, SGD lr 0.03, batch 1, shuffled,
    10,000 epochs, torch.manual_seed(42), as in the manual."""
    torch.manual_seed(42 + seed)
    model = nn.Sequential(nn.Linear(2, 2), nn.Sigmoid(), nn.Linear(2, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.03)
    x, y = torch.tensor(XOR_X), torch.tensor(XOR_Y)
    curve, epochs = [], 2000 if quick else 10000
    for _ in range(epochs):
        total = 0.0
        for i in torch.randperm(4):
            loss = nn.functional.mse_loss(model(x[i : i + 1]).flatten(), y[i : i + 1])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item()
        curve.append(total / 4)
    with torch.no_grad():
        outputs = model(x).flatten().tolist()
    solved = all(abs(o - t) < 0.5 for o, t in zip(outputs, XOR_Y, strict=True))
    shown = ", ".join(f"{o:.2f}" for o in outputs)
    params = sum(p.numel() for p in model.parameters())
    return {
        "headline": f"outputs for 00, 01, 10, 11: {shown} ({'solved' if solved else 'not solved'}"
        f" after {epochs:,} epochs); {params} parameters; MSE {curve[-1]:.4f}",
        "figures": {"outputs": outputs, "solved": solved, "params": params, "mse": curve[-1]},
        "curve": curve[::50],
        "curve_every": 50,
    }


def cifar_backprop(ctx: RunContext, seed: int, quick: bool) -> dict[str, Any]:
    """The CIFAR-10 MLP (3072-100 sigmoid-10 softmax) trained with hand-written
    backpropagation and with autograd from the same weights on the same batches; CIFAR-10
    from disk when it is there, else synthetic 3x32x32 images: a N(0, 1) prototype per class
    plus N(0, NOISE^2) noise, hard enough that this MLP reaches about CIFAR-10's accuracy."""
    (x, y), (x_test, y_test), data = _cifar_or_synthetic(ctx, seed, quick)
    config = MLPConfig(epochs=3 if quick else 10)
    params = init_params(x.shape[1], 10, config, seed)
    first = torch.nn.functional.one_hot(y[: config.batch_size], 10).float()
    check = gradient_check(params, x[: config.batch_size], first)
    manual, history = train_mlp(params, x, y, 10, config, manual_gradients, seed)
    auto, auto_history = train_mlp(params, x, y, 10, config, autograd_gradients, seed)
    drift = max((manual[k] - auto[k]).abs().max().item() for k in manual)
    test = accuracy(manual, x_test, y_test)
    return {
        "headline": f"{data}: test accuracy {test:.1%} hand-written, "
        f"{accuracy(auto, x_test, y_test):.1%} autograd; largest gradient difference "
        f"{max(check.values()):.1e} (relative); weights {drift:.1e} apart after "
        f"{config.epochs} epochs",
        "figures": {
            "data": data,
            "test_accuracy": test,
            "autograd_test_accuracy": accuracy(auto, x_test, y_test),
            "gradient_difference": check,
            "weight_difference": drift,
            "train_accuracy": history[-1]["train_accuracy"],
            "autograd_train_accuracy": auto_history[-1]["train_accuracy"],
        },
        "curve": [e["train_loss"] for e in history],
    }


def _cifar_or_synthetic(ctx: RunContext, seed: int, quick: bool):
    """Flattened train and test tensors, and what they are."""
    spec = ctx.registry.datasets.get("cifar10")
    if spec.unavailable(spec.resolve({}), ctx.data) is None:
        splits = spec.open({}, ctx.data)
        limit = 5000 if quick else 20000
        train, test = splits.train, splits.test
        return (
            (train.x[:limit].flatten(1), train.y[:limit]),
            (test.x[: limit // 4].flatten(1), test.y[: limit // 4]),
            f"CIFAR-10 ({min(limit, len(train)):,} training images)",
        )
    generator = torch.Generator().manual_seed(seed)
    prototypes = torch.randn(10, 3 * 32 * 32, generator=generator)

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, 10, (n,), generator=generator)
        noise = torch.randn(n, 3 * 32 * 32, generator=generator) * NOISE
        return prototypes[labels] + noise, labels

    n = 2000 if quick else 5000
    return draw(n), draw(n // 4), f"synthetic 3x32x32 (no CIFAR-10 on disk; {n:,} images)"
