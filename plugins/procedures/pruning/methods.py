"""Pruning a trained model to a target fraction of its parameters.

Targets are fractions of *all* the model's parameters (biases and the classifier included), so
an "87.5% drop" means 1/8 of the parameters remain, whatever the method. Biases are kept, and so,
unless the suite sets ``prune_classifier``, is the classifier (the last Conv/Linear layer, whose
outputs are the logits), as in ShrinkBench; unstructured methods prune the remaining weights at a
correspondingly higher rate. Where those weights are fewer than the target asks (a model whose
classifier holds most of its parameters), an unstructured method removes the target's share of
the weights it may prune instead, and notes so (``target_of``). Structured pruning never removes
the classifier's outputs, but shrinks its inputs with the layer before it, so it aims at the
whole model's target in any case.

Unstructured methods attach ``torch.nn.utils.prune`` masks, which keep pruned weights at zero
while the model is fine-tuned; :func:`make_permanent` folds them into the weights afterwards.
Structured pruning removes whole channels/neurons with Torch-Pruning's dependency graph, so the
model really becomes smaller and faster.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn
from torch.nn.utils import prune

from harness.errors import BenchError
from harness.measuring.flops import count_nonzero_params, count_params

PRUNABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
PRUNABLE_WEIGHTS = "prunable weights"  # what a target is a share of when the model cannot reach it


@dataclass(frozen=True)
class PruningContext:
    """What a pruning method may need besides the model, and where it says how it read the target.

    ``input_shape`` is an input example's, for graph tracing; ``prune_classifier`` is the suite's
    setting: whether the final classifier's weights may be pruned too (a method that cannot prune
    them ignores it). A method may record facts about what it did in ``notes``, which the run's
    metrics keep: the built-in unstructured methods set ``target_of`` to ``"prunable weights"``
    (and ``prunable_weights`` to their count) when they measured the target against those.
    """

    input_shape: tuple[int, ...]
    prune_classifier: bool = False
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PruningMethod:
    """A way to remove ``target`` (a fraction of all parameters) from a trained model.

    ``prune(model, target, context)`` may modify ``model`` in place and returns the pruned model.
    ``structure`` is how the table describes it (e.g. "unstructured", "structured").
    """

    name: str
    description: str
    structure: str
    prune: Callable[[nn.Module, float, PruningContext], nn.Module]


def classifier(model: nn.Module) -> nn.Module:
    """The layer producing the logits: the last Conv/Linear layer in registration order."""
    layers = [m for m in model.modules() if isinstance(m, PRUNABLE)]
    if not layers:
        raise BenchError("model has no Conv or Linear layer to prune")
    return layers[-1]


def prunable_layers(model: nn.Module, with_classifier: bool = False) -> list[nn.Module]:
    """The Conv/Linear layers whose weights may be pruned: all but the classifier, unless
    ``with_classifier``."""
    head = classifier(model)
    return [
        m for m in model.modules() if isinstance(m, PRUNABLE) and (with_classifier or m is not head)
    ]


def weights_to_remove(model: nn.Module, target: float, context: PruningContext) -> int:
    """How many weights of the prunable layers to zero: so that ``target`` of all parameters are
    removed, or, where those weights are fewer, ``target`` of them (noted in ``context``)."""
    total = count_params(model)
    needed = round(target * total)
    available = sum(m.weight.numel() for m in prunable_layers(model, context.prune_classifier))
    if needed <= available:
        return needed
    if not available:
        raise BenchError(
            f"model has no prunable weights: its classifier holds all {total} of its weights "
            "(set prune_classifier = true to prune it)"
        )
    context.notes.update(target_of=PRUNABLE_WEIGHTS, prunable_weights=available)
    return round(target * available)


def _layerwise(
    method: Callable[..., nn.Module],
) -> Callable[[nn.Module, float, PruningContext], nn.Module]:
    """Prune every layer at the same rate, chosen so the whole model meets the target."""

    def apply(model: nn.Module, target: float, context: PruningContext) -> nn.Module:
        layers = prunable_layers(model, context.prune_classifier)
        rate = weights_to_remove(model, target, context) / sum(m.weight.numel() for m in layers)
        for layer in layers:
            method(layer, name="weight", amount=rate)
        return model

    return apply


def global_magnitude(model: nn.Module, target: float, context: PruningContext) -> nn.Module:
    """Remove the smallest-magnitude weights across all layers together (L1, unstructured)."""
    layers = prunable_layers(model, context.prune_classifier)
    prune.global_unstructured(
        [(m, "weight") for m in layers],
        pruning_method=prune.L1Unstructured,
        amount=weights_to_remove(model, target, context),
    )
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold pruning masks into the weights (zeros stay zeros) and drop the reparametrisation."""
    for module in model.modules():
        if prune.is_pruned(module) and hasattr(module, "weight_mask"):
            prune.remove(module, "weight")
    return model


