"""Training the members of a stacked model together, each exactly as
:func:`harness.training.loop.train` trains it alone: the same batches in the same order (each
member its own split and shuffling generator; members that share both share the batch), the
same dropout draws, the same losses and updates, the same per-epoch records, early stopping and
divergence, member by member.

What is shared is only the work: one forward, one backward and one optimizer step for all
members. A member that diverges or stops early leaves the sum the backward pass starts from (its
slice of the stack goes on being computed, and is never read again); the others go on
unaffected, since no operation mixes members.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from harness.data import NO_VALIDATION, Splits, iterate_batches
from harness.errors import BenchError, DivergedError
from harness.planning.train_settings import TrainConfig
from harness.tasks import Task
from harness.training.loop import TrainResult, penalty
from harness.training.stacked.model import StackedModel
from harness.training.stacked.optimizers import MemberSettings, StackedOptimizer


@dataclass
class Member:
    """One run of a stacked group: its model as built alone (seeded), the splits it trains on,
    its training settings and seed, and the random state right after its model was built."""

    model: nn.Module
    splits: Splits
    config: TrainConfig
    seed: int
    rng_state: torch.Tensor


@dataclass
class _Progress:
    """A member's training so far, as :func:`harness.training.loop.train` keeps it."""

    result: TrainResult = field(default_factory=TrainResult)
    best_loss: float = math.inf
    best: list[torch.Tensor] | None = None
    ended: BaseException | None = None  # DivergedError, or a refusal before the first step
    done: bool = False  # stopped early, diverged or refused: no longer trained or recorded
    seconds: float = 0.0


