"""bench: a plugin-based benchmarking harness for PyTorch models.

Plugin authors need only ``from harness import hookimpl``; everything else a plugin registers is
described in :mod:`harness.hookspecs`.
"""

import pluggy

__version__ = "0.1.0"
ENTRY_POINT_GROUP = "bench"  # where installed packages register their plugins

hookimpl = pluggy.HookimplMarker("bench")

__all__ = ["__version__", "hookimpl"]
