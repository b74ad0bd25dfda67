"""The ``pruning`` procedure: accuracy against parameters removed (after ShrinkBench).

For each model, dataset and seed a dense model is trained and checkpointed (a state dict). Every
pruning method then prunes that checkpoint to each target, is tested before fine-tuning,
fine-tuned with the same budget as every other variant, and tested again. ``scratch`` variants
are the same architecture made narrower (its ``width`` option) to the same parameter counts and
trained from scratch with the dense training plus fine-tuning budget (a model without a
``width`` option cannot be made narrower: its scratch runs record ``not_applicable`` instead).
The dense control is fine-tuned with that budget too, so every row has had the same training.

Forward latency is timed apart from all that: one ``latency`` run per model and dataset, after
the others, re-makes each seed's variant structures from its dense checkpoint (pruning is
deterministic for the seed, and latency depends on the structure, not on fine-tuned weights) and
times each distinct structure once with nothing else running (an ``exclusive`` run), so that
parallel training never sits beside a timing and no structure is timed twice.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from bench_plugins.procedures.pruning.methods import (
    PruningContext,
    make_permanent,
    sparsity_facts,
    structure_of,
)
from bench_plugins.procedures.pruning.report import report, variant
from torch import nn

from harness.errors import BenchError, UnknownNameError
from harness.measuring.flops import count_params, effective_flops, forward_flops
from harness.measuring.timer import forward_latency
from harness.options import Option
from harness.planning.protocol import Procedure, RunContext
from harness.planning.run_configs import entry_train, subject
from harness.planning.suite_files import Run, Suite, safe_name
from harness.registry.specs import ModelSpec, Registry
from harness.results.store import atomic_write
from harness.training.loop import TrainConfig, seed_everything
from harness.training.steps import build_model, fit, open_splits, split_metrics

SCRATCH = "scratch"
DEFAULT_METHODS = ("random", "layer-magnitude", "global-magnitude", "structured", SCRATCH)
DEFAULT_TARGETS = (50.0, 75.0, 87.5, 93.75, 96.875)
QUICK_TARGETS = (50.0, 87.5, 96.875)

SETTINGS = {
    "methods": Option(
        DEFAULT_METHODS, "pruning methods (bench list pruning-methods) and scratch", "strs"
    ),
    "targets": Option(
        DEFAULT_TARGETS, "parameter drops to reach, in percent", "floats", minimum=0.0, below=100.0
    ),
    "finetune_epochs": Option(3, "fine-tuning epochs for every variant", "int", minimum=0),
    "latency_batch": Option(64, "batch size of the forward latency measurement", "int", minimum=1),
    "prune_classifier": Option(
        False, "unstructured methods may prune the final classifier's weights too", "bool"
    ),
    "quick": Option(
        False, f"one seed, targets {', '.join(map(str, QUICK_TARGETS))}%, fewer epochs", "bool"
    ),
}


def plan(suite: Suite, registry: Registry) -> list[Run]:
    settings = suite.settings
    _check_classification(suite, registry)
    for method in settings["methods"]:
        if method != SCRATCH and method not in registry.pruning_methods:
            known = [*registry.pruning_methods.names(), SCRATCH]
            error = UnknownNameError("pruning method", method, known)
            raise suite.error("pruning.methods", str(error))
    quick = settings["quick"]
    seeds = suite.seeds[:1] if quick else suite.seeds
    targets = [t for t in settings["targets"] if t > 0]
    if quick:
        targets = [t for t in QUICK_TARGETS if t in targets] or targets[:2]
    finetune = min(settings["finetune_epochs"], 1) if quick else settings["finetune_epochs"]

    runs: list[Run] = []

    def add(kind: str, model, dataset, seed: int, needs=(), exclusive=False, **extra: Any) -> int:
        tag = "-".join(str(extra[k]) for k in ("method", "target") if k in extra) or kind
        one_seed = "" if "seeds" in extra else f"-s{seed}"
        runs.append(
            Run(
                len(runs),
                "pruning",
                {
                    "name": f"{model.label}-{dataset.label}-{tag}{one_seed}",
                    "kind": kind,
                    **subject(model, dataset),
                    "train": entry_train(model, dataset, suite.train, 5 if quick else None),
                    "finetune_epochs": finetune,
                    "latency_batch": settings["latency_batch"],
                    "seed": seed,
                    **extra,
                },
                needs,
                exclusive,
            )
        )
        return len(runs) - 1

    # set only where not the default, so that runs planned before these keys keep their hashes
    pruned = {"prune_classifier": True} if settings["prune_classifier"] else {}
    denses = []  # (model, dataset, its dense runs, the methods its latency run re-makes)
    for model in suite.models:
        scratch = _scratch_applicability(model.name, registry)
        timed = [m for m in settings["methods"] if not (m == SCRATCH and scratch)]
        for dataset in suite.datasets:
            denses.append((model, dataset, [], timed))
            for seed in seeds:
                dense = add("dense", model, dataset, seed)
                denses[-1][2].append(dense)
                for method in settings["methods"]:
                    for target in targets:
                        kind = SCRATCH if method == SCRATCH else "prune"
                        needs = () if kind == SCRATCH else (dense,)  # scratch trains anew
                        extra = scratch if kind == SCRATCH else pruned
                        add(kind, model, dataset, seed, needs, method=method, target=target,
                            **extra)  # fmt: skip
    for model, dataset, needs, timed in denses:  # timed alone, after everything else
        add("latency", model, dataset, seeds[0], tuple(needs), True, seeds=list(seeds),
            methods=timed, targets=targets, **pruned)  # fmt: skip
    return runs


def _scratch_applicability(model: str, registry: Registry) -> dict[str, str]:
    """Nothing for a model with a ``width`` option; otherwise the ``not_applicable`` reason its
    scratch runs record instead of training (they are not failures: the model cannot be made
    narrower)."""
    if "width" in registry.models.get(model).options:
        return {}
    return {"not_applicable": _no_width(model)}


def _no_width(model: str) -> str:
    return f"model '{model}' has no 'width' option, which scratch variants need"


def execute(run: Run, ctx: RunContext) -> dict[str, Any]:
    config = run.config
    if "not_applicable" in config:
        return {"not_applicable": config["not_applicable"]}
    splits = open_splits(ctx, config["dataset"], config["dataset_options"], config["seed"])
    if config["kind"] == "dense":
        return _dense(config, ctx, splits)
    if config["kind"] == "latency":
        return _latencies(config, ctx, splits)
    if config["kind"] == SCRATCH:
        return _scratch(config, ctx, splits)
    return _prune(config, ctx, splits)


def _train_config(config: dict[str, Any], epochs: int) -> TrainConfig:
    return TrainConfig.from_options({**config["train"], "epochs": epochs})


def _dense(config, ctx: RunContext, splits) -> dict[str, Any]:
    seed_everything(config["seed"])
    model = build_model(ctx, config["model"], config["model_options"], splits)
    train_config = TrainConfig.from_options(config["train"])
    history = fit(ctx, model, splits, train_config, config["seed"]).history
    path = _checkpoint_path(config, ctx)
    atomic_write(path, lambda handle: torch.save(model.state_dict(), handle))
    before = _test(model, splits, ctx, train_config)
    control = copy.deepcopy(model)
    finetune = _finetune(control, config, ctx, splits)
    return {
        **_describe(control, model, splits),
        "accuracy_before": before,
        "accuracy_after": _test(control, splits, ctx, train_config),
        "history": history,
        "finetune_history": finetune,
        "checkpoint": str(path),
    }


def _check_classification(suite: Suite, registry: Registry) -> None:
    """Pruning is judged by accuracy: refuse other tasks before any run, naming the entry."""
    for i, entry in enumerate(suite.datasets):
        task = registry.datasets.get(entry.name).task
        if task != "classification":
            raise suite.error(
                f"datasets[{i}]",
                f"the pruning procedure needs a classification dataset; '{entry.name}' is for "
                f"the {task} task",
            )
    for i, entry in enumerate(suite.models):
        tasks = registry.models.get(entry.name).tasks
        if "classification" not in tasks:
            raise suite.error(
                f"models[{i}]",
                f"the pruning procedure needs a classification model; '{entry.name}' supports "
                f"{', '.join(tasks)}",
            )


def _prune(config, ctx: RunContext, splits) -> dict[str, Any]:
    dense = _load_dense(config, ctx, splits)
    model, notes = _pruned(dense, config["method"], config["target"], config, ctx, splits)
    method = ctx.registry.pruning_methods.get(config["method"])
    train_config = TrainConfig.from_options(config["train"])
    before = _test(model, splits, ctx, train_config)
    finetune = _finetune(model, config, ctx, splits)
    make_permanent(model)
    return {
        **_describe(model, dense, splits),
        "accuracy_before": before,
        "accuracy_after": _test(model, splits, ctx, train_config),
        "structure": method.structure,
        "finetune_history": finetune,
        **notes,
    }


def _pruned(
    dense: nn.Module, method_name: str, target: float, config, ctx, splits
) -> tuple[nn.Module, dict[str, Any]]:
    """A pruned copy of ``dense``, exactly as a pruning run of that method and target makes it
    (``config`` gives the seed and ``prune_classifier``), and what the method noted."""
    method = ctx.registry.pruning_methods.get(method_name)
    seed_everything(config["seed"])  # random pruning draws from the seeded generator
    context = PruningContext(splits.input_shape, config.get("prune_classifier", False))
    return method.prune(copy.deepcopy(dense), target / 100, context), context.notes


def _narrower(config, target: float, ctx: RunContext, splits) -> tuple[nn.Module, float]:
    """A scratch variant's model (seeded) and its ``width``."""
    spec = ctx.registry.models.get(config["model"])
    width = width_for_target(
        spec, splits.input_shape, splits.num_classes, config["model_options"], target / 100
    )
    seed_everything(config["seed"])
    options = {**config["model_options"], "width": width}
    return build_model(ctx, config["model"], options, splits), width


