"""``--deterministic``: make torch pick deterministic algorithms for the duration of a suite.

Runs are already repeatable on the same device without it (every run seeds Python, NumPy and
torch, and shuffles with its own seeded generator); what it adds is a guarantee for operations
whose fastest implementation is not deterministic, mostly on CUDA (atomic-add reductions,
cuDNN algorithm search). An operation with no deterministic implementation then raises, and the
run is recorded as failed with torch's message, rather than silently varying.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# cuBLAS is deterministic only with a fixed workspace (see torch's reproducibility notes).
CUBLAS_WORKSPACE = ":4096:8"


@contextmanager
def determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Within the block, ``torch.use_deterministic_algorithms(True)`` and deterministic cuDNN."""
    if not enabled:
        yield
        return
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    cudnn = torch.backends.cudnn
    previous = (torch.are_deterministic_algorithms_enabled(), cudnn.deterministic, cudnn.benchmark)
    torch.use_deterministic_algorithms(True)
    cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        cudnn.deterministic, cudnn.benchmark = previous[1], previous[2]
