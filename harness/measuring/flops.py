"""Parameter and FLOP counts, dense and nonzero-aware."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence
from torch.utils.flop_counter import FlopCounterMode

from harness.tasks import Task


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    return sum(int(torch.count_nonzero(p)) for p in model.parameters())


Example = tuple[int, ...] | torch.Tensor


def forward_flops(
    model: nn.Module, example: Example, task: Task | None = None, batch_size: int = 1
) -> int:
    """Forward FLOPs (2 x multiply-adds) counted by ``FlopCounterMode`` for one batch: of
    ``batch_size`` zero inputs of an input shape, or of an example batch of real inputs (token
    sequences, whose cost depends on their length), given to the model as ``task`` prepares it.

    Counted on a ``meta``-device stand-in of the model (see :func:`step_flops`): besides costing
    nothing, it runs the composite form of fused kernels, such as the CPU's oneDNN LSTM, whose
    matrix products the counter would otherwise not see.
    """
    prepared = _prepared(model, example, task, batch_size)
    try:
        return _count_forward(_meta_copy(model), _on_meta(prepared))
    except (NotImplementedError, RuntimeError):
        return _count_forward(model, prepared)


def _prepared(model: nn.Module, example: Example, task: Task | None, batch_size: int):
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if isinstance(example, torch.Tensor):
        inputs = example.to(device)
    else:
        inputs = torch.zeros(batch_size, *example, device=device)
    return task.prepare(inputs) if task else inputs


def _on_meta(value):
    """Model inputs with their data on the ``meta`` device; a packed sequence keeps its batch
    sizes (they stay on the CPU, as packing requires)."""
    if isinstance(value, PackedSequence):
        return value._replace(data=value.data.to("meta"))
    if isinstance(value, (tuple, list)):
        return type(value)(_on_meta(v) for v in value)
    return value.to("meta") if isinstance(value, torch.Tensor) else value


def _count_forward(model: nn.Module, inputs) -> int:
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def effective_flops(
    model: nn.Module, example: Example, task: Task | None = None, batch_size: int = 1
) -> int:
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
        dense = _count_forward(model, _prepared(model, example, task, batch_size))
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


def step_flops(
    model: nn.Module, task: Task, inputs: torch.Tensor, targets: torch.Tensor
) -> dict[str, int]:
    """FLOPs of one batch's forward pass and of one training step (forward, the task's loss,
    backward) on ``inputs`` and ``targets``.

    Counted on a ``meta``-device stand-in that shares the model's structure but holds no data,
    so counting costs no compute and no memory even for large batches (the task prepares the
    real inputs first: packing reads the sequences' lengths). Where the stand-in cannot run, a
    copy of the model on the inputs' device is counted instead. The optimizer update is not
    counted (``FlopCounterMode`` counts matrix products and convolutions only).
    """
    prepared = task.prepare(inputs)
    try:
        meta = _meta_copy(model)
        return _count_step(meta, task, _on_meta(prepared), targets.to("meta"))
    except (NotImplementedError, RuntimeError):
        return _count_step(copy.deepcopy(model), task, prepared, targets)


def _count_step(model: nn.Module, task: Task, prepared, targets: torch.Tensor) -> dict[str, int]:
    model.eval()
    with FlopCounterMode(display=False) as forward, torch.no_grad():
        model(prepared)
    model.train()
    with FlopCounterMode(display=False) as step:
        loss = task.loss(model(prepared), targets)
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
