"""A plugin that cannot even be imported: bench must report it and go on without it."""

import bench_module_that_does_not_exist  # noqa: F401
