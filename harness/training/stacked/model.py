"""K models of one shape as one stacked model, each member computing exactly what it would alone.

A member's layers are read from its module structure: an ``nn.Sequential`` (nested ones too) of
Linear, ReLU, GELU, Tanh, Sigmoid, Identity, Flatten and dropout (``nn.Dropout`` or bench's
``BernoulliDropout``). Anything else, or a module with a ``forward`` of its own, cannot be
stacked, and :func:`refusal` says which layer stood in the way. Members may differ in their
dropout rates and kind (a rate of 0 is the same as no dropout layer), never in their other layers.

Each Linear's weights are one ``(K, out, in)`` leaf tensor and its bias ``(K, 1, out)``, and
the batch goes through them as :mod:`harness.training.stacked.batched_linear` multiplies: each
member's block aligned as a lone tensor is. Element-wise functions whose vectorised and scalar
kernels may round differently (GELU, Tanh, Sigmoid) run on the whole stack only when each
member's block is whole vector blocks, else member by member. Dropout draws each member's masks
from a generator holding the random state the member would have alone, with the calls it would
make alone; members in the same state with the same rates share the draw.

All of this is bit for bit at one thread: with more, a lone matrix multiply splits its work
differently from a batched one, so :mod:`harness.execution.stacking` stacks only one-thread runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from harness.training.layers import BernoulliDropout
from harness.training.stacked.batched_linear import linear, stacked_parameter

EXACT = (nn.ReLU, nn.Identity)  # the same bits however the elements are split into blocks
ROUNDED = (nn.GELU, nn.Tanh, nn.Sigmoid)  # vector and scalar kernels may differ in the last bit
DROPOUT = (nn.Dropout, BernoulliDropout)
# Elements per member at which a rounded function may run on the whole stack: two vector blocks
# of the widest CPU vectors (AVX-512: 16 floats), so that no member ends in a scalar tail.
WHOLE_BLOCKS = 64


def layers_of(model: nn.Module) -> list[nn.Module]:
    """The leaf layers of ``model`` in the order it runs them, through nested ``Sequential``s."""
    if type(model).forward is nn.Sequential.forward:
        return [layer for child in model for layer in layers_of(child)]
    return [model]


def refusal(model: nn.Module) -> str | None:
    """Why ``model`` cannot be stacked (``"BatchNorm2d is not supported"``), or ``None``."""
    for layer in layers_of(model):
        if isinstance(layer, nn.Sequential):
            return f"{type(layer).__name__} has a forward of its own"
        if isinstance(layer, nn.Flatten) and (layer.start_dim, layer.end_dim) != (1, -1):
            return "Flatten of other than all dimensions after the batch is not supported"
        if isinstance(layer, nn.GELU) and layer.approximate != "none":
            return "GELU(approximate='tanh') is not supported"
        if not isinstance(layer, (nn.Linear, nn.Flatten, *EXACT, *ROUNDED, *DROPOUT)):
            return f"{type(layer).__name__} is not supported"
    return None


def signature(model: nn.Module) -> tuple:
    """What members must share to stack: every layer but dropout, with its shape."""
    return tuple(_describe(layer) for layer in layers_of(model) if not _is_dropout(layer))


def _describe(layer: nn.Module) -> tuple:
    if isinstance(layer, nn.Linear):
        return ("Linear", layer.in_features, layer.out_features, layer.bias is not None)
    return (type(layer).__name__,)


def _is_dropout(layer: nn.Module) -> bool:
    return isinstance(layer, DROPOUT)


@dataclass(frozen=True)
class _Drop:
    """One member's dropout at a place: its rate and whether it is ``BernoulliDropout``."""

    p: float
    bernoulli: bool


def _dropouts(model: nn.Module) -> list[list[_Drop]]:
    """A member's dropout layers with a non-zero rate, by place (before each compute layer,
    and a last place after them): a rate of 0 draws nothing, alone as here."""
    places: list[list[_Drop]] = [[]]
    for layer in layers_of(model):
        if _is_dropout(layer):
            if layer.p > 0:
                places[-1].append(_Drop(layer.p, isinstance(layer, BernoulliDropout)))
        else:
            places.append([])
    return places


