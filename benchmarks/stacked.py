"""Stacked training: what it saves on a whole suite, how it scales, how much arithmetic it uses.

Three parts, each a markdown table with the threads, the load average and the contention
verdict of :mod:`harness.measuring.contention` beside every figure:

- ``suite``: ``bench run --suite regularization -q`` as a user runs it, four ways, each a fresh
  process timed by wall clock, interleaved round by round (the order rotated every round):
  sequential with ``--stack off``; stacked on one worker (``--stack auto``, the local executor);
  stacked with ``--jobs 2``; and ``--stack off --jobs 2``. Every way's results must be
  IDENTICAL to the sequential one's: every run's status and metrics, compared exactly, with
  the time fields left out (``train_seconds``, ``wall_seconds``, each epoch's ``seconds``).
- ``sweep``: in-process, :func:`train_stacked` against :func:`train` of each member alone, the
  suite's MLP (hidden [100, 100]) on mnist1d, K members (seeds 0..K-1: each its own split and
  batch order) at two batch sizes, a few epochs; alone is timed on a sample of the members and
  scaled to K (the table says so), the sampled members' weights compared bit for bit with
  their stacked selves. Peak memory is each configuration's peak resident memory (the
  kernel's ``VmHWM``, reset after setup) in a process of its own. Then a 10-seed sweep at the
  suite's settings, end to end with ``bench run``.
- ``peak``: the training FLOP/s of the suite (per run: 3 x the forward FLOPs per sample x the
  training samples seen, from the ``suite`` part's results files) against a 2048x2048 float32
  matrix multiply on one thread, measured in the same process: before (sequential) and after
  (stacked). Evaluation passes are not counted.

A benchmark, not a test: it never fails. From the repository root:

    python benchmarks/stacked.py [--part suite|sweep|peak|all] [--rounds 1] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from harness.devices import cpu_model
from harness.measuring.contention import WAIT_LIMIT, assess, snapshot, usable_cpu_ids, watch

BENCH = [sys.executable, "-m", "harness"]  # what the bench script runs
SUITE_WAYS = {  # label: (flags, workers)
    "sequential, --stack off": (["--stack", "off"], 1),
    "stacked, one worker": (["--stack", "auto"], 1),
    "stacked, --jobs 2": (["--stack", "auto", "--jobs", "2"], 2),
    "--stack off --jobs 2": (["--stack", "off", "--jobs", "2"], 2),
}
BASE = "sequential, --stack off"
TIME_FIELDS = {"train_seconds", "wall_seconds", "seconds"}
HIDDEN = [100, 100]  # the regularization suite's MLP
SAMPLE = 9  # members trained alone per configuration, scaled to K
SEEDS_SWEEP = ["--model", "mlp", "--dataset", "mnist1d", "--model-opt", "hidden=100,100",
               "--epochs", "60", "--batch-size", "128", "--lr", "0.05", "--momentum", "0.9",
               "--threads", "1", *[f"--seed={s}" for s in range(10)]]  # fmt: skip
MATMUL = 2048


# ---- timing a bench command in a process of its own


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _window() -> Any:
    """A snapshot whose "own" CPU time is the children's: what a bench subprocess used."""
    return replace(snapshot(), tasks=None, process_cpu_s=_children_cpu())


def timed(args: list[str], out: Path, workers: int) -> tuple[float, dict, str]:
    """Seconds ``bench ARGS -q --out OUT`` took, its results, and the load and contention
    verdict of its window (the command's processes are this one's, other CPU use is not)."""
    before = _window()
    done = subprocess.run([*BENCH, *args, "-q", "--out", str(out)], capture_output=True, text=True)
    after = _window()
    if done.returncode != 0:
        raise SystemExit(f"bench {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    results = json.loads((out / "results.json").read_text())
    return after.wall_s - before.wall_s, results, _verdict(assess(before, after, workers,
                                                                   usable_cpu_ids()))  # fmt: skip


def _verdict(record: dict[str, Any]) -> str:
    """The load around a window and whether it was contended, with the rules' figures."""
    load = f"load {record.get('load_before', 0):.2f} -> {record.get('load_after', 0):.2f}"
    if not record.get("contended"):
        return f"{load}; quiet"
    facts = []
    if (record.get("run_queue_wait") or 0) > WAIT_LIMIT:
        facts.append(f"waited for a CPU {100 * record['run_queue_wait']:.0f}% of the time")
    if record.get("other_cores") is not None:
        facts.append(f"{record['other_cores']:.1f} other cores busy")
    return f"{load}; contended ({', '.join(facts)})"


def untimed(value: Any) -> Any:
    """``value`` without its time fields, at any depth."""
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k not in TIME_FIELDS}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def identical(a: dict, b: dict) -> bool:
    """Every run of ``a`` and ``b``: the same status and exactly the same untimed metrics."""

    def runs(results: dict) -> str:
        by_id = {r["id"]: [r["status"], untimed(r["metrics"])] for r in results["runs"]}
        return json.dumps(by_id, sort_keys=True)  # NaN compares equal as text

    return runs(a) == runs(b)


