"""Choosing a device and describing it; CUDA is used only when present and asked for.

torch is imported by the functions that need it, so that a suite file can be read (and
``bench list suites`` answer) without it.
"""

from __future__ import annotations

import platform
from functools import cache
from typing import TYPE_CHECKING

from harness.errors import BenchError

if TYPE_CHECKING:
    import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; asking for CUDA without it is an error."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device '{name}'; use auto, cpu or cuda[:N]") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise BenchError(f"device '{name}' was asked for but CUDA is not available here")
        if device.index is not None and device.index >= torch.cuda.device_count():
            here = ", ".join(f"cuda:{i}" for i in range(torch.cuda.device_count()))
            raise BenchError(f"device '{name}' does not exist; the CUDA devices here: {here}")
    elif device.type != "cpu":
        raise BenchError(f"unsupported device '{name}'; use auto, cpu or cuda[:N]")
    return device


def available_devices() -> list[str]:
    import torch

    return ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        import torch

        return torch.cuda.get_device_name(device)
    return cpu_model()


@cache
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
