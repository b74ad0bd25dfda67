"""The measurement loop (on a fake clock) and the four measurements (on a tiny model).

Nothing here asserts how fast anything is: only what is measured, how often and in which state.
"""

import pytest
import torch
from bench_plugins.tasks.supervised import CLASSIFICATION
from torch import nn

from harness.data import TensorSplit
from harness.errors import BenchError
from harness.measuring import MODES
from harness.measuring.flops import step_flops
from harness.measuring.timer import (
    Cap,
    CompileError,
    LoopSettings,
    Workload,
    cpu_timer,
    cuda_timer,
    forward_latency,
    measure,
    run_loop,
)
from harness.tasks import DataInfo

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


class FakeClock:
    """A nanosecond clock that moves only when a step says it took some time."""

    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


def fake_steps(clock: FakeClock, durations: list[float]):
    """A step taking ``durations[i]`` seconds on its i-th call; ``calls`` counts the calls."""
    calls = []

    def step():
        clock.now += round(durations[min(len(calls), len(durations) - 1)] * 1e9)
        calls.append(1)

    return step, calls


def loop(durations, **settings):
    clock = FakeClock()
    step, calls = fake_steps(clock, durations)
    return run_loop(step, LoopSettings(**settings), cpu_timer(clock)), len(calls)


def test_warmup_iterations_are_run_but_not_recorded():
    timing, calls = loop([5.0, 4.0, 0.25], warmup=2, repeats=3, min_time=0.0)
    assert timing.samples == [0.25, 0.25, 0.25]
    assert (timing.warmup_iterations, timing.warmup_seconds) == (2, 9.0)
    assert calls == 5 and not timing.capped


def test_warmup_by_time_runs_until_both_count_and_time_are_met():
    timing, calls = loop([0.25], warmup=1, warmup_time=1.0, repeats=1, min_time=0.0)
    assert timing.warmup_iterations == 4 and timing.warmup_seconds == 1.0
    assert calls == 5


def test_repeats_are_honoured_when_min_time_is_met_first():
    timing, _ = loop([1.0], warmup=0, repeats=7, min_time=0.5)
    assert timing.summary.n == 7 and not timing.capped


def test_min_time_is_honoured_when_repeats_are_met_first():
    timing, _ = loop([0.25], warmup=0, repeats=2, min_time=1.0)
    assert timing.summary.n == 4 and sum(timing.samples) == 1.0 and not timing.capped


def test_max_time_caps_a_slow_measurement_and_says_so():
    timing, _ = loop([1.0], warmup=0, repeats=100, min_time=0.0, max_time=3.0, min_repeats=1)
    assert timing.summary.n == 3 and timing.capped
    assert timing.cap == Cap("max_time", 3.0, wanted_samples=100, wanted_s=0.0)


def test_max_time_does_not_cut_below_min_repeats():
    timing, _ = loop([2.0], warmup=0, repeats=8, min_time=0.0, max_time=3.0, min_repeats=4)
    assert timing.summary.n == 4 and timing.cap.by == "max_time"


def test_min_repeats_asks_no_more_than_repeats():
    timing, _ = loop([2.0], warmup=0, repeats=3, min_time=100.0, max_time=1.0, min_repeats=10)
    assert timing.summary.n == 3 and timing.cap.by == "max_time"


def test_time_limit_cuts_even_below_min_repeats():
    timing, _ = loop([10.0], warmup=0, repeats=5, max_time=3.0, min_repeats=5, time_limit=25.0)
    assert timing.summary.n == 3 and timing.cap == Cap("time_limit", 25.0, 5, 1.0)


def test_time_limit_never_cuts_before_max_time():
    timing, _ = loop([2.0], warmup=0, repeats=5, max_time=7.0, min_repeats=9, time_limit=1.0)
    assert timing.summary.n == 4 and timing.cap == Cap("time_limit", 7.0, 5, 1.0)


def test_the_defaults_give_a_step_of_seconds_a_median_of_five():
    """A ResNet-18 training step at batch 128 on a CPU takes seconds: max_time (10 s) alone
    would leave it two samples."""
    timing, _ = loop([4.0])
    assert timing.summary.n == 5 and not timing.capped


def test_max_repeats_caps_a_measurement_and_says_so():
    timing, _ = loop([0.001], warmup=0, repeats=5, min_time=10.0, max_repeats=20)
    assert timing.summary.n == 20 and timing.cap == Cap("max_repeats", 20, 5, 10.0)


def test_there_is_always_one_sample():
    timing, _ = loop([2.0], warmup=0, repeats=5, max_time=0.0, time_limit=0.0)
    assert timing.samples == [2.0] and timing.capped


def test_a_capped_record_says_what_was_wanted_and_taken():
    timing, _ = loop([1.5], warmup=0, repeats=5, max_time=2.0, min_repeats=2)
    assert timing.to_dict()["capped"] is True
    assert timing.to_dict()["cap"] == {
        "by": "max_time",
        "limit": 2.0,
        "wanted_samples": 5,
        "wanted_s": 1.0,
        "taken_samples": 2,
        "taken_s": 3.0,
    }
    full, _ = loop([1.5], warmup=0, repeats=2)
    assert full.to_dict()["capped"] is False and full.to_dict()["cap"] is None


def test_record_keeps_raw_samples_and_statistics():
    timing, _ = loop([0.5, 0.25, 0.75], warmup=1, repeats=2, min_time=0.0)
    record = timing.to_dict()
    assert record["samples"] == [0.25, 0.75] and record["unit"] == "s"
    assert record["median"] == 0.5 and record["n"] == 2 and record["warmup_iterations"] == 1


