"""Layers the harness offers models beside torch's own."""

from __future__ import annotations

import torch
from torch import nn


class BernoulliDropout(nn.Module):
    """Dropout written out: keep each unit with probability 1-p and scale kept units by 1/(1-p).

    The scaling ("inverted dropout") keeps each unit's expected value unchanged in training, so
    evaluation needs no rescaling; in eval mode the layer is the identity, like ``nn.Dropout``.
    """

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.bernoulli(torch.full_like(x, 1.0 - self.p))
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def make_dropout(p: float, impl: str = "torch") -> nn.Module:
    """``nn.Dropout(p)`` or the hand-written :class:`BernoulliDropout` (``impl="bernoulli"``)."""
    return BernoulliDropout(p) if impl == "bernoulli" else nn.Dropout(p)
