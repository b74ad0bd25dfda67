"""Optimizers over stacked parameters, updating each member bit for bit as it would be alone.

A stacked parameter is one leaf tensor holding K members' copies of one parameter, the member as
dim 0 (a Linear weight ``(K, out, in)``, its bias ``(K, 1, out)``). :meth:`StackedOptimizer.step`
updates every member's slice exactly as the torch optimizer that
:func:`harness.training.loop.make_optimizer` builds for that member alone would update its own
parameter, on the CPU (where torch runs its single-tensor implementations, ``_single_tensor_sgd``
and ``_single_tensor_adam``), over any number of steps; its buffers (``state``) match torch's too.

What all members share (lr, momentum, betas, eps) enters each op as the very Python numbers torch
uses, in torch's order, so an op over the stack computes each element as over one member. Weight
decay, which differs per member, enters as ``(K, 1, ..., 1)`` tensors built once, through ops that
are bitwise torch's own:

- coupled: torch's ``grad.add(param, alpha=wd)`` equals ``torch.addcmul(grad, param, wd_k)``
  (``grad + param * wd_k`` does not: it rounds the product before the sum, one ulp apart at
  times). A member without coupled decay gets no add in torch, and adding ``param * 0`` would
  turn a ``-0.0`` gradient into ``+0.0``, so where only some members have it, ``torch.where``
  keeps the others' gradient as it is.
- decoupled (make_optimizer's pre-step hook, and AdamW): ``param.mul_(1 - lr * wd)``, the factor
  worked out in Python floats, equals ``param.mul_(factor_k)`` with the factor stored in the
  parameter's dtype, as torch's kernel rounds it; members without it are multiplied by exactly 1.

Each of torch's ops runs once per stacked tensor: nothing in a step loops over the members.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

KINDS = ("sgd", "adam", "adamw")  # torch.optim's SGD, Adam and AdamW, as make_optimizer builds them


@dataclass(frozen=True)
class MemberSettings:
    """One member's weight decay; ``decoupled``: the weights shrink by ``1 - lr * wd`` before
    each step (SGDW, AdamW) rather than ``wd * w`` being added to the gradient. ``adamw`` is
    decoupled whatever ``decoupled`` says, as in make_optimizer."""

    weight_decay: float = 0.0
    decoupled: bool = False


@dataclass
class _Decay:
    """Weight decay on one stacked weight: ``factor`` multiplies it before the step (None: no
    member has decoupled decay); ``coupled`` times the weight is added to its gradient (None: no
    member has coupled decay), for the members where ``only`` is true (None: all of them)."""

    factor: Tensor | None = None
    coupled: Tensor | None = None
    only: Tensor | None = None

    @classmethod
    def of(cls, param: Tensor, kind: str, members: Sequence[MemberSettings], lr: float) -> _Decay:
        decoupled = [kind == "adamw" or m.decoupled for m in members]
        shrinks = [m.weight_decay if d else 0.0 for m, d in zip(members, decoupled, strict=True)]
        adds = [0.0 if d else m.weight_decay for m, d in zip(members, decoupled, strict=True)]
        decay = cls()
        if any(shrinks):
            # make_optimizer's hook and AdamW both compute 1 - lr * wd in Python floats
            decay.factor = _per_member([1.0 - lr * wd for wd in shrinks], param, param.dtype)
        if any(adds):
            decay.coupled = _per_member(adds, param, param.dtype)
            if not all(adds):
                decay.only = _per_member([bool(wd) for wd in adds], param, torch.bool)
        return decay

    def shrink(self, param: Tensor) -> None:
        if self.factor is not None:
            param.mul_(self.factor)

    def couple(self, grad: Tensor, param: Tensor) -> Tensor:
        if self.coupled is None:
            return grad
        decayed = torch.addcmul(grad, param, self.coupled)
        return decayed if self.only is None else torch.where(self.only, decayed, grad)


def _per_member(values: list[Any], like: Tensor, dtype: torch.dtype) -> Tensor:
    """``values`` as a ``(K, 1, ..., 1)`` tensor that broadcasts over ``like``'s members."""
    shape = (len(values),) + (1,) * (like.dim() - 1)
    return torch.tensor(values, dtype=dtype, device=like.device).view(shape)


class StackedOptimizer:
    """SGD (``momentum``, ``nesterov``), Adam or AdamW over stacked ``params``, with each
    member's own weight decay (``members[k]``) on the params that ``decayed`` marks (bench
    decays Linear and Conv weights, never biases). lr, momentum, nesterov, betas and eps are
    shared by all members; dampening is 0, and Adam runs without amsgrad, as make_optimizer's.
    """

    def __init__(
        self,
        kind: str,
        params: list[Tensor],
        decayed: list[bool],
        members: list[MemberSettings],
        *,
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if kind not in KINDS:
            known = ", ".join(KINDS)
            raise ValueError(f"unknown optimizer '{kind}' for stacked training; known: {known}")
        _check_shapes(params, decayed, members)
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum requires a momentum")
        self.kind = kind
        self.params = list(params)
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.betas, self.eps = betas, eps
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self._update = self._sgd_update if kind == "sgd" else self._adam_update
        # make_optimizer's decoupled-decay hook shrinks every decayed weight before the step;
        # AdamW shrinks only the params it steps, those with a gradient
        self._shrink_without_grad = kind != "adamw"
        self._decays = [
            _Decay.of(p, kind, members, lr) if d else _Decay()
            for p, d in zip(params, decayed, strict=True)
        ]

    def zero_grad(self) -> None:
        """Every gradient to None, as ``zero_grad(set_to_none=True)``."""
        for param in self.params:
            param.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every param that has a gradient (torch skips the others)."""
        for param, decay in zip(self.params, self._decays, strict=True):
            if param.grad is not None or self._shrink_without_grad:
                decay.shrink(param)
            if param.grad is not None:
                self._update(param, decay.couple(param.grad, param))

    def _sgd_update(self, param: Tensor, grad: Tensor) -> None:
        """``_single_tensor_sgd``'s, dampening 0."""
        if self.momentum:
            state = self.state[param]
            buffer = state.get("momentum_buffer")
            if buffer is None:
                buffer = state["momentum_buffer"] = grad.detach().clone()
            else:
                buffer.mul_(self.momentum).add_(grad)
            grad = grad.add(buffer, alpha=self.momentum) if self.nesterov else buffer
        param.add_(grad, alpha=-self.lr)

    def _adam_update(self, param: Tensor, grad: Tensor) -> None:
        """``_single_tensor_adam``'s, with capturable, differentiable, amsgrad and maximize off,
        after any weight decay. The step count is an int here; torch keeps it in a float32
        tensor and reads it back with ``.item()``, the same float."""
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["step"] += 1
        beta1, beta2 = self.betas
        step = float(state["step"])
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr / bias_correction1
        bias_correction2_sqrt = bias_correction2**0.5
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(self.eps)
        param.addcdiv_(exp_avg, denom, value=-step_size)


def _check_shapes(params: list[Tensor], decayed: list[bool], members: list[MemberSettings]) -> None:
    """One ``decayed`` flag per param, and every param holding one slice per member."""
    if len(decayed) != len(params):
        raise ValueError(f"{len(decayed)} decayed flags for {len(params)} stacked params")
    wrong = [tuple(p.shape) for p in params if p.dim() == 0 or p.shape[0] != len(members)]
    if wrong:
        raise ValueError(f"stacked params of shapes {wrong} do not have {len(members)} members")
