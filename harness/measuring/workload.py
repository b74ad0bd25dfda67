"""One timing run made ready to measure: from a ``throughput`` run's configuration to a
:class:`harness.measuring.timer.Workload` on its device, with the facts that go beside its timings.

The ``throughput`` procedure prepares and measures in one go; ``bench ab``'s workers
(:mod:`harness.comparing.ab.worker`) prepare once and measure in rounds.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch

from harness.data import Split, iterate_batches
from harness.devices import device_name, resolve_device
from harness.errors import BenchError
from harness.measuring.flops import count_params, step_flops
from harness.measuring.memory import release_cached
from harness.measuring.timer import Workload
from harness.planning.overrides import Overrides, load_suite_with
from harness.planning.protocol import RunContext
from harness.planning.suite_files import Run, Suite, parse_suite
from harness.registry.specs import Registry
from harness.training.loop import TrainConfig, seed_everything
from harness.training.steps import build_model, open_splits, task_of


@dataclass(frozen=True)
class Prepared:
    """A run's workload, the per-batch FLOPs of its steps, the split an ``epoch`` runs over, and
    the facts recorded beside its timings (parameters, FLOPs per sample, device, threads...)."""

    workload: Workload
    flops: dict[str, int]
    epoch_split: Split
    facts: dict[str, Any]


def prepare(run: Run, ctx: RunContext, count_flops: bool = True) -> Prepared:
    """Build the run's data and model on its device, seeded by its configuration; without
    ``count_flops``, the FLOPs are left empty."""
    config = run.config
    device = resolve_device(config["device"])
    release_cached(device)
    ctx = replace(ctx, device=device)
    batch = config["batch_size"]
    splits = open_splits(
        ctx, config["dataset"], config["dataset_options"], config["seed"], config["model"]
    )
    seed_everything(config["seed"])
    model = build_model(ctx, config["model"], config["model_options"], splits)
    inputs, targets = first_batch(splits.train, batch, device)
    task = task_of(ctx, splits)
    flops = step_flops(model, task, inputs, targets) if count_flops else {}
    train = TrainConfig.from_options({**config["train"], "batch_size": batch})
    workload = Workload.prepare(
        model,
        inputs,
        targets,
        device,
        task=task,
        info=splits.info,
        amp=config["amp"],
        channels_last=config["channels_last"],
        compile=config["compile"],
        train=train,
    )
    facts = {
        "params": count_params(model),
        "flops_per_sample": {k: v // batch for k, v in flops.items()},
        "input_shape": list(splits.input_shape),
        "batch_size": batch,
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "dtype": str(inputs.dtype).removeprefix("torch."),
        "amp": config["amp"],
        "channels_last": config["channels_last"],
        "compile": config["compile"],
        "optimizer": train.optimizer,
        "task": task.describe(),
    }
    return Prepared(workload, flops, splits.train, facts)


def first_batch(
    split: Split, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    inputs, targets = next(iterate_batches(split, batch_size, device=device))
    if len(targets) < batch_size:
        raise BenchError(too_small(batch_size, len(split)))
    return inputs, targets


def too_small(batch_size: int, samples: int) -> str:
    return (
        f"batch size {batch_size} is larger than the training split ({samples} samples); "
        "use a larger dataset (synthetic: samples=N) rather than a smaller batch"
    )


@contextmanager
def threads_set(count: int) -> Iterator[None]:
    """Run with ``count`` torch CPU threads (0: as they are), then restore the previous count."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def timing_suite(
    name_or_path: str | None, overrides: Overrides, registry: Registry, default_name: str
) -> Suite:
    """A timing suite: a named suite or file whose procedure is ``throughput``, or one made of
    the overrides' models (``bench time``, ``bench ab``)."""
    if name_or_path:
        suite = load_suite_with(name_or_path, registry, overrides)
    else:
        # the default datasets named, so that dataset options without --dataset reach them
        defaults = registry.procedures.get("throughput").default_datasets
        document = overrides.apply({"procedure": "throughput", "datasets": list(defaults)})
        suite = parse_suite(document, registry, source="command line", default_name=default_name)
    if suite.procedure != "throughput":
        raise BenchError(
            f"suite '{suite.name}' runs the {suite.procedure} procedure; only timing suites "
            "(procedure throughput) can be measured here"
        )
    return suite
