"""The linear probe: logistic regression fitted on features of the training split (an
autoencoder's codes, or raw pixels) and scored on the test split. One function, so that the
codes and the raw pixels (the dataset's baseline) are judged by exactly the same fit."""

from __future__ import annotations

import torch
from torch import nn


@torch.inference_mode()
def codes(model: nn.Module, x: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """The model's codes of ``x`` (``model.encode``, a VAE's posterior means) in eval mode,
    batched, on the CPU."""
    model.eval()
    return torch.cat([model.encode(x[i : i + batch]) for i in range(0, len(x), batch)]).cpu()


def has_class_labels(targets: torch.Tensor) -> bool:
    """Whether ``targets`` are class indices, one per sample (what a probe predicts)."""
    return targets.dim() == 1 and targets.dtype == torch.long


def probe_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor
) -> float:
    """Test accuracy of a standardised logistic regression on flattened features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def rows(x: torch.Tensor):
        return x.detach().flatten(1).cpu().numpy()

    fit = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    fit.fit(rows(train_x), train_y.cpu().numpy())
    return float(fit.score(rows(test_x), test_y.cpu().numpy()))