def _latencies(config, ctx: RunContext, splits) -> dict[str, Any]:
    """The forward latency of every seed's variant structures: ``{"seeds": {seed: {variant:
    record}}}`` by :func:`variant` name; a variant that cannot be made again has its ``error``
    instead, and the others are still timed.

    Each distinct structure (the shapes of its parameters) is timed once: a masked variant
    computes exactly what the dense model does (zeros are multiplied like any other weight), and
    most methods make the same structure from every seed, so those share the first record
    (``same_structure_as`` names it, e.g. ``s0 dense``) instead of a second, noisier one.
    """
    by_structure: dict[tuple, tuple[str, dict[str, Any]]] = {}

    def timed(model: nn.Module, key: str) -> dict[str, Any]:
        shapes = structure_of(model)
        if shapes in by_structure:
            first, record = by_structure[shapes]
            return {**record, "same_structure_as": first}
        batch = config["latency_batch"]
        record = forward_latency(model, splits.input_shape, batch, ctx.device)
        by_structure[shapes] = (key, record)
        return record

    seeds = {}
    for seed in config["seeds"]:
        one_seed = {**config, "seed": seed}
        dense = _load_dense(one_seed, ctx, splits)
        measured = {"dense": timed(dense, f"s{seed} dense")}
        for method in config["methods"]:
            for target in config["targets"]:
                key = variant({"method": method, "target": target})
                try:
                    model = _structure(dense, method, target, one_seed, ctx, splits)
                    measured[key] = timed(model, f"s{seed} {key}")
                except Exception as exc:  # that variant's own run records the failure in full
                    measured[key] = {"error": f"{type(exc).__name__}: {exc}"}
        seeds[str(seed)] = measured
    return {"seeds": seeds}