class Probe(nn.Module):
    """A small classifier that records the state it was called in."""

    def __init__(self):
        super().__init__()
        self.layer = nn.Sequential(nn.Flatten(), nn.Linear(32, 10))
        self.calls = []

    def forward(self, x):
        self.calls.append(
            {
                "training": self.training,
                "inference": torch.is_inference_mode_enabled(),
                "grad": torch.is_grad_enabled(),
                "autocast": torch.is_autocast_enabled("cpu"),
                "channels_last": x.is_contiguous(memory_format=torch.channels_last),
            }
        )
        return self.layer(x)


def workload(model=None, batch=4, **options):
    torch.manual_seed(0)
    model = model or Probe()
    inputs, targets = torch.randn(batch, 2, 4, 4), torch.randint(0, 10, (batch,))
    options = {"task": CLASSIFICATION, "info": DataInfo(num_outputs=10), **options}
    return Workload.prepare(model, inputs, targets, torch.device("cpu"), **options)


TINY = LoopSettings(warmup=1, repeats=2, min_time=0.0)


def test_every_mode_records_its_metrics():
    work = workload()
    split = TensorSplit(torch.randn(12, 2, 4, 4), torch.randint(0, 10, (12,)))
    flops = step_flops(work.model, CLASSIFICATION, work.inputs, work.targets)
    records = measure(work, MODES, TINY, flops=flops, epoch_split=split)
    assert set(records) == set(MODES)
    statistics = {"n", "median", "mean", "std", "iqr", "p10", "p25", "p75", "p90", "min", "max"}
    for mode, record in records.items():
        extra = {"noisy", "samples", "capped", "samples_per_s", "memory", "contention"}
        assert statistics | extra <= set(record), mode
        assert record["contention"]["contended"] in (True, False), mode
        assert len(record["samples"]) == record["n"] and record["samples_per_s"] > 0
        assert record["memory"]["peak_rss_bytes"] > 0 and record["memory"]["method"]
    for mode in ("forward", "forward_backward", "train_step"):
        assert records[mode]["n"] == 2 and records[mode]["flop_per_s"] > 0
    assert records["epoch"]["n"] == 1 and records["epoch"]["split_size"] == 12
    assert flops["forward"] == 2 * 32 * 10 * 4  # one Linear(32, 10) on a batch of 4


def test_forward_runs_in_eval_and_inference_mode():
    work = workload()
    work.step("forward")()
    assert work.model.calls[-1] == {
        "training": False,
        "inference": True,
        "grad": False,
        "autocast": False,
        "channels_last": False,
    }


def test_forward_backward_computes_gradients_in_train_mode():
    work = workload()
    before = [p.detach().clone() for p in work.model.parameters()]
    work.step("forward_backward")()
    assert work.model.calls[-1]["training"] and work.model.calls[-1]["grad"]
    assert all(p.grad is not None for p in work.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, work.model.parameters(), strict=True))


def test_train_step_updates_weights_and_clears_gradients():
    work = workload()
    before = [p.detach().clone() for p in work.model.parameters()]
    work.step("train_step")()
    assert work.model.calls[-1]["training"]
    assert all(p.grad is None for p in work.model.parameters())  # zero_grad(set_to_none=True)
    assert not all(torch.equal(a, b) for a, b in zip(before, work.model.parameters(), strict=True))


def test_bf16_autocast_on_cpu_and_channels_last():
    work = workload(amp="bf16", channels_last=True)
    work.step("forward")()
    call = work.model.calls[-1]
    assert call["autocast"] and call["channels_last"]


def test_fp16_on_cpu_is_refused():
    with pytest.raises(BenchError, match="fp16 autocast is not supported on CPU"):
        workload(amp="fp16")


def test_compile_failure_is_a_clear_error(monkeypatch):
    def broken(model, *args, **kwargs):
        raise RuntimeError("no compiler for this platform")

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.raises(CompileError, match="torch.compile cannot run here: RuntimeError: no "):
        workload(compile=True)


def test_forward_latency_restores_the_training_mode():
    model = Probe().train()
    record = forward_latency(model, (2, 4, 4), 2, torch.device("cpu"), loop=TINY)
    assert model.training and record["batch_size"] == 2 and record["n"] == 2
    assert record["median_ms"] == pytest.approx(record["median"] * 1e3)


@cuda
def test_cuda_measurement_has_allocator_peaks():
    device = torch.device("cuda")
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10)).to(device)
    inputs, targets = (
        torch.randn(8, 1, 4, 4, device=device),
        torch.zeros(8, dtype=torch.long, device=device),
    )
    info = DataInfo(num_outputs=10)
    work = Workload.prepare(model, inputs, targets, device, task=CLASSIFICATION, info=info)
    records = measure(work, ["forward", "train_step"], TINY)
    for record in records.values():
        assert record["n"] == 2 and record["memory"]["peak_allocated_bytes"] > 0
        assert record["memory"]["peak_reserved_bytes"] >= record["memory"]["peak_allocated_bytes"]


@cuda
def test_cuda_timer_counts_kernels_still_queued_when_the_call_returns():
    device = torch.device("cuda")
    step = lambda: torch.cuda._sleep(50_000_000)  # noqa: E731  (a queued spin kernel)
    queued = cuda_timer(device)(step)
    torch.cuda.synchronize()
    launch_only = cpu_timer()(step)
    torch.cuda.synchronize()
    assert queued > 10 * launch_only
