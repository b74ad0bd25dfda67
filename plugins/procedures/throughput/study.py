"""The ``throughput`` procedure: latency, throughput, memory and FLOPs of models at several batch
sizes on every device asked for; optionally a ``torch.profiler`` trace of one step per run.

One run per model x dataset x grid point x device x batch size, so a CUDA out-of-memory error is
recorded as status ``oom`` for that batch size alone; no batch size is ever changed. On the
``synthetic`` dataset each model gets the geometry ``bench list models`` lists it with (its
``input_shape`` and, for a classification model, its ``num_classes``) unless the suite gives a
``shape`` or ``classes``. Only the suite's first seed is used: it fixes the data and weights.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from harness.devices import available_devices, resolve_device
from harness.errors import BenchError
from harness.measuring import MODES, STEP_MODES
from harness.measuring.profiler import profile_step, top_ops_markdown
from harness.measuring.timer import LoopSettings, check_amp, measure
from harness.measuring.workload import prepare, threads_set, too_small
from harness.options import Option
from harness.planning.protocol import Procedure, Report, RunContext, Table
from harness.planning.run_configs import apply_point, grid_points, subject
from harness.planning.suite_files import Entry, Run, Suite
from harness.registry.specs import ModelSpec, Registry
from harness.reporting.cells import Cell
from harness.reporting.tables import (
    contended,
    contention_section,
    context_line,
    count,
    failures_section,
    human,
    markdown_table,
    point_label,
)

QUICK_LOOP = LoopSettings(warmup=1, repeats=3, min_time=0.0, max_time=1.0, min_repeats=1)

SETTINGS = {
    "batch_sizes": Option((1, 32, 128), "batch sizes, one run each", "ints", minimum=1),
    "devices": Option(
        ("all",),
        "devices: all (every available one), auto, cpu, cuda, cuda:N; "
        "a suite's top-level device other than auto wins",
        "strs",
    ),
    "modes": Option(MODES, "what to measure", "strs", choices=MODES),
    "warmup": Option(1, "warm-up iterations, at least (not recorded)", "int", minimum=0),
    "warmup_time": Option(0.0, "warm-up seconds, at least", "float", minimum=0.0),
    "repeats": Option(5, "samples to record, at least", "int", minimum=1),
    "min_time": Option(1.0, "seconds of recorded samples, at least", "float", minimum=0.0),
    "max_time": Option(
        10.0,
        "stop recording after this many seconds of samples even when repeats/min_time are "
        "not met, once there are min_repeats samples (the result says 'capped')",
        "float",
        minimum=0.0,
    ),
    "min_repeats": Option(
        5, "samples that max_time does not cut below (repeats, if fewer)", "int", minimum=1
    ),
    "time_limit": Option(
        60.0,
        "hard ceiling: stop after this many seconds of samples (or max_time, if longer) even "
        "below min_repeats",
        "float",
        minimum=0.0,
    ),
    "amp": Option(
        "none",
        "autocast dtype for forward/backward: none, bf16, fp16 (CUDA only)",
        "str",
        choices=("none", "bf16", "fp16"),
    ),
    "channels_last": Option(False, "channels-last memory format for model and 4-d inputs", "bool"),
    "compile": Option(False, "run the model through torch.compile", "bool"),
    "profile": Option(False, "also profile one step per run with torch.profiler", "bool"),
    "profile_mode": Option("train_step", "the step to profile", "str", choices=STEP_MODES),
    "threads": Option(0, "torch CPU threads (0: leave as it is)", "int", minimum=0),
    "quick": Option(
        False, "smoke test: 1 warm-up, 3 repeats, no minimum time, capped at 1 s", "bool"
    ),
}


def plan(suite: Suite, registry: Registry) -> list[Run]:
    settings = suite.settings
    if "batch_size" in suite.train:
        raise suite.error(
            "train.batch_size",
            "the throughput procedure takes batch sizes from [throughput] batch_sizes "
            "(--batch-size on bench time, --set batch_sizes=... on bench run), not from [train]",
        )
    devices = _devices(suite.device, settings["devices"])
    for device in devices:
        check_amp(settings["amp"], device)
    common = {
        "seed": suite.seeds[0],
        "modes": list(settings["modes"]),
        "loop": asdict(_loop_settings(settings)),
        **{k: settings[k] for k in ("amp", "channels_last", "compile")},
        # only a thread count asked for: 0 ("leave it as it is") would read as a count beside
        # the one the run used, which its metrics and placement record
        **({"threads": settings["threads"]} if settings["threads"] else {}),
        "profile": settings["profile_mode"] if settings["profile"] else None,
    }
    runs = []
    for model in suite.models:
        spec = registry.models.get(model.name)
        for dataset, point in itertools.product(suite.datasets, grid_points(suite.grid)):
            dataset = _own_geometry(dataset, spec, registry)
            model_options, dataset_options, train = apply_point(point, model, dataset, suite.train)
            _check_fits(registry, dataset.name, dataset_options, settings["batch_sizes"])
            for device, batch in itertools.product(devices, settings["batch_sizes"]):
                parts = [
                    model.label,
                    dataset.label,
                    point_label(point),
                    str(device).replace(":", ""),
                    f"b{batch}",
                ]
                config = {
                    "name": "-".join(p for p in parts if p),
                    **subject(model, dataset, model_options, dataset_options),
                    "grid_point": point,
                    "train": train,
                    "device": str(device),
                    "batch_size": batch,
                    **common,
                }
                runs.append(Run(len(runs), "throughput", config, exclusive=True))
    return runs


def _loop_settings(settings: dict[str, Any]) -> LoopSettings:
    if settings["quick"]:
        return QUICK_LOOP
    keys = ("warmup", "warmup_time", "repeats", "min_time", "max_time", "min_repeats", "time_limit")
    return LoopSettings(**{k: settings[k] for k in keys})


def _devices(suite_device: str, wanted: tuple[str, ...]) -> list[torch.device]:
    names = [suite_device] if suite_device != "auto" else list(wanted)
    expanded = [n for name in names for n in (available_devices() if name == "all" else [name])]
    return list(dict.fromkeys(resolve_device(name) for name in expanded))


def _check_fits(
    registry: Registry, dataset: str, options: dict[str, Any], batch_sizes: tuple[int, ...]
) -> None:
    """Refuse, before any run, a batch larger than a training split whose size is known."""
    spec = registry.datasets.get(dataset)
    train = (spec.describe(spec.resolve(options))["sizes"] or {}).get("train")
    if train is not None and max(batch_sizes) > train:
        raise BenchError(too_small(max(batch_sizes), train))


def _own_geometry(dataset: Entry, model: ModelSpec, registry: Registry) -> Entry:
    """Synthetic data takes the geometry ``bench list models`` lists the model with, so that the
    model timed is the one listed: its input shape and, when the model is listed for the data's
    own task (classification), its classes. Options the suite or the user set win. A model
    listed for a task whose targets synthetic data cannot give (regression) is refused unless
    the user gives the shape: it would be timed as another model than the one listed."""
    if dataset.name != "synthetic":
        return dataset
    listed = {"shape": "x".join(map(str, model.input_shape))}
    task = model.listing_info().task
    synthetic = registry.datasets.get(dataset.name).task
    if task == synthetic:
        if model.num_classes < 2 and "classes" not in dataset.options:
            raise BenchError(
                f"model '{model.name}' is listed with {model.num_classes} class; synthetic data "
                "needs at least 2: give it classes=N (bench time: --dataset-opt classes=N)"
            )
        listed["classes"] = model.num_classes
    elif "shape" not in dataset.options and not registry.tasks.get(task).derive:
        fitting = [d.name for d in registry.datasets if d.task == task]
        raise BenchError(
            f"model '{model.name}' is listed for the {task} task, and synthetic data is for "
            f"{synthetic}: it would be timed as another model than bench list models shows; "
            f"time it on a dataset of its task (--dataset {' or '.join(fitting) or 'NAME'})"
        )
    return replace(dataset, options={**listed, **dataset.options})


def execute(run: Run, ctx: RunContext) -> dict[str, Any]:
    with threads_set(run.config.get("threads", 0)):
        prepared = prepare(run, ctx)
        config = run.config
        metrics = {
            **prepared.facts,
            **measure(
                prepared.workload,
                config["modes"],
                LoopSettings(**config["loop"]),
                flops=prepared.flops,
                epoch_split=prepared.epoch_split,
            ),
        }
        if config["profile"]:
            mode = config["profile"]
            trace_dir = ctx.out_dir / "traces" / run.name
            metrics["profile"] = {
                "mode": mode,
                **profile_step(
                    prepared.workload.step(mode), prepared.workload.device, trace_dir, worker=mode
                ),
            }
        return metrics


LATENCY_COLUMNS = {"forward": "forward", "forward_backward": "fwd+bwd", "train_step": "train step"}
NOTE = (
    "Latency: median (IQR) of one batch, both to the median's precision. FLOP/s: achieved, from "
    "the forward FLOPs. train samples/s: batch / train-step median; epoch samples/s: one training"
    " epoch through the harness's data path. Peak memory: CUDA peak allocated; on CPU the rise of"
    " resident memory during the measurement. flags: contended (the machine was busy: the figure "
    "is not to be trusted, see below), noisy (IQR/median > 10%), capped (a cap stopped the "
    "measurement before repeats and min_time were met: which cap, and the samples or seconds "
    "taken of those wanted; its latency is marked †)."
)
CAPPED_MARK = "†"


def summary_row(run: dict[str, Any], modes: list[str]) -> dict[str, Any]:
    config, metrics = run["config"], run["metrics"]
    row = {"model": config["model_label"]}
    if config.get("grid_point"):
        row["settings"] = point_label(config["grid_point"])
    row.update(
        {
            "input": "x".join(map(str, metrics.get("input_shape", []))) or "—",
            "device": config["device"],
            "batch": config["batch_size"],
            "params": count(metrics.get("params")),
            "FLOPs/sample": human(metrics.get("flops_per_sample", {}).get("forward")),
        }
    )
    ok = run["status"] == "ok"
    for mode in modes:
        if mode in LATENCY_COLUMNS:
            row[f"{LATENCY_COLUMNS[mode]} (IQR) ms"] = (
                _latency(metrics.get(mode), LATENCY_COLUMNS[mode]) if ok else run["status"]
            )
        if mode == "forward":
            row["fwd FLOP/s"] = human(metrics.get("forward", {}).get("flop_per_s"))
        if mode == "train_step":
            row["train samples/s"] = _rate(metrics.get("train_step"))
        if mode == "epoch":
            row["epoch samples/s"] = _rate(metrics.get("epoch"))
    row["peak mem MiB"] = _peak_memory(metrics, modes)
    row["flags"] = _flags(metrics, modes) if ok else run["status"]
    return row


def _latency(record: dict[str, Any] | None, label: str) -> Cell:
    """Median (IQR) in milliseconds, the unit its column header names; as numbers, the columns
    '<label> median ms' and '<label> IQR ms'."""
    if not record:
        return Cell("—")
    median, iqr = record["median"] * 1e3, record["iqr"] * 1e3
    numbers = {f"{label} median ms": median, f"{label} IQR ms": iqr}
    mark = CAPPED_MARK if record.get("capped") else ""
    places = _decimals(median)
    return Cell(f"{median:,.{places}f} ({iqr:,.{places}f}){mark}", numbers)


def _decimals(value: float) -> int:
    """The decimal places that show three significant digits of ``value`` (none from 100 up):
    the median's, which its IQR shares, so both read to the same precision."""
    return 0 if value >= 100 or value <= 0 else 2 - math.floor(math.log10(value))


