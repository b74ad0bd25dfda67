"""Training checkpoints: a run's final weights with everything continuing it needs.

``bench run --save-checkpoint`` writes one per run as ``OUT/checkpoints/<run>.pt``;
``bench run --from-checkpoint PATH --epochs N`` trains N more epochs from it. A checkpoint is a
plain dictionary of tensors, numbers and strings, saved with ``torch.save`` and always read back
with ``weights_only=True``, so loading one never runs code. Beside the model's state dict it
holds what identifies the run (model, options, dataset, seed) and a
:class:`~harness.training.loop.TrainingState`, so that 5 epochs plus 5 more give the weights of 10
straight.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import BenchError
from harness.planning.overrides import Overrides
from harness.planning.suite_files import safe_name
from harness.results.store import atomic_write
from harness.training.loop import TrainingState

FORMAT = "bench-training-checkpoint"
VERSION = 2
# What must be the same for a run to continue another: the model, the data and its split (with
# resolved options: defaults filled in, values typed).
IDENTITY = ("model", "model_options", "dataset", "dataset_options", "seed", "train_per_class")
# Training settings a continued training keeps: the optimizer's saved state carries its own (its
# parameter groups), and early stopping's best-so-far means something only under one patience.
CONTINUED_SETTINGS = (
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "weight_decay_mode",
    "patience",
)
SUBSET_HINT = (
    "; it was trained on a labelled subset (a regularization or transfer study's run), and "
    "bench run --from-checkpoint continues runs trained on the whole training split"
)
# Training options that describe this invocation, not the training being continued.
PER_INVOCATION = ("epochs", "save_checkpoint", "from_checkpoint")


def checkpoint_path(out_dir: Path, run_name: str) -> Path:
    return out_dir / "checkpoints" / f"{safe_name(run_name)}.pt"


def save_checkpoint(
    path: Path, identity: dict[str, Any], model: nn.Module, state: TrainingState, train: dict
) -> None:
    """Write the checkpoint atomically: an interrupted save leaves the previous file whole.

    ``identity`` holds the :data:`IDENTITY` keys with resolved options. The weights saved are
    the last epoch's, which is where training continues, even when early stopping gave the
    model its best epoch's back (those are kept as ``best_weights``).
    """
    training = asdict(state)
    weights = training.pop("weights")
    checkpoint = {
        "format": FORMAT,
        "version": VERSION,
        **{key: identity[key] for key in IDENTITY},
        "train": {k: v for k, v in train.items() if k not in PER_INVOCATION},
        "trainable": [name for name, p in model.named_parameters() if p.requires_grad],
        "model_state": weights if weights is not None else model.state_dict(),
        "training": training,
    }
    atomic_write(path, lambda handle: torch.save(checkpoint, handle))


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint's contents, refused with the reason if the file is not one bench wrote."""
    if not path.is_file():
        raise BenchError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn, foreign or unsafe file: pickle, zip and torch errors
        raise BenchError(f"checkpoint {path} cannot be read: {exc}") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise BenchError(
            f"{path} is not a bench training checkpoint (bench run --save-checkpoint writes "
            "them; a plain state dict has no optimizer or generator state to continue from)"
        )
    if checkpoint.get("version") != VERSION:
        raise BenchError(
            f"checkpoint {path} has format version {checkpoint.get('version')}; this bench "
            f"reads version {VERSION}"
        )
    return checkpoint


