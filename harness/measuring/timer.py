"""Timing: the measurement loop, and the four things it measures on one model and batch.

Modes:

- ``forward``: eval mode under ``torch.inference_mode()``.
- ``forward_backward``: train mode, the task's loss, ``backward()`` (gradients are cleared
  before each iteration so every iteration does the same work).
- ``train_step``: forward, loss, backward, ``optimizer.step()``, ``zero_grad(set_to_none=True)``.
- ``epoch``: one real training epoch through :func:`harness.training.loop.train_epoch`, the loop
  that training itself runs, over the dataset's training split.

Every iteration is timed on its own and the raw samples are kept. On CPU a sample is the
``time.perf_counter_ns`` difference around one call (the clock can be injected, so tests can use
a fake one). On CUDA a sample is the time between two CUDA events recorded on the stream before and
after the call, read after the end event has completed, so kernels still queued when the Python call
returns are counted. ``torch.utils.benchmark.Timer`` measures blocks of iterations and keeps only
block means; the per-iteration samples here are what regression tests on raw samples need
(``benchmarks/harness_speed.py`` checks that both agree).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
from torch import nn

from harness.data import Split
from harness.devices import synchronize
from harness.errors import BenchError
from harness.measuring import AMP_NAMES, STEP_MODES
from harness.measuring.contention import watch
from harness.measuring.counters import Compiles, count_step
from harness.measuring.memory import peak_memory
from harness.measuring.summary import Summary, summarize
from harness.tasks import DataInfo, Task
from harness.training.loop import TrainConfig, make_optimizer, train_epoch

AMP_DTYPES = dict(zip(AMP_NAMES, (torch.bfloat16, torch.float16), strict=True))

Clock = Callable[[], int]  # nanoseconds
Step = Callable[[], object]
StepTimer = Callable[[Step], float]  # runs one step, returns its duration in seconds


class CompileError(RuntimeError):
    """``torch.compile`` cannot compile or run the model here."""


@dataclass(frozen=True)
class LoopSettings:
    """How long to measure.

    Warm-up runs at least ``warmup`` iterations and ``warmup_time`` seconds; none is recorded.
    Then samples are recorded until there are ``repeats`` of them *and* they add up to
    ``min_time`` seconds, unless a cap comes first:

    - ``max_time`` seconds of samples, but never before ``min_repeats`` samples (or ``repeats``,
      if fewer): a model whose step takes seconds still gets a median of several samples;
    - ``time_limit`` seconds of samples (or ``max_time``, if longer), the hard ceiling, which
      cuts even below ``min_repeats``;
    - ``max_repeats`` samples.

    There is always at least one sample. A capped measurement records which cap stopped it and
    what was wanted (:class:`Cap`).
    """

    warmup: int = 1
    warmup_time: float = 0.0
    repeats: int = 5
    min_time: float = 1.0
    max_time: float = 10.0
    min_repeats: int = 5
    time_limit: float = 60.0
    max_repeats: int = 10_000

    def cap(self, samples: int, seconds: float) -> Cap | None:
        """The cap that stops recording after ``samples`` samples adding up to ``seconds``, if
        one does (asked only while ``repeats`` or ``min_time`` is still unmet)."""
        if not samples:
            return None
        if samples >= self.max_repeats:
            return Cap("max_repeats", self.max_repeats, self.repeats, self.min_time)
        ceiling = max(self.time_limit, self.max_time)
        if seconds >= ceiling:
            return Cap("time_limit", ceiling, self.repeats, self.min_time)
        if seconds >= self.max_time and samples >= min(self.min_repeats, self.repeats):
            return Cap("max_time", self.max_time, self.repeats, self.min_time)
        return None


@dataclass(frozen=True)
class Cap:
    """What stopped a measurement short: the cap (``by``: ``max_time``, ``time_limit`` or
    ``max_repeats``) and its value, and the samples and seconds that were wanted."""

    by: str
    limit: float
    wanted_samples: int
    wanted_s: float


@dataclass(frozen=True)
class Timing:
    """Raw per-iteration samples in seconds, in the order they were taken."""

    samples: list[float]
    warmup_iterations: int
    warmup_seconds: float
    cap: Cap | None = None

    @property
    def capped(self) -> bool:
        return self.cap is not None

    @property
    def summary(self) -> Summary:
        return summarize(self.samples)

    def to_dict(self) -> dict[str, Any]:
        """The record: statistics, ``capped`` and, when capped, ``cap`` (:class:`Cap` with the
        samples and seconds taken), warm-up and the raw samples."""
        cap = self.cap and {
            **asdict(self.cap),
            "taken_samples": len(self.samples),
            "taken_s": sum(self.samples),
        }
        return {
            "unit": "s",
            **self.summary.to_dict(),
            "capped": self.capped,
            "cap": cap,
            "warmup_iterations": self.warmup_iterations,
            "warmup_s": self.warmup_seconds,
            "samples": list(self.samples),
        }


def run_loop(step: Step, settings: LoopSettings, timer: StepTimer) -> Timing:
    """Warm up, then time ``step`` one call at a time as ``settings`` says."""
    warm_n, warm_s = 0, 0.0
    while warm_n < settings.warmup or warm_s < settings.warmup_time:
        warm_s += timer(step)
        warm_n += 1
    samples: list[float] = []
    total, cap = 0.0, None
    while len(samples) < settings.repeats or total < settings.min_time:
        cap = settings.cap(len(samples), total)
        if cap:
            break
        samples.append(timer(step))
        total += samples[-1]
    return Timing(samples, warm_n, warm_s, cap)


def cpu_timer(clock: Clock = time.perf_counter_ns) -> StepTimer:
    def time_step(step: Step) -> float:
        start = clock()
        step()
        return (clock() - start) / 1e9

    return time_step


def cuda_timer(device: torch.device) -> StepTimer:
    """Time a step with a pair of CUDA events on the device's current stream."""
    stream = torch.cuda.current_stream(device)
    synchronize(device)  # nothing queued before the first sample belongs to it

    def time_step(step: Step) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(stream)
        step()
        end.record(stream)
        end.synchronize()
        return start.elapsed_time(end) / 1e3  # milliseconds

    return time_step


