"""The work of one run, measuring: timing, statistics, contention, memory, FLOPs and profiling."""