# ---- part a: the suite


def suite_part(args: argparse.Namespace, scratch: Path, ways: dict) -> dict[str, dict]:
    """Each way's median wall time over the rounds, and its last results."""
    suite = ["run", "--suite", "regularization"] + (["--quick"] if args.quick else [])
    seconds: dict[str, list[float]] = {label: [] for label in ways}
    rows: dict[str, dict] = {}
    for round_ in range(args.rounds):
        labels = list(ways)[round_ % len(ways) :] + list(ways)[: round_ % len(ways)]
        for label in labels:
            flags, workers = ways[label]
            out = scratch / f"suite-r{round_}-{label.replace(' ', '_')}"
            took, results, verdict = timed([*suite, *flags], out, workers)
            seconds[label].append(took)
            row = rows.setdefault(label, {"verdicts": [], "identical": True})
            row.update(results=results, workers=workers)
            row["verdicts"].append(verdict)
            print(f"  round {round_ + 1}: {label}: {took:.1f} s, {verdict}", flush=True)
    for label, row in rows.items():
        row["seconds"] = statistics.median(seconds[label])
        row["identical"] = identical(row["results"], rows[BASE]["results"])
    return rows


def print_suite(rows: dict[str, dict], args: argparse.Namespace) -> None:
    runs = len(rows[BASE]["results"]["runs"])
    name = "regularization --quick" if args.quick else "regularization"
    print(f"\n## bench run --suite {name}: {runs} runs, median of {args.rounds} round(s)\n")
    print("| way | wall time | vs sequential | identical | threads | load; machine |")
    print("|---|---|---|---|---|---|")
    base = rows[BASE]["seconds"]
    for label, row in rows.items():
        stacked = sum("group" in r.get("stacking", {}) for r in row["results"]["runs"])
        ratio = base / row["seconds"]
        print(f"| {label} ({stacked} stacked) | {row['seconds']:.1f} s | {ratio:.2f}x"
              f" | {'yes' if row['identical'] else 'NO'} | 1 per run, {row['workers']} worker(s)"
              f" | {' / '.join(row['verdicts'])} |")  # fmt: skip


# ---- part c: the arithmetic


def matmul_flops() -> float:
    """FLOP/s of a float32 ``MATMUL``-square multiply at one thread: the best of five."""
    a, b = torch.randn(MATMUL, MATMUL), torch.randn(MATMUL, MATMUL)
    a @ b  # warm-up
    best = min(_seconds(lambda: a @ b) for _ in range(5))
    return 2 * MATMUL**3 / best


def _seconds(work: Any) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def training_flops(results: dict) -> float:
    """3 x forward FLOPs per sample x training samples seen, over every run that trained."""
    total = 0.0
    for run in results["runs"]:
        metrics = run["metrics"] or {}
        if "flops" in metrics and "history" in metrics:
            seen = len(metrics["history"]) * metrics["split_sizes"]["train"]
            total += 3 * metrics["flops"] * seen
    return total


def peak_part(rows: dict[str, dict]) -> None:
    with watch(torch.device("cpu"), threads=1) as contention:
        peak = matmul_flops()
    cores = len(usable_cpu_ids())
    print(f"\n## the suite's arithmetic against a {MATMUL}x{MATMUL} float32 matmul\n")
    print(f"matmul, 1 thread: {peak / 1e9:.1f} GFLOP/s ({_verdict(contention)}); "
          f"the machine ({cores} cores): {cores * peak / 1e9:.1f} GFLOP/s\n")  # fmt: skip
    print("| way | training GFLOP | wall time | GFLOP/s | of 1 thread's matmul "
          "| of the machine's |\n|---|---|---|---|---|---|")  # fmt: skip
    for label, row in rows.items():
        flops = training_flops(row["results"])
        rate = flops / row["seconds"]
        print(f"| {label} | {flops / 1e9:.1f} | {row['seconds']:.1f} s | {rate / 1e9:.2f} | "
              f"{100 * rate / peak:.1f}% | {100 * rate / (cores * peak):.1f}% |")  # fmt: skip


