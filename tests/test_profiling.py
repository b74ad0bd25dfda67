"""torch.profiler traces that TensorBoard and Perfetto read, and the top-operators table."""

import json

import pytest
import torch
from bench_plugins.tasks.supervised import CLASSIFICATION
from torch import nn

from harness.measuring.profiler import ACTIVE, profile_step, top_ops_markdown
from harness.measuring.timer import Workload
from harness.tasks import DataInfo


def profiled(tmp_path, device_name="cpu"):
    device = torch.device(device_name)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))
    inputs = torch.randn(8, 2, 4, 4, device=device)
    targets = torch.randint(0, 10, (8,), device=device)
    info = DataInfo(num_outputs=10)
    work = Workload.prepare(
        model.to(device), inputs, targets, device, task=CLASSIFICATION, info=info
    )
    trace_dir = tmp_path / "traces" / "tiny-run"
    return profile_step(work.step("train_step"), device, trace_dir, worker="train_step")


def test_profile_writes_a_chrome_trace_with_operator_events(tmp_path):
    record = profiled(tmp_path)
    traces = list((tmp_path / "traces" / "tiny-run").glob("*.pt.trace.json"))
    assert [str(t) for t in traces] == record["traces"]
    assert traces[0].name.startswith("train_step.")
    events = json.loads(traces[0].read_text())["traceEvents"]
    ops = {e["name"] for e in events if e.get("cat") == "cpu_op"}
    assert "aten::addmm" in ops and any(name.startswith("aten::") for name in ops)


def test_top_operators_table(tmp_path):
    record = profiled(tmp_path)
    assert record["active_steps"] == ACTIVE and record["sort"] == "self_cpu"
    rows = record["top_ops"]
    assert rows and all(
        {"name", "calls", "self_cpu_us", "cpu_total_us", "flops"} <= set(r) for r in rows
    )
    assert not any(r["name"].startswith("ProfilerStep") for r in rows)
    self_times = [r["self_cpu_us"] for r in rows]
    assert self_times == sorted(self_times, reverse=True)
    addmm = next(r for r in rows if r["name"] == "aten::addmm")
    assert addmm["calls"] == 2 * ACTIVE and addmm["flops"] > 0  # two Linear layers per step
    table = top_ops_markdown(record)
    assert table.splitlines()[0].startswith("| operator") and "aten::addmm" in table


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")
def test_cuda_profile_records_device_time(tmp_path):
    record = profiled(tmp_path, "cuda")
    assert record["sort"] == "self_device"
    assert any(r["self_cuda_us"] > 0 for r in record["top_ops"])
    assert "self CUDA ms" in top_ops_markdown(record)
