"""The ``transfer`` procedure: pretrain on a source dataset, transfer to a target (the course's
lab 6).

Per model and seed one *pretraining* run trains on the source and saves its weights once, as a
state dict. Each *transfer* run then trains on the target with only ``per_class`` labelled
samples of each class, one way of three:

- ``fine-tune``: the pretrained weights, a new head, every layer trained;
- ``feature-extraction``: the pretrained weights frozen, only a new head trained;
- ``scratch``: a freshly initialised model, every layer trained.

Every strategy has the same training budget on the target (the suite's ``[train]``) and is
tested once on the whole target test split. The *head* is the model's last ``nn.Linear``; a
new head is the freshly initialised one of the model built for the target. With ``source =
"none"`` nothing is pretrained: the model's own weights (e.g. ``resnet18`` with ``weights=PATH``,
torchvision's ImageNet weights saved to a file) are the starting point, the head is
re-initialised, and ``scratch`` builds the model without its ``weights`` option. Frozen layers
keep their weights, but BatchNorm running statistics in them still follow the target data (the
model trains in train mode), as in the course's code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from bench_plugins.procedures.transfer.report import report
from torch import nn

from harness.errors import BenchError, UnknownNameError
from harness.options import Option
from harness.planning.protocol import Procedure, RunContext
from harness.planning.run_configs import entry_train, subject
from harness.planning.suite_files import Entry, Run, Suite, safe_name
from harness.registry.specs import Registry
from harness.results.store import atomic_write
from harness.training.steps import train_and_test

STRATEGIES = ("fine-tune", "feature-extraction", "scratch")
NO_SOURCE = "none"
QUICK_PER_CLASS = (10, 0)
QUICK_EPOCHS = 5

SETTINGS = {
    "source": Option(
        "mnist-5k",
        "dataset to pretrain on; none = start from the model's own weights (weights=PATH)",
        "str",
    ),
    "target": Option("digits", "dataset to transfer to", "str"),
    "strategies": Option(STRATEGIES, "fine-tune, feature-extraction and/or scratch", "strs"),
    "per_class": Option(
        (5, 10, 25, 50, 0),
        "labelled target samples per class to train on (0 = the whole training split)",
        "ints",
        minimum=0,
    ),
    "pretrain_epochs": Option(10, "epochs of pretraining on the source", "int", minimum=1),
    "quick": Option(
        False,
        "one seed, per_class 10 and all, at most 3 pretraining and 5 target epochs",
        "bool",
    ),
}


def plan(suite: Suite, registry: Registry) -> list[Run]:
    settings = suite.settings
    source, target = settings["source"], settings["target"]
    _check(suite, registry, source, target)
    quick = settings["quick"]
    seeds = suite.seeds[:1] if quick else suite.seeds
    per_class = [p for p in settings["per_class"] if p in QUICK_PER_CLASS] if quick else []
    per_class = per_class or list(settings["per_class"])
    pretrain_epochs = min(settings["pretrain_epochs"], 3) if quick else settings["pretrain_epochs"]
    runs: list[Run] = []

    def add(config: dict[str, Any], needs: tuple[int, ...] = ()) -> None:
        runs.append(Run(len(runs), "transfer", config, needs))

    target_entry = _entry(suite, target)
    max_epochs = QUICK_EPOCHS if quick else None

    for model in suite.models:
        pretrained: dict[int, int] = {}  # seed: index of its pretraining run
        if source != NO_SOURCE:
            source_entry = _entry(suite, source)
            for seed in seeds:
                pretrained[seed] = len(runs)
                add(
                    {
                        "name": f"{model.label}-pretrain-{source_entry.label}-s{seed}",
                        "kind": "pretrain",
                        **subject(model, source_entry),
                        "train": {
                            **entry_train(model, source_entry, suite.train),
                            "epochs": pretrain_epochs,
                        },
                        "seed": seed,
                    }
                )
        for count in per_class:
            for strategy in settings["strategies"]:
                for seed in seeds:
                    add(
                        {
                            "name": f"{model.label}-{target_entry.label}-{strategy}-"
                            f"{count or 'all'}-s{seed}",
                            "kind": "transfer",
                            "strategy": strategy,
                            "source": source,
                            **subject(model, target_entry),
                            "train_per_class": count,
                            "train": entry_train(model, target_entry, suite.train, max_epochs),
                            "seed": seed,
                        },
                        ()
                        if strategy == "scratch" or seed not in pretrained
                        else (pretrained[seed],),
                    )
    return runs


def _check(suite: Suite, registry: Registry, source: str, target: str) -> None:
    """Refuse unknown datasets and strategies, and non-classification targets, before any run."""
    for key, name in (("source", source), ("target", target)):
        if name == NO_SOURCE and key == "source":
            continue
        if name not in registry.datasets:
            known = registry.datasets.names() + ([NO_SOURCE] if key == "source" else [])
            raise suite.error(f"transfer.{key}", str(UnknownNameError("dataset", name, known)))
        task = registry.datasets.get(name).task
        if task != "classification":
            raise suite.error(
                f"transfer.{key}", f"transfer needs classification datasets; '{name}' is {task}"
            )
    if source == target:
        raise suite.error("transfer.target", f"the target is the source ('{source}')")
    for index, entry in enumerate(suite.datasets):
        if entry.name not in (source, target):  # e.g. --dataset image-folder without --set
            raise suite.error(
                f"datasets[{index}]",
                f"'{entry.name}' is neither the source ('{source}') nor the target ('{target}'): "
                f"--set source=... and --set target=... name them, and --dataset lists them "
                f"(e.g. --dataset {entry.name} --set target={entry.name})",
            )
    for index, model in enumerate(suite.models):
        if "freeze" in model.options:
            raise suite.error(
                f"models[{index}].options.freeze",
                "the strategies decide what is frozen (feature-extraction freezes all but the "
                "head); remove the freeze option",
            )
    if source == NO_SOURCE:
        for index, model in enumerate(suite.models):
            if not model.options.get("weights"):
                raise suite.error(
                    f"models[{index}]",
                    f"source = none starts from the model's own weights, and '{model.name}' "
                    "has none: give --model-opt weights=PATH (resnet18, alexnet), or a source",
                )
    for strategy in suite.settings["strategies"]:
        if strategy not in STRATEGIES:
            error = UnknownNameError("strategy", strategy, STRATEGIES)
            raise suite.error("transfer.strategies", str(error))


def _entry(suite: Suite, name: str) -> Entry:
    """The suite's ``datasets`` entry of that name (its label and options), or a plain one."""
    return next((e for e in suite.datasets if e.name == name), Entry(name, name))