def resume_from(
    path: Path, identity: dict[str, Any], train: dict[str, Any], model: nn.Module
) -> TrainingState:
    """Load the checkpoint's weights into ``model`` and return its training state, for a run
    of ``identity`` (resolved options) trained with ``train`` (resolved settings). Refuse,
    naming both, a checkpoint of another model, options, dataset, split or seed; one trained
    with other optimizer settings, or other layers frozen; one whose tensors do not have the
    model's shapes; and one that early stopping already ended."""
    checkpoint = read_checkpoint(path)
    for key in IDENTITY:
        if checkpoint.get(key) != identity[key]:
            hint = SUBSET_HINT if key == "train_per_class" else ""
            raise BenchError(
                f"checkpoint {path} is for {key} {checkpoint.get(key)!r} "
                f"({_describe(checkpoint)}); this run has {key} {identity[key]!r} "
                f"({_describe(identity)}){hint}"
            )
    for key in CONTINUED_SETTINGS:
        if checkpoint["train"].get(key) != train[key]:
            raise BenchError(
                f"checkpoint {path} was trained with {key} {checkpoint['train'].get(key)!r}; "
                f"its training cannot continue with {key} {train[key]!r}"
            )
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    if checkpoint["trainable"] != trainable:
        frozen = sorted(set(trainable) - set(checkpoint["trainable"]))
        raise BenchError(
            f"checkpoint {path} trained only some layers ({', '.join(frozen[:3])} were frozen, "
            "as in feature extraction); bench run --from-checkpoint continues trainings of "
            "every layer"
        )
    training = checkpoint["training"]
    if training["stopped"]:
        raise BenchError(
            f"the training in checkpoint {path} was ended by early stopping at epoch "
            f"{training['epochs_done']} (best epoch {training['best_epoch']}, patience "
            f"{checkpoint['train']['patience']}); continuing it would stop again at once"
        )
    _load_weights(path, checkpoint, identity, model)
    names = {f.name for f in fields(TrainingState)}
    return TrainingState(weights=None, **{k: v for k, v in training.items() if k in names})


def _load_weights(path: Path, checkpoint: dict, config: dict, model: nn.Module) -> None:
    own, saved = model.state_dict(), checkpoint["model_state"]
    missing, extra = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    wrong = [k for k in own if k in saved and own[k].shape != saved[k].shape]
    if missing or extra or wrong:
        problems = [
            f"{k} is {tuple(saved[k].shape)} in the checkpoint, {tuple(own[k].shape)} in the model"
            for k in wrong[:3]
        ]
        if missing:
            problems.append(f"the checkpoint lacks {', '.join(missing[:3])}")
        if extra:
            problems.append(f"the model has no {', '.join(extra[:3])}")
        raise BenchError(
            f"checkpoint {path} ({_describe(checkpoint)}) does not fit this run's model "
            f"({_describe(config)}): {'; '.join(problems)}"
        )
    model.load_state_dict(saved)


def _describe(source: dict[str, Any]) -> str:
    return f"model '{source['model']}' on '{source['dataset']}', seed {source['seed']}"


def continuing(path: Path, overrides: Overrides) -> Overrides:
    """The command line's overrides for continuing the checkpoint at ``path``: its model,
    dataset, options, seed and training settings, unless the command line names its own (which
    :func:`resume_from` then checks against the checkpoint), and ``epochs`` more epochs."""
    checkpoint = read_checkpoint(path)
    if "epochs" not in overrides.train:
        raise BenchError("--from-checkpoint needs --epochs N: how many more epochs to train")
    for key, given in (("model", overrides.models), ("dataset", overrides.datasets)):
        if given and given != [checkpoint[key]]:
            raise BenchError(
                f"checkpoint {path} is for {key} '{checkpoint[key]}' ({_describe(checkpoint)}); "
                f"this run asks for {key} {', '.join(map(repr, given))}"
            )
    return replace(
        overrides,
        models=overrides.models or [checkpoint["model"]],
        datasets=overrides.datasets or [checkpoint["dataset"]],
        model_options={**_as_text(checkpoint["model_options"]), **overrides.model_options},
        dataset_options={**_as_text(checkpoint["dataset_options"]), **overrides.dataset_options},
        seeds=overrides.seeds or [checkpoint["seed"]],
        train={**checkpoint["train"], **overrides.train, "from_checkpoint": str(path)},
    )


def _as_text(options: dict[str, Any]) -> dict[str, str]:
    """Options as the command line gives them (``hidden=32,32``), for :class:`Overrides`."""
    return {
        k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)
        for k, v in options.items()
    }
