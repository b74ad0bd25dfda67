"""What the harness itself costs, measured side by side in one process:

(a) train_step: the harness's measurement against a minimal hand-written training loop on the
    same model, data and batch; target ratio >= 0.97.
(b) forward: the harness's median against ``torch.utils.benchmark.Timer.blocked_autorange`` on
    the same model and batch; target within +-5%.
(c) one training epoch through the harness's data path (``harness.training.loop.train_epoch`` on
    tensor splits, the loop ``train`` runs) against a per-sample ``Dataset`` + ``DataLoader`` loop
    as in the seed course; the speed-up is reported.

The two sides of each comparison alternate over several rounds and the medians over rounds are
compared, so a slow spell of the machine hits both. This is a benchmark, not a test: it prints
the ratios and never fails. Run from the repository root:

    python benchmarks/harness_speed.py [--rounds 5] [--seconds 1.0] [--threads N]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from bench_plugins.tasks.supervised import CLASSIFICATION
from torch import nn
from torch.utils.benchmark import Timer
from torch.utils.data import DataLoader, Dataset

from harness.data import DataContext, TensorSplit
from harness.devices import cpu_model
from harness.measuring.timer import LoopSettings, Workload, measure
from harness.registry.loading import load_plugins
from harness.tasks import DataInfo
from harness.training.loop import TrainConfig, make_optimizer, train_epoch

WARMUP = 5
CONFIG = TrainConfig.from_options({"batch_size": 32})  # SGD, lr 0.01, momentum 0.9
TEN_CLASSES = DataInfo(num_outputs=10)


def hand_written_throughput(model: nn.Module, x, y, iterations: int) -> float:
    """Samples/s of the shortest honest training loop: no timer inside, one clock read each end."""
    optimizer = make_optimizer(model, CONFIG)
    model.train()
    for _ in range(WARMUP):
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    start = time.perf_counter()
    for _ in range(iterations):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return iterations * len(x) / (time.perf_counter() - start)


def harness_train_step(model: nn.Module, x, y, iterations: int) -> dict[str, float]:
    cpu = torch.device("cpu")
    workload = Workload.prepare(
        model, x, y, cpu, task=CLASSIFICATION, info=TEN_CLASSES, train=CONFIG
    )
    loop = LoopSettings(warmup=WARMUP, repeats=iterations, min_time=0.0, max_time=math.inf)
    record = measure(workload, ["train_step"], loop)["train_step"]
    return {"reported": record["samples_per_s"], "mean": len(x) / record["mean"]}


def compare_train_step(model: nn.Module, x, y, rounds: int, seconds: float) -> dict[str, float]:
    rate = hand_written_throughput(copy.deepcopy(model), x, y, WARMUP)
    iterations = max(10, round(seconds * rate / len(x)))
    hand, reported, mean = [], [], []
    for _ in range(rounds):
        hand.append(hand_written_throughput(copy.deepcopy(model), x, y, iterations))
        harness = harness_train_step(copy.deepcopy(model), x, y, iterations)
        reported.append(harness["reported"])
        mean.append(harness["mean"])
    hand_rate = statistics.median(hand)
    return {
        "hand samples/s": hand_rate,
        "harness samples/s": statistics.median(reported),
        "ratio": statistics.median(reported) / hand_rate,
        "ratio (harness mean)": statistics.median(mean) / hand_rate,
    }


def compare_forward(model: nn.Module, x, rounds: int, seconds: float) -> dict[str, float]:
    model.eval()
    timer = Timer(
        "with torch.inference_mode(): model(x)",
        globals={"model": model, "x": x},
        num_threads=torch.get_num_threads(),
    )  # Timer defaults to 1 thread
    dummy = torch.zeros(len(x), dtype=torch.long)
    loop = LoopSettings(warmup=WARMUP, repeats=10, min_time=seconds, max_time=math.inf)
    ours, theirs = [], []
    for _ in range(rounds):
        workload = Workload(model, x, dummy, torch.device("cpu"))  # forward only
        ours.append(measure(workload, ["forward"], loop)["forward"]["median"])
        theirs.append(timer.blocked_autorange(min_run_time=seconds).median)
    harness, reference = statistics.median(ours), statistics.median(theirs)
    return {
        "harness median ms": harness * 1e3,
        "Timer median ms": reference * 1e3,
        "ratio": harness / reference,
    }


class PerSampleDigits(Dataset):
    """The seed course's pattern: arrays held by a Dataset, one tensor made per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return torch.tensor(self.images[i], dtype=torch.float32), int(self.labels[i])