def _structure(dense: nn.Module, method: str, target: float, config, ctx, splits) -> nn.Module:
    """The model a variant's run made, with its masks made permanent: only its shapes matter."""
    if method == SCRATCH:
        return _narrower(config, target, ctx, splits)[0]
    model = _pruned(dense, method, target, config, ctx, splits)[0]
    make_permanent(model)
    return model


def _scratch(config, ctx: RunContext, splits) -> dict[str, Any]:
    spec = ctx.registry.models.get(config["model"])
    dense = spec.create(splits.input_shape, splits.num_classes, config["model_options"])
    model, width = _narrower(config, config["target"], ctx, splits)
    train_config = TrainConfig.from_options(config["train"])
    epochs = train_config.epochs + config["finetune_epochs"]
    history = fit(ctx, model, splits, _train_config(config, epochs), config["seed"]).history
    return {
        **_describe(model, dense, splits),
        "accuracy_before": None,
        "accuracy_after": _test(model, splits, ctx, train_config),
        "width": width,
        "structure": "dense (narrower)",
        "history": history,
    }


def width_for_target(
    spec: ModelSpec, input_shape, num_classes: int, options: dict[str, Any], target: float
) -> float:
    """The ``width`` whose model has the parameter count closest to a ``target`` drop.

    The bisection builds some 30 models, so its answer is kept for the process: every seed's
    scratch variant (and the latency run, which rebuilds them all) has the same width."""
    if "width" not in spec.options:
        raise BenchError(_no_width(spec.name))
    key = (spec.name, spec.build, tuple(input_shape), num_classes, _frozen(options), target)
    if key not in _WIDTHS:
        _WIDTHS[key] = _search_width(spec, input_shape, num_classes, options, target)
    return _WIDTHS[key]


