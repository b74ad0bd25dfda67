"""Which runs of a suite may train together as one stacked model, and in what groups.

Runs stack when their procedure says its runs may (``Procedure.stacks``) and they differ only in
what a stacked model can give each member on its own: the seed (each member keeps its own split
and batch order), dropout rates, weight decay and its mode, L1 and L2 penalties, and early
stopping's patience. Everything else must be the same: the model's layers, the dataset and its
options, epochs, batch sizes, the optimizer and its learning rate. A run that cannot stack
trains alone, as it always did, and its record says why (``stacking.reason``); so does a run
whose group turned out not to stack, or failed as a whole, which then trains alone too.

Stacking is exact, bit for bit, on the CPU at one thread per run
(:mod:`harness.training.stacked.model`): other runs are never stacked. The scheduler asks
:meth:`Stacking.group` for the runs to start with a ready one, and splits the ready runs of one
kind over the free workers (``--jobs 2`` trains two groups side by side).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.planning.suite_files import Run
from harness.registry.specs import Registry

# What members may differ in: each member's own in the stacked model (the seed too).
VARIED_TRAIN = ("weight_decay", "weight_decay_mode", "l1", "l2_loss", "patience")
OPTIMIZERS = ("sgd", "adam", "adamw")
# Members per group: larger groups do fewer, larger operations, but past a few dozen members
# their activations leave the CPU's caches. For the regularization MLP, one thread, 81 members
# trained in groups of 81, 41, 27, 20, 14 and 9 took 1.31, 1.10, 1.07, 1.00, 1.01 and 1.07
# times the best at batch 128, and 1.38, 1.04, 1.00, 1.00, 1.05, 1.14 at batch 32.
MOST_MEMBERS = 24
MOST_PARAMETERS = 50_000_000  # over all members of a group: 200 MB of float32 weights
MODES = ("auto", "off")


@dataclass
class Stacking:
    """Each stackable run's kind (runs of one kind train together) and each other run's reason."""

    kinds: dict[int, Hashable] = field(default_factory=dict)
    reasons: dict[int, str] = field(default_factory=dict)
    most: dict[Hashable, int] = field(default_factory=dict)  # members per group, by kind

    def group(self, run: Run, ready: Sequence[Run], free_slots: int) -> list[Run]:
        """``run`` and the ready runs of its kind to train with it: the ready ones shared
        evenly over the free slots, or over as many groups of at most the kind's largest size
        as they need. Just ``[run]`` if none."""
        kind = self.kinds.get(run.index)
        if kind is None:
            return [run]
        same = [run] + [r for r in ready if r is not run and self.kinds.get(r.index) == kind]
        groups = max(free_slots, math.ceil(len(same) / self.most[kind]))
        size = math.ceil(len(same) / groups)
        if size < 2:
            self.reasons.setdefault(run.index, "no other run of its kind was ready to stack with")
            return [run]
        return same[:size]

    def alone(self, run: Run, reason: str) -> None:
        """Train ``run`` alone from now on (its group could not train), saying why."""
        self.kinds.pop(run.index, None)
        self.reasons[run.index] = reason


def plan_stacking(
    runs: Sequence[Run], registry: Registry, mode: str, *, threads: int | None, device: str
) -> Stacking | None:
    """The kind of every run that may stack, and why each other run may not; ``None`` when
    stacking is off."""
    if mode == "off":
        return None
    stacking = Stacking()
    models: dict[str, tuple[Any, int] | str] = {}
    for run in runs:
        reason = _refusal(run, registry, threads, device)
        if reason is None:
            found = _model_kind(run.config, registry, models)
            if isinstance(found, str):
                reason = found
            else:
                layers, params = found
                kind = _kind(run, layers)
                stacking.kinds[run.index] = kind
                stacking.most[kind] = max(1, min(MOST_MEMBERS, MOST_PARAMETERS // max(1, params)))
        if reason is not None:
            stacking.reasons[run.index] = reason
    return stacking


def _refusal(run: Run, registry: Registry, threads: int | None, device: str) -> str | None:
    """Why ``run`` cannot stack, as far as its configuration says; ``None`` if it may."""
    from harness.planning.train_settings import TrainConfig

    procedure = registry.procedures.get(run.procedure)
    config = run.config
    if not procedure.stacks:
        return f"procedure '{procedure.name}' does not stack its runs"
    if run.exclusive:
        return "it is timed, so it runs alone"
    if "model" not in config or "train" not in config:
        return "it trains no model"
    if device != "cpu":
        return f"stacking is exact on the CPU only, and this suite runs on {device}"
    if threads != 1:
        return (
            f"runs use {threads or 'several'} threads; stacked training equals training alone "
            "bit for bit at one thread (--threads 1)"
        )
    train = TrainConfig.from_options(config["train"])
    if train.optimizer not in OPTIMIZERS:
        return f"optimizer {train.optimizer} is not stacked ({', '.join(OPTIMIZERS)} are)"
    if train.augment != "none":
        return f"augmentation ({train.augment}) is not stacked"
    if train.save_checkpoint or train.from_checkpoint:
        return "checkpoints are saved and continued run by run"
    return None


def _model_kind(
    config: dict[str, Any], registry: Registry, models: dict[str, tuple[Any, int] | str]
) -> tuple[Any, int] | str:
    """The model's layers as stacking compares them, and its parameter count; or why it
    cannot stack. Built once per model and options, at the model's own input shape (the
    worker checks the model built for the data again)."""
    from harness.training.stacked.model import refusal, signature

    key = json.dumps([config["model"], config.get("model_options", {})], sort_keys=True)
    if key not in models:
        spec = registry.models.get(config["model"])
        try:
            model = spec.create(spec.input_shape, spec.num_classes, config.get("model_options", {}))
        except Exception as exc:  # the run itself will say what is wrong with it
            models[key] = f"its model could not be built to check it: {exc}"
        else:
            why = refusal(model)
            params = sum(p.numel() for p in model.parameters())
            models[key] = why if why else (signature(model), params)
    return models[key]


def _kind(run: Run, layers: Any) -> Hashable:
    """What runs must share to stack: everything but the seed, dropout and the varied
    training settings; the model's layers as built, not its options."""
    from harness.planning.train_settings import TrainConfig

    config = run.config
    train = TrainConfig.from_options(config["train"]).to_dict()
    shared = {key: value for key, value in train.items() if key not in VARIED_TRAIN}
    return json.dumps(
        [
            run.procedure,
            config["model"],
            layers,
            config["dataset"],
            config.get("dataset_options", {}),
            config.get("train_per_class", 0),
            shared,
        ],
        sort_keys=True,
        default=str,
    )
