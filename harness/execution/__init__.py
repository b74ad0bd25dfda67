"""Execution: the runner, scheduling on an executor, jobs, interrupts, the executor protocol,
rerun."""
