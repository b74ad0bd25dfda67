"""A stacked group where it executes: its members trained together, then each run executed by its
procedure as alone, taking its training from the group.

Each member is built exactly as ``train_and_test`` builds it alone (its splits, then the seed,
then the model), so that the stacked model starts from the same weights and random state, and
its trained weights and result wait in ``ctx.stacked`` for the run's own ``train_and_test``.
When the built models turn out not to stack (a layer the parent could not see at the model's
own input shape, splits of different sizes), or the group's training fails as a whole, every
member trains alone instead, and its record says why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from harness.execution.interrupts import RunTimeout, time_limit
from harness.execution.outcome import execute_run, failure
from harness.execution.stacking import VARIED_TRAIN
from harness.planning.protocol import Procedure, RunContext
from harness.planning.suite_files import Run
from harness.planning.train_settings import TrainConfig
from harness.training.loop import TrainResult
from harness.training.stacked.model import refusal, signature
from harness.training.stacked.trainer import Member, train_stacked
from harness.training.steps import seeded_model, task_of


class NotStackable(Exception):
    """The group's models or data turned out not to stack; the message says why."""


@dataclass
class Trained:
    """A member's training, done in its group: the weights it ended with, and its result or
    what ended it (the :class:`DivergedError` it would have raised alone)."""

    weights: dict[str, torch.Tensor]
    outcome: TrainResult | BaseException

    def into(self, model: torch.nn.Module) -> TrainResult:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        model.load_state_dict(self.weights)
        return self.outcome


def execute_group(
    procedure: Procedure,
    runs: Sequence[Run],
    ctx: RunContext,
    *,
    timeout: float | None = None,
    written: Callable[[], list[str]] = list,
) -> list[dict[str, Any]]:
    """Every member's record, in the order of ``runs``, with its ``stacking`` and ``artifacts``
    (``written()``: the files written so far, each member's are those new after it)."""
    stacking: dict[str, Any]
    try:
        with time_limit(timeout * len(runs) if timeout else None):
            trained, seconds = train_group(ctx, [run.config for run in runs])
    except NotStackable as exc:
        stacking = {"reason": f"its group could not stack: {exc}"}
    except (Exception, RunTimeout) as exc:
        stacking = {
            "reason": f"its group's training failed ({failure(exc)[1]}), so it trained alone"
        }
    else:
        ctx.stacked.update(trained)
        stacking = {
            "group": group_id(runs),
            "size": len(runs),
            "members": [run.id for run in runs],
            "train_seconds": seconds,
            "train_seconds_share": seconds / len(runs),
        }
    records, before = [], set(written())
    try:
        for run in runs:
            record = execute_run(procedure, run, ctx, timeout=timeout)
            now = written()
            records.append({**record, "stacking": stacking, "artifacts": sorted(set(now) - before)})
            before = set(now)
    finally:
        ctx.stacked.clear()
    return records


def group_id(runs: Sequence[Run]) -> str:
    """A short name for the group, the same for the same members."""
    return hashlib.sha256(" ".join(run.hash for run in runs).encode()).hexdigest()[:12]


def train_group(
    ctx: RunContext, configs: Sequence[dict[str, Any]]
) -> tuple[dict[str, Trained], float]:
    """Build the members as alone, check they stack, and train them together; each member's
    training by run name, and the group's training seconds."""
    members = [_member(ctx, config) for config in configs]
    _check(members)
    task = task_of(ctx, members[0].splits)
    results = train_stacked(members, task=task, device=ctx.device, on_epoch=ctx.on_epoch)
    trained = {
        config["name"]: Trained(member.model.state_dict(), result)
        for config, member, result in zip(configs, members, results, strict=True)
    }
    seconds = max((r.seconds for r in results if isinstance(r, TrainResult)), default=0.0)
    return trained, seconds


def _member(ctx: RunContext, config: dict[str, Any]) -> Member:
    splits, model = seeded_model(ctx, config)
    train = TrainConfig.from_options(config["train"])
    return Member(model, splits, train, config["seed"], torch.get_rng_state())


def _check(members: Sequence[Member]) -> None:
    """Refuse what only the built models and loaded data show."""
    for member in members:
        why = refusal(member.model)
        if why:
            raise NotStackable(why)
    if len({signature(m.model) for m in members}) > 1:
        raise NotStackable("its members' models differ in more than dropout")
    for split in ("train", "val"):
        if len({len(getattr(m.splits, split)) for m in members}) > 1:
            raise NotStackable(f"its members' {split} splits differ in size")
    if len({m.splits.task for m in members}) > 1:
        raise NotStackable("its members train for different tasks")
    shared = [
        {k: v for k, v in m.config.to_dict().items() if k not in VARIED_TRAIN} for m in members
    ]
    if any(settings != shared[0] for settings in shared):
        raise NotStackable("its members' training settings differ in more than regularization")