def course_epoch(model: nn.Module, loader: DataLoader) -> None:
    optimizer = make_optimizer(model, CONFIG)
    model.train()
    running_loss, correct = 0.0, 0
    for inputs, targets in loader:
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = F.cross_entropy(outputs, targets)
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * len(targets)
        correct += (outputs.argmax(1) == targets).sum().item()


def harness_epoch(model: nn.Module, split: TensorSplit) -> None:
    generator = torch.Generator().manual_seed(0)
    optimizer, cpu = make_optimizer(model, CONFIG), torch.device("cpu")
    train_epoch(model, split, optimizer, CONFIG, cpu, generator, CLASSIFICATION, TEN_CLASSES)


def compare_epoch(model: nn.Module, split: TensorSplit, rounds: int) -> dict[str, float]:
    dataset = PerSampleDigits(split.x.numpy(), split.y.numpy())
    loader = DataLoader(dataset, batch_size=CONFIG.batch_size, shuffle=True)
    course_epoch(copy.deepcopy(model), loader)  # warm-up, both paths
    harness_epoch(copy.deepcopy(model), split)
    ours, theirs = [], []
    for _ in range(rounds):
        ours.append(_seconds_per_call(harness_epoch, copy.deepcopy(model), split))
        theirs.append(_seconds_per_call(course_epoch, copy.deepcopy(model), loader))
    harness, course = statistics.median(ours), statistics.median(theirs)
    return {
        "samples": len(split),
        "harness epoch s": harness,
        "DataLoader epoch s": course,
        "speed-up": course / harness,
    }


def _seconds_per_call(function, *args) -> float:
    start = time.perf_counter()
    function(*args)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="per side per round")
    parser.add_argument("--threads", type=int, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    registry = load_plugins().registry
    splits = registry.datasets.get("digits").open({}, DataContext(seed=0))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {cpu_model()}, "
        f"load average before {os.getloadavg()[0]:.2f}"
    )
    print(
        f"digits: {len(splits.train)} training samples at {tuple(splits.input_shape)}; "
        f"batch {CONFIG.batch_size}; {args.rounds} rounds of {args.seconds:g} s per side\n"
    )
    x, y = splits.train.x[: CONFIG.batch_size], splits.train.y[: CONFIG.batch_size]
    for name in ("lenet5", "cnn"):
        model = _model(registry, name, splits)
        a = compare_train_step(model, x, y, args.rounds, args.seconds)
        _show(
            f"(a) {name} train_step vs hand-written loop",
            a,
            "ratio",
            "target >= 0.97",
            a["ratio"] >= 0.97,
        )
        b = compare_forward(model, x, args.rounds, args.seconds)
        _show(
            f"(b) {name} forward vs Timer.blocked_autorange",
            b,
            "ratio",
            "target +-5%",
            abs(b["ratio"] - 1) <= 0.05,
        )
    for name in ("lenet5", "mlp"):
        c = compare_epoch(_model(registry, name, splits), splits.train, args.rounds)
        _show(
            f"(c) {name} epoch: harness data path vs per-sample Dataset + DataLoader", c, "speed-up"
        )
    print(f"load average after {os.getloadavg()[0]:.2f}")


def _model(registry, name: str, splits) -> nn.Module:
    torch.manual_seed(0)
    return registry.models.get(name).create(splits.input_shape, splits.num_classes)


def _show(
    title: str, figures: dict[str, float], key: str, target: str = "", met: bool | None = None
) -> None:
    verdict = "" if met is None else f" ({target}: {'met' if met else 'MISSED'})"
    print(f"{title}: {key} {figures[key]:.3f}{verdict}")
    print("    " + ", ".join(f"{k} {_figure(v)}" for k, v in figures.items() if k != key))


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.4g}"


if __name__ == "__main__":
    main()