def execute(run: Run, ctx: RunContext) -> dict[str, Any]:
    config = run.config
    if config["kind"] == "pretrain":
        model, metrics = train_and_test(ctx, config)
        path = pretrained_path(ctx, config["model_label"], config["dataset"], config["seed"])
        atomic_write(path, lambda handle: torch.save(model.state_dict(), handle))
        return {**metrics, "checkpoint": str(path)}
    strategy, source = config["strategy"], config["source"]
    if strategy == "scratch":
        options = {k: v for k, v in config["model_options"].items() if k != "weights"}
        return train_and_test(ctx, {**config, "model_options": options})[1]
    pretrained = None
    if source != NO_SOURCE:
        pretrained = pretrained_path(ctx, config["model_label"], source, config["seed"])

    def prepare(model: nn.Module, splits) -> None:
        head = head_of(model)
        if pretrained is not None:
            load_backbone(model, head, pretrained)
        else:  # the model's own weights may include a head of the target's size: a new one
            head.reset_parameters()
        if strategy == "feature-extraction":
            for parameter in model.parameters():
                parameter.requires_grad_(False)
            for parameter in head.parameters():
                parameter.requires_grad_(True)

    return train_and_test(ctx, config, prepare)[1]


def pretrained_path(ctx: RunContext, model_label: str, source: str, seed: int) -> Path:
    return ctx.out_dir / "checkpoints" / safe_name(f"pretrained-{model_label}-{source}-s{seed}.pt")


def head_of(model: nn.Module) -> nn.Linear:
    """The model's classifier head: its last ``nn.Linear``."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise BenchError("transfer needs a model whose head is an nn.Linear layer")
    return linears[-1]


def load_backbone(model: nn.Module, head: nn.Linear, path: Path) -> None:
    """Load every pretrained tensor but the head's (which stays new), safely as a state dict;
    refuse tensors whose shapes differ, naming both."""
    if not path.is_file():
        raise BenchError(f"pretrained checkpoint {path} is missing: its pretraining run failed")
    state = torch.load(path, map_location="cpu", weights_only=True)
    head_keys = {
        f"{name}.{key}"
        for name, m in model.named_modules()
        if m is head
        for key in ("weight", "bias")
    }
    own = model.state_dict()
    wrong = [
        f"{k} is {tuple(v.shape)} pretrained, {tuple(own[k].shape)} here"
        for k, v in state.items()
        if k not in head_keys and k in own and own[k].shape != v.shape
    ]
    wrong += [f"{k} is not among the pretrained weights" for k in own if k not in state]
    if wrong:
        raise BenchError(
            f"the pretrained weights {path} do not fit the model built for the target: "
            + "; ".join(wrong[:3])
        )
    backbone = {k: v for k, v in state.items() if k not in head_keys}
    model.load_state_dict(backbone, strict=False)


PROCEDURE = Procedure(
    name="transfer",
    description="pretrain on a source dataset; fine-tune, extract features or train from "
    "scratch on a few labelled target samples per class",
    plan=plan,
    execute=execute,
    report=report,
    settings=SETTINGS,
    default_models=["lenet5"],
    default_datasets=["mnist-5k", "digits"],
    checkpoints=True,
)
