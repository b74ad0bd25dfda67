"""The Linear layers of K members as one batched multiply, with each member's numbers exactly as
``torch.nn.functional.linear`` gives them alone.

Three things make a batched multiply round differently from a lone one, and each is avoided:

- **Memory alignment.** A lone tensor starts on a 64-byte boundary (PyTorch's CPU allocator);
  a member's slice of a stacked tensor starts wherever the one before it ends, and the BLAS
  library may then take another code path with another order of summation. Every member's block
  of every tensor the multiplies read or write (inputs, weights, outputs, gradients) therefore
  starts on a 64-byte boundary: blocks are padded (:func:`aligned_empty`).
- **Small and thin products.** PyTorch multiplies a batch of products of fewer than 400
  multiply-adds with a plain loop of its own instead of BLAS, and BLAS treats a lone product
  with a dimension of 1 (one row, one input, one output) as a matrix-vector product, which its
  batched multiply does not: such layers run member by member, as alone.
- **The weight gradient's orientation.** Autograd's ``bmm`` backward computes ``x.T @ grad``
  and transposes it; alone, ``F.linear`` computes ``grad.T @ x``: :class:`_StackedLinear`
  computes it that way.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

ALIGN = 16  # float32 elements in 64 bytes
SMALL = 400  # multiply-adds below which PyTorch's batched multiply does not call BLAS


def aligned_empty(members: int, *shape: int, like: torch.Tensor) -> torch.Tensor:
    """An uninitialised ``(members, *shape)`` tensor whose members' blocks each start on a
    64-byte boundary."""
    size = math.prod(shape)
    stride = -(-size // ALIGN) * ALIGN
    storage = torch.empty(members, max(stride, ALIGN), dtype=like.dtype, device=like.device)
    return storage[:, :size].view(members, *shape)


def aligned(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself if its members' blocks are already laid out as :func:`aligned_empty`
    lays them out, else a copy that is."""
    if tensor[0].is_contiguous() and tensor.stride(0) % ALIGN == 0 and tensor.data_ptr() % 64 == 0:
        return tensor
    copy = aligned_empty(tensor.shape[0], *tensor.shape[1:], like=tensor)
    return copy.copy_(tensor)


def stacked_parameter(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The members' parameters as one aligned leaf tensor that requires a gradient."""
    with torch.no_grad():
        stacked = aligned_empty(len(tensors), *tensors[0].shape, like=tensors[0])
        stacked.copy_(torch.stack(tensors))
    return stacked.requires_grad_()


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Each member's ``F.linear(x[k], weight[k], bias[k, 0])`` for ``x`` of ``(K, batch, in)``."""
    members, rows, inputs = x.shape
    outputs = weight.shape[1]
    if inputs * rows * outputs < SMALL or 1 in (rows, inputs, outputs):
        return torch.stack(
            [
                F.linear(x[k].clone(), weight[k], None if bias is None else bias[k, 0])
                for k in range(members)
            ]
        )
    return _StackedLinear.apply(x, weight, bias)


class _StackedLinear(torch.autograd.Function):
    """``x @ W.T + b`` for each member into aligned blocks, with ``F.linear``'s gradients."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        x = aligned(x)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        members, rows, _ = x.shape
        out = aligned_empty(members, rows, weight.shape[1], like=x)
        transposed = weight.transpose(1, 2)
        if bias is None:
            return torch.bmm(x, transposed, out=out)
        return torch.baddbmm(bias, x, transposed, out=out)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad = aligned(grad)
        members, rows, outputs = grad.shape
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = aligned_empty(members, rows, weight.shape[2], like=grad)
            torch.bmm(grad, weight, out=grad_x)
        grad_weight = aligned_empty(members, outputs, weight.shape[2], like=grad)
        torch.bmm(grad.transpose(1, 2), x, out=grad_weight)
        grad_bias = grad.sum(1, keepdim=True) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias
