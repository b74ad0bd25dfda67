"""A known slowdown to measure bench's verdicts against: the model ``slowed-cnn-small``.

Its forward pass runs ``cnn-small`` and then spins until (1 + ``slowdown``) times that pass's own
duration has passed, so every call is slower by exactly that factor on whatever the machine is
doing at the time (contention included). ``slowdown = 0`` adds only two clock reads.

Two versions of "the code" are two plugin files made by :func:`write_side`, one per slowdown;
``bench ab --baseline plugin:A.py --candidate plugin:B.py --model slowed-cnn-small`` then
measures them interleaved (``benchmarks/verdict_rates.py``, ``tests/test_ab.py``).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench_plugins.models.small import cnn_small
from torch import nn

from harness import hookimpl
from harness.registry.specs import ModelSpec

NAME = "slowed-cnn-small"


class Slowed(nn.Module):
    def __init__(self, inner: nn.Module, slowdown: float):
        super().__init__()
        self.inner, self.slowdown = inner, slowdown

    def forward(self, x):
        start = time.perf_counter()
        out = self.inner(x)
        deadline = start + (1 + self.slowdown) * (time.perf_counter() - start)
        while time.perf_counter() < deadline:
            pass
        return out


def plugin(slowdown: float):
    """A ``register_models`` hook providing :data:`NAME` at ``slowdown``."""

    def build(input_shape, num_classes):
        return Slowed(cnn_small(input_shape, num_classes), slowdown)

    @hookimpl
    def register_models(register):
        register(
            ModelSpec(
                name=NAME,
                description=f"cnn-small with every forward pass {1 + slowdown:g}x as long",
                build=build,
                accepts="1x28x28 images",
            )
        )

    return register_models


def write_side(path: Path, slowdown: float) -> Path:
    """A plugin file providing :data:`NAME` at ``slowdown``."""
    path.write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        "from slowdown import plugin\n\n"
        f"register_models = plugin({slowdown!r})\n",
        encoding="utf-8",
    )
    return path