def structured(model: nn.Module, target: float, context: PruningContext) -> nn.Module:
    """Remove whole channels/neurons (L1 norm) so the dense model shrinks by ``target``.

    Torch-Pruning applies one channel ratio to every layer (each keeps at least one channel);
    the ratio is found by bisection so the achieved parameter drop matches the target. How many
    channels a ratio removes depends on the architecture, not on the weights (they only choose
    which channels go), so the ratio is searched once per process for each architecture and
    target: the variants of other seeds (and their latency run's rebuilds) prune once, not ~15
    times.
    """
    key = (_architecture(model), tuple(context.input_shape), target)
    if key in _RATIOS:
        ratio = _RATIOS[key]
        return model if ratio is None else _channels_pruned(model, ratio, context)
    _RATIOS[key], best = _search_ratio(model, target, context)
    return best


_RATIOS: dict[tuple, float | None] = {}  # structured(): the ratio of an architecture and target


def _search_ratio(
    model: nn.Module, target: float, context: PruningContext
) -> tuple[float | None, nn.Module]:
    """The channel ratio whose pruned copy is closest to the target (``None``: no ratio comes
    closer than the model itself), with that copy."""
    total = count_params(model)
    goal = total * (1 - target)
    low, high = 0.0, 1.0
    best_ratio, best = None, model
    for _ in range(20):
        ratio = (low + high) / 2
        candidate = _channels_pruned(model, ratio, context)
        remaining = count_params(candidate)
        if abs(remaining - goal) < abs(count_params(best) - goal):
            best_ratio, best = ratio, candidate
        if abs(remaining - goal) <= 0.0025 * total:
            break
        low, high = (ratio, high) if remaining > goal else (low, ratio)
    return best_ratio, best


def _architecture(model: nn.Module) -> tuple:
    """What fixes how many parameters a channel ratio leaves: the layers and their shapes."""
    layers = tuple((name, type(module).__name__) for name, module in model.named_modules())
    return layers, structure_of(model)


def structure_of(model: nn.Module) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The name and shape of every tensor in ``model``'s state dict, sorted by name."""
    return tuple(sorted((name, tuple(t.shape)) for name, t in model.state_dict().items()))


def _channels_pruned(model: nn.Module, ratio: float, context: PruningContext) -> nn.Module:
    candidate = copy.deepcopy(model)
    _prune_channels(candidate, ratio, context)
    return candidate


def _prune_channels(model: nn.Module, ratio: float, context: PruningContext) -> None:
    device = next(model.parameters()).device
    example = torch.zeros(1, *context.input_shape, device=device)
    # Cap each layer so it keeps a channel; the epsilon keeps float rounding in Torch-Pruning's
    # channel count from turning "keep 1" into "keep 0", which makes it skip the layer entirely.
    ratios = {m: min(ratio, 1 - 1 / _channels(m) - 1e-6) for m in prunable_layers(model)}
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=1),
        pruning_ratio=ratio,
        pruning_ratio_dict=ratios,
        ignored_layers=[classifier(model)],
    )
    was_training = model.training
    model.eval()
    pruner.step()
    model.train(was_training)


def _channels(layer: nn.Module) -> int:
    return layer.out_channels if hasattr(layer, "out_channels") else layer.out_features


def sparsity_facts(model: nn.Module, dense_params: int) -> dict[str, float]:
    """Parameter counts of a (pruned) model against the dense model it came from."""
    total, nonzero = count_params(model), count_nonzero_params(model)
    return {
        "params_total": total,
        "params_nonzero": nonzero,
        "achieved_drop": 1 - nonzero / dense_params,
        "compression": dense_params / max(nonzero, 1),
    }


BUILTIN_METHODS = [
    PruningMethod(
        "random",
        "zero randomly chosen weights, same rate in every layer (baseline)",
        "unstructured",
        _layerwise(prune.random_unstructured),
    ),
    PruningMethod(
        "layer-magnitude",
        "zero the smallest-magnitude weights of each layer, same rate per layer",
        "unstructured",
        _layerwise(prune.l1_unstructured),
    ),
    PruningMethod(
        "global-magnitude",
        "zero the smallest-magnitude weights across all layers together",
        "unstructured",
        global_magnitude,
    ),
    PruningMethod(
        "structured",
        "remove whole channels/neurons (L1), Torch-Pruning dependency graph",
        "structured",
        structured,
    ),
]
