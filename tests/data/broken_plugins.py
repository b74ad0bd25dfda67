"""Deliberately broken models (and a procedure), loaded with ``--plugin`` by
tests/test_reliability.py.

Each model is a tiny MLP that misbehaves in one way while training (``forward`` in train mode),
so that the geometry check before training (eval mode) passes unless the shape itself is the
fault. The ``unwritable`` procedure's first run returns metrics JSON cannot hold.
"""

import ctypes
import importlib.util
import math
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch import nn

from harness import hookimpl
from harness.planning.protocol import Procedure, Report
from harness.planning.suite_files import Run
from harness.registry.specs import ModelSpec


class Misbehaving(nn.Module):
    def __init__(self, input_shape, num_classes, fault, outputs=None):
        super().__init__()
        self.fault = fault
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(math.prod(input_shape), outputs or num_classes)
        )

    def forward(self, x):
        if self.training:
            self.fault()
        return self.net(x)


def _raise():
    raise RuntimeError("boom in forward")


def _cuda_oom():
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")


def _stuck():
    """A training step that never ends by itself, in Python code a time limit can stop."""
    time.sleep(3600)


def _segfault():
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def _chat():
    print("chatty: a training step", flush=True)


def _exit():
    os._exit(3)


def _hang():
    """Stuck where no alarm reaches it, as a long native call would be."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)


class NaNOutput(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), num_classes))

    def forward(self, x):
        out = self.net(x)
        return out * float("nan") if self.training else out


def _missing_import(input_shape, num_classes):
    import bench_module_that_does_not_exist  # noqa: F401


SLOW_IMPORT = "bench_test_slow_import"


def _slow_import(input_shape, num_classes):
    """Imports a module that takes a second, then gets stuck in training."""
    spec = importlib.util.spec_from_file_location(
        SLOW_IMPORT, Path(__file__).with_name("slow_import.py")
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[SLOW_IMPORT] = module  # as `import` does: cut short, it would stay half-made
    spec.loader.exec_module(module)
    return Misbehaving(input_shape, num_classes, _stuck)


def _model(name, fault, outputs=None):
    return ModelSpec(
        name,
        f"misbehaves: {name}",
        lambda input_shape, num_classes: Misbehaving(input_shape, num_classes, fault, outputs),
    )


@hookimpl
def register_models(register):
    register(_model("raises-forward", _raise))
    register(_model("wrong-shape", lambda: None, outputs=3))
    register(_model("cuda-oom", _cuda_oom))
    register(_model("stuck", _stuck))
    register(_model("segfault", _segfault))
    register(_model("exits", _exit))
    register(_model("hangs", _hang))
    register(_model("chatty", _chat))
    register(ModelSpec("nan-output", "returns NaN logits in training", NaNOutput))
    register(ModelSpec("slow-import", "imports slowly, then gets stuck", _slow_import))
    register(ModelSpec("missing-import", "imports a module that is not installed", _missing_import))


def _two_runs(suite, registry):
    return [Run(0, "unwritable", {"name": "tuple-keys"}), Run(1, "unwritable", {"name": "fine"})]


def _metrics(run, ctx):
    return {"by_pair": {(1, 2): 3}} if run.config["name"] == "tuple-keys" else {"answer": 42}


@hookimpl
def register_procedures(register):
    register(
        Procedure(
            "unwritable",
            "its first run's metrics have tuple keys",
            _two_runs,
            _metrics,
            lambda results, plots_dir: Report(f"{len(results['runs'])} runs"),
        )
    )