def train_stacked(
    members: Sequence[Member],
    *,
    task: Task,
    device: torch.device,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[TrainResult | BaseException]:
    """Train every member, its model updated in place; for each, its :class:`TrainResult` (no
    ``state``: stacked runs keep no checkpoint) or the exception training it alone would raise."""
    stack = StackedModel([m.model for m in members], [m.rng_state for m in members])
    configs = [m.config for m in members]
    first = configs[0]
    optimizer = StackedOptimizer(
        first.optimizer,
        stack.parameters,
        stack.decayed,
        [_settings(c) for c in configs],
        lr=first.lr,
        momentum=first.momentum if first.optimizer == "sgd" else 0.0,
    )
    progress = [_Progress() for _ in members]
    for member, state in zip(members, progress, strict=True):
        if member.config.patience and not len(member.splits.val):
            what = f"early stopping (patience {member.config.patience})"
            state.ended, state.done = BenchError(NO_VALIDATION.format(what, "the dataset")), True
    batches = _Batches(members, device)
    begin = time.perf_counter()
    for epoch in range(1, first.epochs + 1):
        if all(state.done for state in progress):
            break
        started = time.perf_counter()
        live = [not state.done for state in progress]
        running = _train_epoch(stack, optimizer, members, progress, task, batches)
        val = _evaluate(stack, members, progress, task, batches)
        seconds = time.perf_counter() - started
        for k, state in enumerate(progress):
            if state.done and live[k] and isinstance(state.ended, DivergedError):
                error = state.ended  # as alone: where it was first seen, with the epochs before
                state.ended = DivergedError(error.loss, error.step, epoch, state.result.history)
            elif not state.done:
                patience = members[k].config.patience
                _end_epoch(stack, k, state, epoch, running[k], val[k], task, seconds, patience)
            state.seconds = time.perf_counter() - begin if live[k] else state.seconds
        reported = next((s.result.history[-1] for s in progress if s.result.history), None)
        if on_epoch and reported is not None:
            on_epoch(reported)
    return [_finish(stack, k, m, s) for k, (m, s) in enumerate(zip(members, progress, strict=True))]


def _settings(config: TrainConfig) -> MemberSettings:
    """A member's weight decay as :func:`harness.training.loop.make_optimizer` applies it."""
    decoupled = config.weight_decay_kind == "decoupled"
    return MemberSettings(weight_decay=config.weight_decay, decoupled=decoupled)


class _Batches:
    """Each member's batches: one iterator per distinct split (and seed), shuffled for training
    by a generator seeded as alone and kept from epoch to epoch, as alone."""

    def __init__(self, members: Sequence[Member], device: torch.device):
        self.members, self.device = members, device
        self.shufflers: dict[int, torch.Generator] = {}

    def of(self, split: str, batch_size: int, shuffle: bool = False) -> tuple[list, list[int]]:
        keys: dict[tuple, int] = {}
        index = [
            keys.setdefault((id(getattr(m.splits, split)), m.seed), len(keys)) for m in self.members
        ]
        streams = []
        for stream in range(len(keys)):
            member = self.members[index.index(stream)]
            generator = None
            if shuffle:
                generator = self.shufflers.setdefault(
                    stream, torch.Generator().manual_seed(member.seed)
                )
            data = getattr(member.splits, split)
            streams.append(
                iterate_batches(
                    data, batch_size, device=self.device, shuffle=shuffle, generator=generator
                )
            )
        return streams, index


def _stacked(parts: list[torch.Tensor], index: list[int]) -> torch.Tensor:
    """The members' inputs as one ``(K, batch, ...)`` tensor; one shared batch is expanded."""
    if len(parts) == 1:
        return parts[0].unsqueeze(0).expand(len(index), *parts[0].shape)
    return torch.stack([parts[i] for i in index])


def _train_epoch(
    stack: StackedModel,
    optimizer: StackedOptimizer,
    members: Sequence[Member],
    progress: list[_Progress],
    task: Task,
    batches: _Batches,
) -> list[dict[str, float] | None]:
    """One pass over every member's training split, as ``train_epoch`` makes alone."""
    stack.training = True
    streams, index = batches.of("train", members[0].config.batch_size, shuffle=True)
    meters = [task.meter(m.splits.info, True) for m in members]
    step = 0
    for step, batch in enumerate(zip(*streams, strict=True), 1):
        live = [k for k, state in enumerate(progress) if not state.done]
        if not live:  # every member diverged in this epoch
            break
        inputs = _stacked([task.prepare(x) for x, _ in batch], index)
        parts = stack(inputs).unbind(0)
        losses = {k: task.loss(parts[k], batch[index[k]][1]) for k in live}
        objectives = {k: _objective(stack, k, losses[k], members[k].config) for k in live}
        values = torch.stack(list(objectives.values())).tolist()
        for k, value in zip(live, values, strict=True):
            if not math.isfinite(value):
                progress[k].ended, progress[k].done = DivergedError(value, step), True
                del objectives[k]
        optimizer.zero_grad()
        if objectives:
            torch.stack(list(objectives.values())).sum().backward()
            optimizer.step()
        for k in objectives:
            meters[k].update(parts[k], batch[index[k]][1], losses[k])
    running: list[dict[str, float] | None] = [None] * len(members)
    for k, state in enumerate(progress):
        if not state.done:
            running[k] = meters[k].compute()
            if not math.isfinite(running[k]["loss"]):
                state.ended, state.done = DivergedError(running[k]["loss"], step), True
    return running


def _objective(stack: StackedModel, k: int, loss: torch.Tensor, config: TrainConfig):
    """The loss with the member's penalties, as ``train_epoch`` adds them alone."""
    if not (config.l1 or config.l2_loss):
        return loss
    return loss + penalty(stack.penalized(k), config)


@torch.inference_mode()
def _evaluate(
    stack: StackedModel,
    members: Sequence[Member],
    progress: list[_Progress],
    task: Task,
    batches: _Batches,
) -> list[dict[str, float]]:
    """Every member's validation metrics, as ``evaluate`` gives them alone (empty without a
    validation split)."""
    if not len(members[0].splits.val):
        return [{} for _ in members]
    stack.training = False
    streams, index = batches.of("val", members[0].config.eval_batch_size)
    meters = [task.meter(m.splits.info, False) for m in members]
    for batch in zip(*streams, strict=True):
        parts = stack(_stacked([task.prepare(x) for x, _ in batch], index)).unbind(0)
        for k, state in enumerate(progress):
            if not state.done:
                meters[k].update(parts[k], batch[index[k]][1])
    pairs = zip(meters, progress, strict=True)
    return [meter.compute() if not state.done else {} for meter, state in pairs]


def _end_epoch(
    stack: StackedModel,
    k: int,
    state: _Progress,
    epoch: int,
    running: dict[str, float],
    val: dict[str, float],
    task: Task,
    seconds: float,
    patience: int,
) -> None:
    """The member's epoch record, and early stopping's bookkeeping, as ``train`` keeps them."""
    kept = ("loss", *task.epoch_metrics)
    record = {
        "epoch": epoch,
        **{f"train_{name}": running[name] for name in kept},
        **{f"val_{name}": val[name] for name in kept if val},
        "seconds": seconds,
    }
    result = state.result
    result.history.append(record)
    if not val or val["loss"] < state.best_loss:
        state.best_loss, result.best_epoch = val.get("loss", state.best_loss), epoch
        if patience:
            state.best = [p.detach().clone() for p in stack.member_parameters(k)]
    elif patience and epoch - result.best_epoch >= patience:
        state.done = True


def _finish(stack: StackedModel, k: int, member: Member, state: _Progress):
    """The member's model given its trained weights (its best epoch's, after early stopping),
    and its result; or what ended it."""
    if state.ended is not None:
        return state.ended
    result = state.result
    result.seconds = state.seconds
    weights = stack.member_parameters(k)
    if state.best is not None:
        weights, result.restored = state.best, True
    with torch.no_grad():
        for own, trained in zip(member.model.parameters(), weights, strict=True):
            own.copy_(trained)
    return result
