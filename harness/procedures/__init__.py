"""The built-in suite procedures (registered by ``bench_plugins.procedures``)."""