_WIDTHS: dict[tuple, float] = {}


def _search_width(spec: ModelSpec, input_shape, num_classes: int, options, target: float) -> float:
    def params(width: float) -> int:
        with torch.device("meta"):
            return count_params(spec.create(input_shape, num_classes, {**options, "width": width}))

    goal = params(1.0) * (1 - target)
    low, high = spec.options["width"].minimum or 0.01, 1.0
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if params(middle) < goal else (low, middle)
    return min((low, high), key=lambda w: abs(params(w) - goal))


def _frozen(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True, default=str)


def _finetune(model: nn.Module, config, ctx: RunContext, splits) -> list[dict[str, float]]:
    if not config["finetune_epochs"]:
        return []
    train_config = _train_config(config, config["finetune_epochs"])
    return fit(ctx, model, splits, train_config, config["seed"]).history


def _test(model: nn.Module, splits, ctx: RunContext, train_config: TrainConfig) -> float:
    return split_metrics(ctx, model, splits, batch_size=train_config.eval_batch_size)["accuracy"]


def _describe(model: nn.Module, dense: nn.Module, splits) -> dict:
    dense_params = count_params(dense)
    dense_flops = forward_flops(dense, splits.input_shape)
    effective = effective_flops(model, splits.input_shape)
    return {
        **sparsity_facts(model, dense_params),
        "dense_params": dense_params,
        "flops": forward_flops(model, splits.input_shape),
        "flops_effective": effective,
        "speedup": dense_flops / max(effective, 1),
    }


def _checkpoint_path(config: dict[str, Any], ctx: RunContext) -> Path:
    name = f"{config['model_label']}-{config['dataset_label']}-s{config['seed']}.pt"
    return ctx.out_dir / "checkpoints" / safe_name(name)


def _load_dense(config, ctx: RunContext, splits) -> nn.Module:
    """The dense checkpoint of this model/dataset/seed, loaded safely as a state dict."""
    path = _checkpoint_path(config, ctx)
    if not path.is_file():
        raise BenchError(f"dense checkpoint {path} is missing: its dense run did not finish")
    model = build_model(ctx, config["model"], config["model_options"], splits)
    model.load_state_dict(torch.load(path, map_location=ctx.device, weights_only=True))
    return model


PROCEDURE = Procedure(
    name="pruning",
    description="prune trained models to parameter targets; accuracy vs parameters removed",
    plan=plan,
    execute=execute,
    report=report,
    settings=SETTINGS,
    default_models=["lenet5", "cnn-small"],
)