def timer_for(device: torch.device, clock: Clock | None = None) -> StepTimer:
    if device.type == "cuda":
        return cuda_timer(device)
    return cpu_timer(clock or time.perf_counter_ns)


def check_amp(amp: str, device: torch.device) -> None:
    """Refuse autocast that the device cannot do, rather than measuring something else."""
    if amp == "none":
        return
    if amp not in AMP_DTYPES:
        raise BenchError(f"unknown amp '{amp}'; use none, bf16 or fp16")
    if device.type == "cpu" and amp == "fp16":
        raise BenchError("fp16 autocast is not supported on CPU; use amp bf16 or a CUDA device")
    if device.type == "cuda" and amp == "bf16" and not torch.cuda.is_bf16_supported():
        raise BenchError(f"{torch.cuda.get_device_name(device)} does not support bf16; use fp16")


@dataclass(frozen=True)
class Workload:
    """A model made ready to measure on one batch (``prepare`` applies the options); ``task``
    gives the loss of the backward and training steps and turns the inputs into the model's
    (``None``: the forward pass only, of inputs as they are)."""

    model: nn.Module
    inputs: torch.Tensor
    targets: torch.Tensor
    device: torch.device
    amp: str = "none"
    train: TrainConfig = field(default_factory=TrainConfig.from_options)  # optimizer settings
    task: Task | None = None
    info: DataInfo = field(default_factory=DataInfo)
    torch_compiled: bool = False  # the model is torch.compile's (its compiles are counted)

    @classmethod
    def prepare(
        cls,
        model: nn.Module,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        device: torch.device,
        *,
        task: Task,
        info: DataInfo,
        amp: str = "none",
        channels_last: bool = False,
        compile: bool = False,
        train: TrainConfig | None = None,
    ) -> Workload:
        check_amp(amp, device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
            if inputs.dim() == 4:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
        train = train or TrainConfig.from_options()
        workload = cls(model, inputs, targets, device, amp, train, task, info)
        return workload.compiled() if compile else workload

    def compiled(self) -> Workload:
        """The same workload through ``torch.compile``, run once so a failure surfaces here."""
        try:
            workload = replace(self, model=torch.compile(self.model), torch_compiled=True)
            workload.step("forward")()
        except Exception as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise CompileError(
                f"torch.compile cannot run here: {type(exc).__name__}: {message}"
            ) from exc
        return workload

    @property
    def batch_size(self) -> int:
        return len(self.inputs)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp == "none":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    def model_input(self) -> Any:
        return self.task.prepare(self.inputs) if self.task else self.inputs

    def loss(self) -> torch.Tensor:
        if self.task is None:
            raise ValueError("this workload measures the forward pass only: it has no task")
        with self.autocast():
            return self.task.loss(self.model(self.model_input()), self.targets)

    def step(self, mode: str) -> Step:
        """A no-argument callable doing one iteration of ``mode`` (and setting the model's mode)."""
        model = self.model
        if mode == "forward":
            model.eval()

            def forward() -> None:
                with torch.inference_mode(), self.autocast():
                    model(self.model_input())

            return forward
        model.train()
        if mode == "forward_backward":

            def forward_backward() -> None:
                model.zero_grad(set_to_none=True)
                self.loss().backward()

            return forward_backward
        if mode == "train_step":
            optimizer = make_optimizer(model, self.train)

            def train_step() -> None:
                self.loss().backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)

            return train_step
        raise ValueError(f"unknown step mode '{mode}'; expected one of {', '.join(STEP_MODES)}")