# ---- part b: the sweep, in-process


def _members(k: int, batch_size: int, epochs: int) -> tuple[Any, list]:
    from harness.planning.protocol import RunContext
    from harness.planning.train_settings import TrainConfig
    from harness.registry.loading import load_plugins
    from harness.training.loop import seed_everything
    from harness.training.stacked.trainer import Member
    from harness.training.steps import build_model, open_splits

    ctx = RunContext(registry=load_plugins().registry, device=torch.device("cpu"))
    settings = {"epochs": epochs, "batch_size": batch_size, "lr": 0.05, "momentum": 0.9}
    members = []
    for seed in range(k):
        splits = open_splits(ctx, "mnist1d", {}, seed, "mlp")
        seed_everything(seed)
        model = build_model(ctx, "mlp", {"hidden": HIDDEN}, splits)
        config = TrainConfig.from_options(settings)
        members.append(Member(model, splits, config, seed, torch.get_rng_state()))
    return ctx, members


def _copies(members: list) -> list:
    return [replace(m, model=copy.deepcopy(m.model)) for m in members]


def _stacked(ctx: Any, members: list) -> list:
    from harness.training.stacked.trainer import train_stacked
    from harness.training.steps import task_of

    train_stacked(members, task=task_of(ctx, members[0].splits), device=ctx.device)
    return [m.model for m in members]


def _alone(ctx: Any, members: list) -> list:
    from harness.training.loop import train
    from harness.training.steps import task_of

    for m in members:
        torch.set_rng_state(m.rng_state)
        task = task_of(ctx, m.splits)
        train(m.model, m.splits, m.config, task=task, device=ctx.device, seed=m.seed)
    return [m.model for m in members]


