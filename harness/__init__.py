"""bench: a plugin-based benchmarking harness for PyTorch models.

Plugin authors need only ``from harness import hookimpl``; everything else a plugin registers is
described in :mod:`harness.hookspecs`.
"""

from importlib.metadata import EntryPoint, entry_points

import pluggy

__version__ = "0.1.0"
ENTRY_POINT_GROUP = "bench"  # where installed packages register their plugins

hookimpl = pluggy.HookimplMarker("bench")


def installed_entry_points(group: str = ENTRY_POINT_GROUP) -> list[tuple[EntryPoint, str]]:
    """The entry points of ``group`` by name, each with its distribution's name ("?" if none).

    ``EntryPoint.dist.name`` parses the distribution's metadata anew at every call (tens of
    milliseconds for a few plugins, paid by every bench process and every worker), so each
    distribution is read once here."""
    names: dict[int, str] = {}
    found = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        if ep.dist is None:
            found.append((ep, "?"))
            continue
        if id(ep.dist) not in names:
            names[id(ep.dist)] = ep.dist.metadata["Name"]
        found.append((ep, names[id(ep.dist)]))
    return found


__all__ = ["__version__", "hookimpl"]
