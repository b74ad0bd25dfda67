"""bench's built-in plugins.

Each module is registered through the ``bench`` entry-point group, exactly as a third-party plugin
would be (see ``[project.entry-points.bench]`` in pyproject.toml).
"""
