"""Plugin loading and the registry: the hooks (:mod:`.hookspecs`), loading entry points and
``--plugin`` modules (:mod:`.loading`), the specs plugins register and the registry holding them
(:mod:`.specs`), their checks (:mod:`.checks`), and the package ``bench new-plugin`` writes
(:mod:`.skeleton`)."""

from typing import Any

from harness.registry.moved_paths import moved_name


def __getattr__(name: str) -> Any:  # harness.registry was a module of specs before
    return moved_name(__name__, name)
