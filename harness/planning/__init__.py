"""Suites planned into runs: suite files, command-line overrides, the procedure protocol."""
