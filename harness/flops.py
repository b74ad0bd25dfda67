"""Parameter and FLOP counts, dense and nonzero-aware."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


def forward_flops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """Forward FLOPs (2 x multiply-adds) counted by ``FlopCounterMode`` for one batch."""
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    inputs = torch.zeros(batch_size, *input_shape, device=device)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
