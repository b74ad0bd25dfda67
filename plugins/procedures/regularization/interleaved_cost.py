"""What augmentation costs in training throughput, measured interleaved in one process.

Comparing the epoch times of different runs says little on a shared machine: a neighbour that
starts between two runs moves one of them. So the cost is measured within one run, on a copy of
its trained model: training passes without and with augmentation, alternated (ABBA...), timed
with the CPU clock after the device has finished, and watched for contention
(:mod:`harness.measuring.contention`). The copy is thrown away; the run's results are not touched.
"""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import nn

from harness.data import Splits
from harness.devices import synchronize
from harness.measuring.contention import watch
from harness.planning.train_settings import TrainConfig
from harness.tasks import Task
from harness.training.augmentation import Affine, augmentation_generator, make_augmenter
from harness.training.loop import make_optimizer, train_epoch

ROUNDS = 6  # pairs of passes; each pair is one without and one with augmentation


def measure_augmentation_cost(
    model: nn.Module,
    splits: Splits,
    config: TrainConfig,
    *,
    task: Task,
    device: torch.device,
    seed: int,
    rounds: int = ROUNDS,
) -> dict[str, Any]:
    """Median training-pass seconds without and with ``config.augment``, their ratio, and the
    contention record of the measurement."""
    model = copy.deepcopy(model)
    optimizer = make_optimizer(model, config)
    shuffle = torch.Generator().manual_seed(seed)
    augment = make_augmenter(
        config.augment, Affine.of(config), splits.input_shape, augmentation_generator(seed)
    )
    passes: dict[bool, list[float]] = {False: [], True: []}
    with watch(device) as contention:
        for round_ in range(rounds):
            for augmented in (False, True) if round_ % 2 == 0 else (True, False):
                start = time.perf_counter()
                train_epoch(
                    model,
                    splits.train,
                    optimizer,
                    config,
                    device,
                    shuffle,
                    task,
                    splits.info,
                    augment if augmented else None,
                )
                synchronize(device)
                passes[augmented].append(time.perf_counter() - start)
    plain, augmented = (statistics.median(passes[k]) for k in (False, True))
    return {
        "plain_pass_s": plain,
        "augmented_pass_s": augmented,
        "ratio": augmented / plain,
        "rounds": rounds,
        "train_size": len(splits.train),
        "contention": contention,
    }