class StackedModel:
    """The members' parameters stacked (``parameters``, each with the member as dim 0) and a
    forward pass over a ``(K, batch, ...)`` input. ``rng_states``: each member's random state
    when its training starts, which its dropout draws from in order, as alone."""

    def __init__(self, members: Sequence[nn.Module], rng_states: Sequence[torch.Tensor]):
        self.training = True
        self.parameters: list[torch.Tensor] = []
        self.decayed: list[bool] = []  # Linear weights: what weight decay and penalties act on
        self.steps: list[Callable[[torch.Tensor], torch.Tensor]] = []
        places = [_dropouts(member) for member in members]
        self.draws = _Draws(places, rng_states)
        linears = [[m for m in layers_of(member) if isinstance(m, nn.Linear)] for member in members]
        compute = [layer for layer in layers_of(members[0]) if not _is_dropout(layer)]
        for place, layer in enumerate([*compute, None]):
            if any(member[place] for member in places):
                self.steps.append(partial(self.draws.apply, place, self))
            if isinstance(layer, nn.Linear):
                self.steps.append(self._stack_linear([member.pop(0) for member in linears]))
            elif layer is not None:
                self.steps.append(_elementwise(layer))

    def _stack_linear(self, layers: list[nn.Linear]) -> Callable[[torch.Tensor], torch.Tensor]:
        weight = stacked_parameter([layer.weight for layer in layers])
        bias = None
        if layers[0].bias is not None:
            bias = stacked_parameter([layer.bias.unsqueeze(0) for layer in layers])
        self.parameters += [weight] + ([bias] if bias is not None else [])
        self.decayed += [True] + ([False] if bias is not None else [])
        return lambda x: linear(x, weight, bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x

    def member_parameters(self, member: int) -> list[torch.Tensor]:
        """Member ``member``'s parameters (views), shaped and ordered as its own model's."""
        return [p[member] if decayed else p[member, 0] for p, decayed in self._each()]

    def penalized(self, member: int) -> list[torch.Tensor]:
        """Member ``member``'s Linear weights (views): what its penalties act on alone."""
        return [p[member] for p, decayed in self._each() if decayed]

    def _each(self) -> list[tuple[torch.Tensor, bool]]:
        return list(zip(self.parameters, self.decayed, strict=True))


def _elementwise(layer: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(layer, nn.Flatten):
        return lambda x: x.flatten(2)
    if isinstance(layer, EXACT):
        return layer
    return partial(_rounded, layer)


def _rounded(function: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``function`` of each member's block as alone: on the whole stack when each block is
    whole vector blocks (no member then ends in the kernel's scalar tail, nor starts one),
    else member by member."""
    if x[0].numel() % WHOLE_BLOCKS == 0:
        return function(x)
    return torch.stack([function(part) for part in x.unbind(0)])


class _Draws:
    """Every member's dropout masks, drawn as the member draws them alone: from one generator
    per group of members in the same random state that draw at the same rates (their masks are
    the same), seeded with that state. Each dropout layer's masks are drawn into one buffer,
    member by member, and kept for the next batch of the same shape: a member without
    dropout there keeps its block of ones."""

    def __init__(self, places: list[list[list[_Drop]]], rng_states: Sequence[torch.Tensor]):
        self.places = places
        groups: dict[tuple, int] = {}
        self.group_of = [
            groups.setdefault((bytes(state.numpy()), repr(drops)), len(groups))
            for state, drops in zip(rng_states, places, strict=True)
        ]
        self.generators = [torch.Generator() for _ in groups]
        for member, group in enumerate(self.group_of):
            self.generators[group].set_state(rng_states[member])
        self.leader = [self.group_of.index(group) for group in range(len(groups))]
        self.masks: dict[tuple, torch.Tensor] = {}

    def apply(self, place: int, model: StackedModel, x: torch.Tensor) -> torch.Tensor:
        if not model.training:
            return x
        depth = max(len(member[place]) for member in self.places)
        for layer in range(depth):
            x = self._drop(place, layer, x)
        return x

    def _drop(self, place: int, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Each member's ``layer``-th dropout at ``place``: ``x * noise`` with ``noise`` drawn
        and scaled as ``F.dropout`` does, or ``x * keep / (1 - p)`` as ``BernoulliDropout``."""
        drops = [m[place][layer] if layer < len(m[place]) else None for m in self.places]
        key = (place, layer, *x.shape)
        mask = self.masks.get(key)
        if mask is None:
            mask = self.masks[key] = torch.ones_like(x)
        for group, leader in enumerate(self.leader):
            if drops[leader] is not None:
                _draw(drops[leader], mask[leader], self.generators[group])
        for member, group in enumerate(self.group_of):
            if member != self.leader[group] and drops[member] is not None:
                mask[member].copy_(mask[self.leader[group]])
        divisors = [
            (k, 1.0 - drop.p) for k, drop in enumerate(drops) if drop is not None and drop.bernoulli
        ]
        return _Masked.apply(x, mask, divisors)


def _draw(drop: _Drop, into: torch.Tensor, generator: torch.Generator) -> None:
    """A member's mask into its block, drawn and scaled as alone (``F.dropout``'s noise, or
    ``BernoulliDropout``'s ``keep``, which is divided afterwards)."""
    if drop.bernoulli:
        into.bernoulli_(torch.full_like(into, 1.0 - drop.p), generator=generator)
    else:
        into.bernoulli_(1 - drop.p, generator=generator).div_(1 - drop.p)


class _Masked(torch.autograd.Function):
    """``x * mask``, then each of ``divisors``' members divided by its divisor, with the
    gradient autograd gives alone: divided first, then multiplied by the mask."""

    @staticmethod
    def forward(ctx, x, mask, divisors):
        ctx.save_for_backward(mask)
        ctx.divisors = divisors
        out = x * mask
        for member, divisor in divisors:
            out[member].div_(divisor)
        return out

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        if ctx.divisors:
            grad = grad.clone()
            for member, divisor in ctx.divisors:
                grad[member].div_(divisor)
        return grad * mask, None, None