def _rate(record: dict[str, Any] | None) -> str:
    if not record or record.get("samples_per_s") is None:
        return "—"
    return f"{record['samples_per_s']:,.1f}"


def _peak_memory(metrics: dict[str, Any], modes: list[str]) -> str:
    """The largest CUDA peak allocation, or CPU rise of resident memory, over the modes."""
    peaks = []
    for mode in modes:
        memory = metrics.get(mode, {}).get("memory", {})
        peak = memory.get("peak_allocated_bytes", memory.get("rss_increase_bytes"))
        if peak is not None:
            peaks.append(peak)
    return f"{max(peaks) / 2**20:,.1f}" if peaks else "—"


def _flags(metrics: dict[str, Any], modes: list[str]) -> str:
    flags = []
    for mode in modes:
        record = metrics.get(mode, {})
        marks = [
            *(["contended"] if contended(record) else []),
            *([_cap_text(record)] if record.get("capped") else []),
            *(["noisy"] if record.get("noisy") and not record.get("capped") else []),
        ]
        if marks:
            flags.append(f"{mode} {' '.join(marks)}")
    return ", ".join(flags) or "—"


def _cap_text(record: dict[str, Any]) -> str:
    """Which cap stopped a measurement, and the samples (or, when those were there, the
    seconds) it took of those wanted: 'capped by max_time=10: 2 of 5 samples'."""
    cap = record.get("cap")
    if not cap:  # recorded before bench said which cap
        return f"capped (n={record['n']})"
    if cap["taken_samples"] < cap["wanted_samples"]:
        short = f"{cap['taken_samples']} of {cap['wanted_samples']} samples"
    else:
        short = f"{cap['taken_s']:.2g} of {cap['wanted_s']:g} s"
    return f"capped by {cap['by']}={cap['limit']:g}: {short}"


