"""Parameter and FLOP counts, dense and nonzero-aware."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
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


def effective_flops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> int:
    """Forward FLOPs counting only nonzero weights of Conv/Linear layers (masked pruning).

    Dense counters see no change when weights are zeroed; here each Conv/Linear layer's
    multiply-adds are scaled by the fraction of its weights that are nonzero, and every other
    operation is counted as ``FlopCounterMode`` counts it.
    """
    saved: list[int] = []
    hooks = [
        module.register_forward_hook(_count_skipped_macs(saved))
        for module in model.modules()
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d))
    ]
    try:
        dense = forward_flops(model, input_shape, batch_size)
    finally:
        for hook in hooks:
            hook.remove()
    return dense - 2 * sum(saved)


def _count_skipped_macs(saved: list[int]):
    """A forward hook adding the multiply-adds that zero weights would skip to ``saved``."""

    def hook(module: nn.Module, inputs, output: torch.Tensor) -> None:
        weight = module.weight
        zeros = weight.numel() - int(torch.count_nonzero(weight))
        if isinstance(module, nn.Linear):
            uses = output.numel() // module.out_features  # rows of the batch
        else:  # each weight of a conv is used once per output position
            uses = output.numel() // output.shape[1]
        saved.append(zeros * uses)

    return hook


def step_flops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> dict[str, int]:
    """FLOPs of one batch's forward pass and of one training step (forward, loss, backward).

    Counted on a ``meta``-device stand-in that shares the model's structure but holds no data, so
    counting costs no compute and no memory even for large batches. The optimizer update is not
    counted (``FlopCounterMode`` counts matrix products and convolutions only).
    """
    stand_in = _meta_copy(model)
    inputs = torch.zeros(batch_size, *input_shape, device="meta")
    targets = torch.zeros(batch_size, dtype=torch.long, device="meta")
    stand_in.eval()
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        stand_in(inputs)
    stand_in.train()
    with FlopCounterMode(display=False) as step:
        loss = F.cross_entropy(stand_in(inputs), targets)
        if loss.requires_grad:  # a fully frozen model has nothing to differentiate
            loss.backward()
    return {"forward": int(forward.get_total_flops()), "train_step": int(step.get_total_flops())}


def _meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters and buffers are empty meta tensors (nothing is copied)."""
    memo: dict[int, torch.Tensor] = {
        id(p): nn.Parameter(torch.empty_like(p, device="meta"), requires_grad=p.requires_grad)
        for p in model.parameters()
    }
    memo.update({id(b): torch.empty_like(b, device="meta") for b in model.buffers()})
    return copy.deepcopy(model, memo)
