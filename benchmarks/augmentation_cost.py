"""What random affine augmentation costs a training pass, and what doing it per image would.

Three training passes of LeNet-5 over mnist-5k's 3,500 training digits, alternated round by
round so that a slow spell of the machine hits all three:

- plain: no augmentation (``harness.training.loop.train_epoch`` as ``bench run`` trains);
- batched: bench's ``--augment affine``, one ``affine_grid`` + ``grid_sample`` per batch on the
  batch's device (:mod:`harness.training.augmentation`);
- per image: torchvision's ``v2.RandomAffine`` with the same ranges, applied to each image of the
  batch in turn, as a ``Dataset`` transform would.

It prints the median pass time of each, the ratios to plain, the load average and the contention
record of the whole measurement. A benchmark, not a test: it never fails. From the repository
root:

    python benchmarks/augmentation_cost.py [--rounds 5] [--threads 1] [--batch-size 32 ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from harness.data import DataContext
from harness.devices import cpu_model
from harness.measuring.contention import watch
from harness.planning.train_settings import TrainConfig
from harness.registry.loading import load_plugins
from harness.training.augmentation import augmentation_generator, make_augmenter
from harness.training.loop import make_optimizer, train_epoch

DEGREES, TRANSLATE, SCALE = 12.0, 0.1, 0.1  # the augmentation suite's ranges


def per_image(config: TrainConfig):
    from torchvision.transforms import v2

    transform = v2.RandomAffine(DEGREES, (TRANSLATE, TRANSLATE), (1 - SCALE, 1 + SCALE))
    return lambda batch: torch.stack([transform(image) for image in batch])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, action="append")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = load_plugins().registry
    task = registry.tasks.get("classification")
    splits = registry.datasets.get("mnist-5k").open({}, DataContext(seed=0), task)
    device = torch.device("cpu")
    print(f"{cpu_model()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"load average before {os.getloadavg()[0]:.2f}")  # fmt: skip
    for batch_size in args.batch_size or [32, 128]:
        config = TrainConfig.from_options(
            {"batch_size": batch_size, "augment": "affine", "augment_degrees": DEGREES,
             "augment_translate": TRANSLATE, "augment_scale": SCALE}
        )  # fmt: skip
        model = registry.models.get("lenet5").create(splits.input_shape, 10)
        optimizer = make_optimizer(model, config)
        shuffle = torch.Generator().manual_seed(0)
        batched = make_augmenter("affine", config.affine, splits.input_shape,
                                 augmentation_generator(0))  # fmt: skip
        variants = {"plain": None, "batched": batched, "per image": per_image(config)}
        times: dict[str, list[float]] = {name: [] for name in variants}
        with watch(device) as contention:
            for round_ in range(args.rounds + 1):  # the first round warms up, unrecorded
                names = list(variants)[round_ % 3 :] + list(variants)[: round_ % 3]
                for name in names:
                    start = time.perf_counter()
                    train_epoch(model, splits.train, optimizer, config, device, shuffle, task,
                                splits.info, variants[name])  # fmt: skip
                    if round_:
                        times[name].append(time.perf_counter() - start)
        plain = statistics.median(times["plain"])
        print(f"\nbatch {batch_size}, {len(splits.train):,} samples, {args.rounds} rounds:")
        for name, values in times.items():
            median = statistics.median(values)
            print(f"  {name:10s} {median * 1000:8.1f} ms  x{median / plain:.2f}  "
                  f"{len(splits.train) / median:8,.0f} samples/s")  # fmt: skip
        verdict = "contended: " + contention["evidence"] if contention.get("contended") else "quiet"
        print(f"  machine: {verdict}")
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
