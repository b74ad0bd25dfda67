"""Honest baselines for the sequence datasets: what a model must beat for its figure to mean
anything. Each takes a dataset's splits and returns test metrics in the task's own names and
units, fitted on the training split only.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

from harness.data import Splits


def _regression_metrics(predicted: np.ndarray, actual: np.ndarray, std: float) -> dict[str, float]:
    error = predicted - actual
    return {
        "test_rmse": float(np.sqrt(np.mean(error**2))) * std,
        "test_mae": float(np.mean(np.abs(error))) * std,
        "test_r2": float(1 - np.sum(error**2) / np.sum((actual - actual.mean()) ** 2)),
    }


def persistence(splits: Splits) -> dict[str, float]:
    """Tomorrow's price is today's: the last value of each window."""
    x, y = splits.test.x.numpy(), splits.test.y.numpy()
    return _regression_metrics(x[:, -1, :], y, splits.target_scale[1])


def linear_autoregression(splits: Splits) -> dict[str, float]:
    """Least squares of the next value on the window's values (and an intercept), fitted on
    the training windows."""

    def design(x: torch.Tensor) -> np.ndarray:
        flat = x.reshape(len(x), -1).numpy().astype(np.float64)
        return np.hstack([flat, np.ones((len(flat), 1))])

    coefficients, *_ = np.linalg.lstsq(design(splits.train.x), splits.train.y.numpy(), rcond=None)
    predicted = design(splits.test.x) @ coefficients
    return _regression_metrics(predicted, splits.test.y.numpy(), splits.target_scale[1])


def majority_class(splits: Splits) -> dict[str, float]:
    """Always the training split's most frequent class."""
    train, test = splits.train.y.tolist(), splits.test.y
    majority = Counter(train).most_common(1)[0][0]
    present = len(set(test.tolist()))
    return {
        "test_accuracy": float((test == majority).float().mean()),
        "test_balanced_accuracy": 1.0 / present,  # one class recalled fully, the others never
    }


def _token_counts(split) -> Counter:
    return Counter(split.x.flatten().tolist() + split.y[:, -1].tolist())


def unigram_bits(splits: Splits) -> dict[str, float]:
    """Each character by its frequency in the training text (add-one smoothed)."""
    counts = _token_counts(splits.train)
    vocabulary = splits.vocab_size
    total = sum(counts.values()) + vocabulary
    targets = splits.test.y.flatten().tolist()
    nats = -sum(math.log((counts[t] + 1) / total) for t in targets) / len(targets)
    return _language_metrics(nats)


def bigram_bits(splits: Splits) -> dict[str, float]:
    """Each character by the previous one, as counted in the training text (add-one smoothed)."""
    previous, following = splits.train.x.flatten().tolist(), splits.train.y.flatten().tolist()
    pairs = Counter(zip(previous, following, strict=True))
    firsts = Counter(previous)
    vocabulary = splits.vocab_size
    previous, following = splits.test.x.flatten().tolist(), splits.test.y.flatten().tolist()
    nats = -sum(
        math.log((pairs[(a, b)] + 1) / (firsts[a] + vocabulary))
        for a, b in zip(previous, following, strict=True)
    ) / len(following)
    return _language_metrics(nats)


def _language_metrics(nats: float) -> dict[str, float]:
    return {
        "test_loss": nats,
        "test_bits_per_token": nats / math.log(2),
        "test_perplexity": math.exp(nats),
    }
