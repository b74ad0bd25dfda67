"""Counters: what one step does, counted rather than timed, so that the same code gives the same
numbers on any machine, busy or quiet.

Each timed mode's step runs once more after its timed samples, never inside them, and its record
keeps:

- ``operators``: the operators the step dispatches below autograd (a ``TorchDispatchMode`` sees
  each: ``aten::addmm`` for a Linear layer, the backward pass's too), with
  ``operators_by_name``;
- ``allocations`` and ``allocated_bytes``: the tensors those operators create, and their bytes
  (an output that is not a view of, or written into, one of the operator's inputs; a kernel's
  own scratch memory is not seen);
- ``flops``: the step's floating-point operations as bench counts them (when it does);
- under ``torch.compile``, ``graph_breaks`` and ``recompiles`` (TorchDynamo's own counts: its
  graph breaks, and the guard failures that made it compile a frame again) over the mode's
  whole measurement, which starts from a fresh compile;
- on CUDA, ``kernel_launches`` (the runtime's launch calls, from ``torch.profiler``) and
  ``syncs`` (operations that make the host wait for the device, as
  ``torch.cuda.set_sync_debug_mode`` reports them).

A counter that cannot be read here is left out and ``unavailable`` says why; nothing is guessed.
:mod:`harness.comparing.counts` judges counters exactly: any change is a fact, not noise.
"""

from __future__ import annotations

import collections
import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def count_step(
    step: Callable[[], object],
    device: torch.device,
    *,
    flops: int | None = None,
    compiled: Compiles | None = None,
) -> dict[str, Any]:
    """The counters of one more run of ``step`` on ``device``; ``flops``: bench's count of the
    step, if it has one; ``compiled``: TorchDynamo's counts since the measurement started, if
    the step is compiled (read before the counting step, which compiles nothing new)."""
    compiles = compiled.read() if compiled is not None else None
    dispatched = _Dispatched()
    with _launches_counted(device) as launches:
        with _syncs_counted(device) as syncs, dispatched:
            step()
        if device.type == "cuda":  # the launches finish inside the profile; not a step's sync
            torch.cuda.synchronize(device)
    counts: dict[str, Any] = {
        "operators": sum(dispatched.operators.values()),
        "operators_by_name": dict(sorted(dispatched.operators.items())),
        "allocations": dispatched.allocations,
        "allocated_bytes": dispatched.allocated_bytes,
    }
    unavailable = {}
    if flops is not None:
        counts["flops"] = flops
    else:
        unavailable["flops"] = "bench counts no FLOPs for this workload"
    if compiles is not None:
        counts.update(graph_breaks=compiles.graph_breaks, recompiles=compiles.recompiles)
    else:
        unavailable["graph_breaks"] = unavailable["recompiles"] = "not compiled (--compile)"
    if device.type == "cuda":
        counts.update(kernel_launches=launches[0], syncs=syncs[0])
    else:
        unavailable["kernel_launches"] = unavailable["syncs"] = (
            f"counted on CUDA only, not {device}"
        )
    return {**counts, "unavailable": unavailable}


class _Dispatched(TorchDispatchMode):
    """Counts every operator dispatched below autograd, and the tensors they create."""

    def __init__(self) -> None:
        super().__init__()
        self.operators: collections.Counter[str] = collections.Counter()
        self.allocations = self.allocated_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func._schema.name
        if name.startswith("profiler::"):  # record_function's markers, not work
            return out
        self.operators[name] += 1
        seen = {_storage(t) for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and _storage(tensor) not in seen:
                seen.add(_storage(tensor))
                self.allocations += 1
                self.allocated_bytes += tensor.untyped_storage().nbytes()
        return out


def _storage(tensor: torch.Tensor) -> tuple[str, int]:
    return str(tensor.device), tensor.untyped_storage().data_ptr()


@contextlib.contextmanager
def _launches_counted(device: torch.device) -> Iterator[list[int]]:
    """The CUDA kernel launches in the block (the runtime calls ``torch.profiler`` records)."""
    found = [0]
    if device.type != "cuda":
        yield found
        return
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities) as profile:
        yield found
    found[0] = sum(event.name in LAUNCHES for event in profile.events())


@contextlib.contextmanager
def _syncs_counted(device: torch.device) -> Iterator[list[int]]:
    """The host-device synchronisations in the block, on CUDA: the warnings of
    ``torch.cuda.set_sync_debug_mode("warn")``, one per synchronising operation."""
    found = [0]
    if device.type != "cuda":
        yield found
        return
    before = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode(before)
    found[0] = sum("synchronizing" in str(w.message) for w in caught)


class Compiles:
    """TorchDynamo's graph breaks and recompilations since :meth:`start` (a fresh compile)."""

    def __init__(self) -> None:
        self.graph_breaks = self.recompiles = 0

    @classmethod
    def start(cls) -> Compiles:
        import torch._dynamo

        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        return cls()

    def read(self) -> Compiles:
        from torch._dynamo.utils import counters, guard_failures

        self.graph_breaks = sum(counters["graph_break"].values())
        self.recompiles = sum(len(reasons) for reasons in guard_failures.values())
        return self