def measure(
    workload: Workload,
    modes: Sequence[str],
    loop: LoopSettings,
    *,
    flops: Mapping[str, int] | None = None,
    epoch_split: Split | None = None,
    clock: Clock | None = None,
) -> dict[str, dict[str, Any]]:
    """Time each of ``modes`` in turn; ``flops`` holds per-batch ``forward``/``train_step`` FLOPs.

    Each record holds the summary, the raw samples, samples/s, achieved FLOP/s (steps, when
    ``flops`` is given), the peak memory of the measurement, the evidence of whether it had
    the machine to itself (:mod:`harness.measuring.contention`) and, for the step modes, the
    step's counters (:mod:`harness.measuring.counters`: one more step, after the timed ones).
    ``epoch`` needs ``epoch_split``: it runs exactly one epoch.
    """
    timer = timer_for(workload.device, clock)
    records = {}
    for mode in modes:
        if mode == "epoch":
            if epoch_split is None:
                raise ValueError("the epoch mode needs a training split")
            records[mode] = _measure_epoch(workload, epoch_split, timer)
            continue
        compiles = Compiles.start() if workload.torch_compiled else None
        step = workload.step(mode)
        with peak_memory(workload.device) as memory, watch(workload.device) as contention:
            timing = run_loop(step, loop, timer)
        work = flops["forward" if mode == "forward" else "train_step"] if flops else None
        records[mode] = {
            **timing.to_dict(),
            **rates(timing, workload.batch_size, work),
            "memory": memory,
            "contention": contention,
            "counters": count_step(step, workload.device, flops=work, compiled=compiles),
        }
    return records


def _measure_epoch(workload: Workload, split: Split, timer: StepTimer) -> dict[str, Any]:
    """One training epoch (no autocast: it is the training loop as it is), as samples/s."""
    config = replace(workload.train, batch_size=workload.batch_size)
    optimizer = make_optimizer(workload.model, config)
    generator = torch.Generator().manual_seed(0)
    epoch = functools.partial(
        train_epoch,
        workload.model,
        split,
        optimizer,
        config,
        workload.device,
        generator,
        workload.task,
        workload.info,
    )
    with peak_memory(workload.device) as memory, watch(workload.device) as contention:
        timing = run_loop(epoch, LoopSettings(warmup=0, repeats=1, min_time=0.0), timer)
    return {
        **timing.to_dict(),
        **rates(timing, len(split)),
        "split_size": len(split),
        "amp": "none",
        "memory": memory,
        "contention": contention,
    }


def rates(timing: Timing, samples: int, flops: int | None = None) -> dict[str, float | None]:
    median = timing.summary.median
    rates = {"samples_per_s": samples / median if median > 0 else None}
    if flops is not None:
        rates["flop_per_s"] = flops / median if median > 0 else None
    return rates


def forward_latency(
    model: nn.Module,
    input_shape: Sequence[int],
    batch_size: int,
    device: torch.device,
    loop: LoopSettings = LoopSettings(
        warmup=2, repeats=10, min_time=0.2, max_time=2.0, min_repeats=1
    ),
) -> dict[str, Any]:
    """The ``forward`` measurement of ``model`` on one random batch, for procedures that report a
    latency beside other results; adds ``batch_size`` and ``median_ms``. The model's train/eval
    mode is restored afterwards."""
    was_training = model.training
    inputs = torch.randn(batch_size, *input_shape, device=device)
    targets = torch.zeros(batch_size, dtype=torch.long, device=device)
    try:
        record = measure(Workload(model, inputs, targets, device), ["forward"], loop)["forward"]
    finally:
        model.train(was_training)
    return {**record, "batch_size": batch_size, "median_ms": record["median"] * 1e3}
