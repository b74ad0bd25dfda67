"""Peak memory of one measurement: CUDA allocator peaks, or the process's resident set on CPU.

CUDA: the caching allocator's peak *allocated* bytes (tensors alive at once, weights included) and
peak *reserved* bytes (what the allocator holds from the driver), both reset before the measurement.

CPU: Linux keeps one high-water mark of resident memory per process (``VmHWM``, which is also what
``getrusage().ru_maxrss`` reports). Writing ``5`` to ``/proc/self/clear_refs`` resets it to the
current resident size, so the peak seen afterwards belongs to the measurement. Where that reset is
not possible (other systems, restricted /proc) the figure is the process's high-water mark since it
started: a measurement that stays below an earlier peak then shows an increase of 0. ``method`` in
the record says which of the two was used.
"""

from __future__ import annotations

import gc
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from harness.devices import synchronize

CLEAR_REFS = Path("/proc/self/clear_refs")
STATUS = Path("/proc/self/status")


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Yield a dict that holds the peak memory of the ``with`` block once the block has ended."""
    record: dict[str, Any] = {}
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield record
        synchronize(device)
        record.update(
            peak_allocated_bytes=torch.cuda.max_memory_allocated(device),
            peak_reserved_bytes=torch.cuda.max_memory_reserved(device),
        )
        return
    reset = _reset_high_water_mark()
    baseline = _status_bytes("VmRSS") or _max_rss_bytes()
    yield record
    peak = (_status_bytes("VmHWM") if reset else None) or _max_rss_bytes()
    record.update(
        peak_rss_bytes=peak,
        rss_increase_bytes=max(0, peak - baseline),
        method="reset high-water mark" if reset else "process high-water mark",
    )


def release_cached(device: torch.device) -> None:
    """Return freed CUDA blocks to the driver so one run's cache does not crowd the next."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()


def _reset_high_water_mark() -> bool:
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def _status_bytes(key: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def _max_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, kB elsewhere