def _same_bits(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pairs = zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    return all(torch.equal(x.view(torch.int32), y.view(torch.int32)) for x, y in pairs)


def sweep_row(k: int, batch_size: int, args: argparse.Namespace) -> None:
    ctx, members = _members(k, batch_size, args.epochs)
    sample = members[: min(k, SAMPLE)]
    times: dict[str, list[float]] = {"alone": [], "stacked": []}
    same = True
    _alone(ctx, _copies(members[:1]))  # warm-up: one-time costs of both ways, untimed
    _stacked(ctx, _copies(members[:2]))
    with watch(ctx.device, threads=1) as contention:
        for round_ in range(args.sweep_rounds):
            order = ["alone", "stacked"][:: 1 if round_ % 2 == 0 else -1]
            for way in order:
                group = _copies(sample if way == "alone" else members)
                train = _alone if way == "alone" else _stacked
                start = time.perf_counter()
                models = train(ctx, group)
                times[way].append(time.perf_counter() - start)
                if way == "alone":
                    lone = models
                else:
                    stacked = models[: len(sample)]
            same = same and all(_same_bits(a, b) for a, b in zip(lone, stacked, strict=True))
    alone = statistics.median(times["alone"]) * k / len(sample)
    together = statistics.median(times["stacked"])
    memory = {way: _peak_memory(k, batch_size, way, args.epochs) for way in ("alone", "stacked")}
    scaled = f"{len(sample)} timed, x{k / len(sample):.3g}" if len(sample) < k else "all timed"
    print(f"| {k} | {batch_size} | {alone:.1f} s ({scaled}) | {together:.1f} s | "
          f"{alone / together:.1f}x | {'yes' if same else 'NO'} | {memory['alone']} | "
          f"{memory['stacked']} | {_verdict(contention)} |", flush=True)  # fmt: skip


def _peak_memory(k: int, batch_size: int, way: str, epochs: int) -> str:
    """The peak resident memory of a process that builds the K members and trains them (way
    "stacked"), or builds and trains one (way "alone": a run alone holds only its own), and
    what its setup reached before training."""
    spec = f"{k}:{batch_size}:{way}:{epochs}"
    done = subprocess.run([sys.executable, __file__, "--memory", spec],
                          capture_output=True, text=True, check=True)  # fmt: skip
    setup, peak = json.loads(done.stdout.splitlines()[-1])
    return f"{peak / 2**20:.0f} MB (+{(peak - setup) / 2**20:.0f} MB)"


def measure_memory(spec: str) -> None:
    """In a process of its own: the resident memory after setup (imports, data, models) and
    its peak while training, in bytes, as JSON. The peak is the kernel's ``VmHWM``, reset after
    setup and a warm-up (``ru_maxrss`` would not do: a child starts with its parent's)."""
    k, batch_size, way, epochs = spec.split(":")
    torch.set_num_threads(1)
    ctx, members = _members(int(k) if way == "stacked" else 1, int(batch_size), int(epochs))
    warm = [replace(m, config=replace(m.config, epochs=1)) for m in members[:1] * 2]
    _alone(ctx, _copies(warm[:1]))  # lazily loaded kernels and libraries: not the training's
    _stacked(ctx, _copies(warm))
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    setup = _status_kb("VmRSS")
    (_stacked if way == "stacked" else _alone)(ctx, members)
    print(json.dumps([setup * 1024, _status_kb("VmHWM") * 1024]))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/self/status")


def sweep_part(args: argparse.Namespace, scratch: Path) -> None:
    print(
        f"\n## in-process: mlp {HIDDEN} on mnist1d, seeds 0..K-1, {args.epochs} epochs, "
        f"sgd lr 0.05 momentum 0.9, median of {args.sweep_rounds} alternated rounds\n"
    )
    print("Peak memory: the peak resident memory (VmHWM) while training, in a process of its own "
          "per configuration that trains the K members stacked or one alone (a run alone holds "
          "only its own); in brackets, what training added to the memory after imports, data, "
          "models and a one-epoch warm-up.")  # fmt: skip
    print(
        "\n| K | batch | alone (scaled to K) | stacked | speed-up | identical (sampled) "
        "| peak memory alone | peak memory stacked | 1 thread; load; machine |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for k in args.members:
        for batch_size in args.batch_sizes:
            sweep_row(k, batch_size, args)
    print(
        "\n## 10 seeds of mlp on mnist1d at the suite's settings (60 epochs, batch 128), "
        "bench run end to end\n"
    )
    print("| way | wall time | vs --stack off | identical | threads | load; machine |")
    print("|---|---|---|---|---|---|")
    rows = {}
    for label, flags in {"--stack off": ["--stack", "off"], "stacked": ["--stack", "auto"]}.items():
        out = scratch / f"seeds-{flags[1]}"
        rows[label] = timed(["run", *SEEDS_SWEEP, *flags], out, 1)
    base_s, base_results, _ = rows["--stack off"]
    for label, (took, results, verdict) in rows.items():
        same = "yes" if identical(results, base_results) else "NO"
        print(f"| {label} | {took:.1f} s | {base_s / took:.2f}x | {same} | 1 | {verdict} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["suite", "sweep", "peak", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of the suite part")
    parser.add_argument("--quick", action="store_true", help="the suite's --quick variant")
    parser.add_argument("--members", type=int, nargs="+", default=[9, 27, 81])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of the sweep")
    parser.add_argument("--sweep-rounds", type=int, default=3)
    parser.add_argument("--memory", help=argparse.SUPPRESS)  # K:BATCH:WAY:EPOCHS, internal
    args = parser.parse_args()
    if args.memory:
        return measure_memory(args.memory)
    torch.set_num_threads(1)
    print(f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"Python {sys.version.split()[0]}, 1 thread per run; load average before "
          f"{os.getloadavg()[0]:.2f}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-stacked-") as tmp:
        scratch = Path(tmp)
        if args.part in ("suite", "all"):
            rows = suite_part(args, scratch, SUITE_WAYS)
            print_suite(rows, args)
        elif args.part == "peak":  # the two ways it compares, once
            two = {label: SUITE_WAYS[label] for label in (BASE, "stacked, one worker")}
            rows = suite_part(argparse.Namespace(**{**vars(args), "rounds": 1}), scratch, two)
        if args.part in ("peak", "all"):
            peak_part(rows)
        if args.part in ("sweep", "all"):
            sweep_part(args, scratch)
    print(f"\nload average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
