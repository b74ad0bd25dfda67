"""Counters: the same code counts the same every time, and bench compare judges counts exactly.

Each injected change (an extra operator per forward, an extra temporary tensor, a graph break
under torch.compile) must be flagged as a regression of the counter it changes, every time; the
same code compared with itself must never be flagged.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from harness.cli import cli
from harness.comparing.matching import compare_files
from harness.comparing.settings_file import find_settings
from harness.comparing.verdicts import COUNT, IMPROVED, OK, REGRESSION, Rules
from harness.errors import BenchError
from harness.measuring.counters import count_step

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from counters import Net, measured, results_file  # noqa: E402  (the benchmark's plugin model)

MODES = ("forward", "forward_backward", "train_step")
CHANGES = {  # an injected change, and the counters it must raise in every mode
    "operator": ("operators",),
    "allocation": ("allocations", "allocated_bytes"),
}


def results(path, metrics: dict) -> str:
    path.mkdir(parents=True, exist_ok=True)
    return str(results_file(path, metrics))


def counter_rows(comparison) -> dict:
    return {row.metric: row for row in comparison.rows if row.kind == COUNT}


def test_the_same_step_counts_the_same_in_50_reruns():
    model, x = Net(), torch.randn(8, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step():
        nn.functional.cross_entropy(model(x), torch.zeros(8, dtype=torch.long)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()
    counts = [count_step(step, torch.device("cpu")) for _ in range(50)]
    assert all(c == counts[0] for c in counts)
    assert counts[0]["operators"] == sum(counts[0]["operators_by_name"].values()) > 10
    assert counts[0]["operators_by_name"]["aten::addmm"] == 2  # the two Linear layers
    assert counts[0]["allocations"] > 0 and counts[0]["allocated_bytes"] > 0
    assert set(counts[0]["unavailable"]) == {"flops", "graph_breaks", "recompiles",
                                             "kernel_launches", "syncs"}  # fmt: skip


def test_every_timed_mode_records_its_counters_after_its_samples():
    records = measured()
    for mode in MODES:
        counters = records[mode]["counters"]
        assert counters["operators"] > 0 and counters["flops"] > 0, mode
        assert "syncs" in counters["unavailable"]  # CPU: counted on CUDA only, and said so
    assert (
        records["forward"]["counters"]["operators"] < records["train_step"]["counters"]["operators"]
    )


@pytest.mark.parametrize("change", list(CHANGES))
def test_an_injected_change_is_a_regression_of_its_counter_in_every_mode(tmp_path, change):
    base = results(tmp_path / "base", measured())
    cand = results(tmp_path / "cand", measured(change))
    comparison = compare_files(base, cand, Rules())
    rows = counter_rows(comparison)
    for mode in MODES:
        for counter in CHANGES[change]:
            assert rows[f"{mode}.{counter}"].verdict == REGRESSION, (mode, counter)
    assert comparison.exit_code == 1
    if change == "operator":
        assert rows["forward.operators"].operators == {"aten::mul": 1}
        assert "+1 aten::mul" in rows["forward.operators"].test
    back = compare_files(cand, base, Rules())  # the change undone: an improvement
    assert counter_rows(back)[f"forward.{CHANGES[change][0]}"].verdict == IMPROVED


def test_the_same_code_is_never_flagged_in_100_comparisons(tmp_path):
    sides = [results(tmp_path / f"r{i}", measured()) for i in range(101)]
    verdicts = {
        row.verdict
        for a, b in zip(sides, sides[1:], strict=False)
        for row in counter_rows(compare_files(a, b, Rules())).values()
    }
    assert verdicts == {OK}


def test_a_counter_regression_fails_whatever_contention_says_of_the_timings(tmp_path):
    base, cand = measured(), measured("operator")
    for mode in MODES:
        cand[mode]["contention"] = {"contended": True, "evidence": "4 other processes busy"}
    comparison = compare_files(
        results(tmp_path / "base", base), results(tmp_path / "cand", cand), Rules()
    )
    assert comparison.exit_code == 1
    assert counter_rows(comparison)["forward.operators"].verdict == REGRESSION


def test_a_graph_break_under_compile_is_counted_and_flagged(tmp_path):
    pytest.importorskip("torch._dynamo")
    whole, broken = measured(compile=True), measured("graph break", compile=True)
    assert whole["forward"]["counters"]["graph_breaks"] == 0
    assert broken["forward"]["counters"]["graph_breaks"] >= 1
    comparison = compare_files(
        results(tmp_path / "base", whole), results(tmp_path / "cand", broken), Rules()
    )
    assert counter_rows(comparison)["forward.graph_breaks"].verdict == REGRESSION
    assert comparison.exit_code == 1


def test_counter_thresholds_come_from_the_settings_file(tmp_path):
    (tmp_path / "bench.toml").write_text('counter_thresholds = {"*.operators" = 50.0}\n')
    rules = find_settings(tmp_path).rules()
    base = results(tmp_path / "base", measured())
    cand = results(tmp_path / "cand", measured("operator"))
    rows = counter_rows(compare_files(base, cand, rules))
    assert rows["forward.operators"].verdict == OK  # one more of many: within 50%
    assert rows["forward.allocations"].verdict == REGRESSION  # the default still holds there
    (tmp_path / "bench.toml").write_text('counter_thresholds = {"*.syncs" = "1pp"}\n')
    with pytest.raises(BenchError, match=r"bench.toml: key 'counter_thresholds'"):
        find_settings(tmp_path)


def test_bench_compare_names_the_operators_in_its_table_and_json(tmp_path):
    base = results(tmp_path / "base", measured())
    cand = results(tmp_path / "cand", measured("operator"))
    text = CliRunner().invoke(cli, ["compare", base, cand])
    assert text.exit_code == 1
    assert "forward.operators" in text.output and "+1 aten::mul" in text.output
    result = CliRunner().invoke(cli, ["compare", base, cand, "--json"])
    rows = {r["metric"]: r for r in json.loads(result.output)["rows"]}
    assert rows["forward.operators"]["operators"] == {"aten::mul": 1}
    assert rows["forward.operators"]["verdict"] == REGRESSION


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_steps_count_kernel_launches_and_the_syncs_an_item_makes():
    device = torch.device("cuda")
    x = torch.randn(64, 64, device=device)
    quiet = count_step(lambda: x @ x, device)
    syncing = count_step(lambda: (x @ x).sum().item(), device)
    assert quiet["kernel_launches"] >= 1 and quiet["syncs"] == 0
    assert syncing["syncs"] >= 1


def test_bench_ab_keeps_the_rounds_counters_only_when_every_round_counted_alike():
    from harness.comparing.ab.rounds import merge_blocks

    counted = count_step(lambda: torch.ones(3) + 1, torch.device("cpu"))
    quiet = {"contended": False, "evidence": "load average 0.1 -> 0.1"}

    def block(counters: dict) -> dict:
        return dict(samples=[0.01, 0.011], warmup_iterations=1, warmup_s=0.01, capped=False,
                    median=0.0105, memory={"peak_rss_bytes": 0}, contention=quiet,
                    counters=counters)  # fmt: skip

    facts = {"batch_size": 8, "flops_per_sample": {"forward": 10}}
    agreed = merge_blocks("forward", [block(counted), block(counted)], facts)["counters"]
    assert agreed["operators"] == counted["operators"] and agreed["flops"] == 80
    other = {**counted, "operators": counted["operators"] + 1}
    differed = merge_blocks("forward", [block(counted), block(other)], facts)["counters"]
    assert "operators" not in differed  # nothing guessed: the record says why instead
    assert differed["unavailable"]["all"] == "1 of 2 rounds counted otherwise than the first"


def test_judging_counters_loads_no_torch():
    """bench compare and bench history judge counters from files: they start without torch
    (about a second), as they did before counters."""
    import subprocess
    import sys

    code = (
        "import sys, harness.comparing.output, harness.history.detect, harness.cli.history; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
