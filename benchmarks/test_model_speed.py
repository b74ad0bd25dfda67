"""Forward and train-step speed of every registered model, through pytest-benchmark.

A benchmark, not a test: the default ``pytest`` run collects only ``tests/``. Run it with

    pytest benchmarks/ --benchmark-only --benchmark-autosave --benchmark-save-data
    pytest benchmarks/ --benchmark-only --benchmark-compare --benchmark-compare-fail=median:10%
    bench compare .benchmarks/<machine>/0001_*.json .benchmarks/<machine>/0002_*.json

Each model is measured on one random batch shaped like its own input, of ``BENCH_BATCH_SIZE``
samples (default 8) on ``BENCH_DEVICE`` (default cpu) with ``BENCH_THREADS`` torch threads
(default: torch's choice; on a small or busy machine use fewer threads than free cores, e.g. 1:
torch threads that compete with other processes for the cores make timings slow and erratic).
Images larger than 64x64 (the torchvision models' 3x224x224) are shrunk to 64x64 so that a run
stays in minutes on a laptop. The steps are the harness's own
(:class:`harness.measuring.timer.Workload`), so these numbers measure what ``bench time`` measures.
``extra_info`` records torch, device, threads, batch size and input shape; ``bench compare`` reports
torch, device and threads with the environment and matches benchmarks by name, batch size, input
shape and device.
"""

from __future__ import annotations

import os

import pytest
import torch
from bench_plugins.tasks.supervised import CLASSIFICATION

from harness.devices import device_name, resolve_device
from harness.measuring.timer import Workload
from harness.registry.loading import load_plugins
from harness.tasks import DataInfo

REGISTRY = load_plugins().registry
DEVICE = resolve_device(os.environ.get("BENCH_DEVICE", "cpu"))
BATCH_SIZE = int(os.environ.get("BENCH_BATCH_SIZE", "8"))
if os.environ.get("BENCH_THREADS"):
    torch.set_num_threads(int(os.environ["BENCH_THREADS"]))
MAX_SIDE = 64
NUM_CLASSES = 10


def bench_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The model's own input shape, with image sides capped at ``MAX_SIDE``."""
    if len(shape) == 3 and max(shape[1:]) > MAX_SIDE:
        return (shape[0], MAX_SIDE, MAX_SIDE)
    return tuple(shape)


@pytest.fixture(params=[s.name for s in REGISTRY.models if "classification" in s.tasks])
def workload(request) -> Workload:
    spec = REGISTRY.models.get(request.param)
    shape = bench_shape(spec.input_shape)
    torch.manual_seed(0)
    model = spec.create(shape, NUM_CLASSES).to(DEVICE)
    inputs = torch.randn(BATCH_SIZE, *shape, device=DEVICE)
    targets = torch.randint(0, NUM_CLASSES, (BATCH_SIZE,), device=DEVICE)
    info = DataInfo(num_outputs=NUM_CLASSES)
    return Workload.prepare(model, inputs, targets, DEVICE, task=CLASSIFICATION, info=info)


def _describe(benchmark, workload: Workload) -> None:
    benchmark.extra_info.update(
        {
            "torch": torch.__version__,
            "device": str(DEVICE),
            "device_name": device_name(DEVICE),
            "threads": torch.get_num_threads(),
            "batch_size": BATCH_SIZE,
            "input_shape": list(workload.inputs.shape[1:]),
        }
    )


def _synchronized(step):
    """On CUDA, wait for the step's kernels so that the wall clock counts them."""
    if DEVICE.type != "cuda":
        return step

    def run() -> None:
        step()
        torch.cuda.synchronize(DEVICE)

    return run


@pytest.mark.benchmark(group="forward")
def test_forward(benchmark, workload):
    _describe(benchmark, workload)
    benchmark(_synchronized(workload.step("forward")))


@pytest.mark.benchmark(group="train_step")
def test_train_step(benchmark, workload):
    _describe(benchmark, workload)
    benchmark(_synchronized(workload.step("train_step")))