def report(results: dict[str, Any], plots_dir: Path | None = None) -> Report:
    suite, runs = results["suite"], results["runs"]
    modes = list(dict.fromkeys(m for r in runs for m in r["config"].get("modes", [])))
    table = Table(
        "throughput",
        [summary_row(r, modes) for r in runs],
        key=("model", "settings", "input", "device", "batch"),
        note=NOTE,
    )
    parts = [
        f"## {suite['name']}: latency, throughput and memory",
        context_line(results),
        markdown_table(table.rows),
        f"_{NOTE}_",
    ]
    for run in runs:
        profile = run["metrics"].get("profile") if run["status"] == "ok" else None
        if profile:
            parts.append(
                f"### Top operators: {run['id']} ({profile['mode']}, totals over "
                f"{profile['active_steps']} profiled steps)\n\n"
                f"{top_ops_markdown(profile)}\n\ntrace: `{profile['trace_dir']}`"
            )
    markdown = "\n\n".join(parts) + contention_section(runs) + failures_section(runs) + "\n"
    return Report(markdown=markdown, tables=[table])


PROCEDURE = Procedure(
    name="throughput",
    description="latency, throughput, memory and FLOPs per model x device x batch size",
    plan=plan,
    execute=execute,
    report=report,
    settings=SETTINGS,
    default_datasets=["synthetic"],
)
