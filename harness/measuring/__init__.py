"""The work of one run, measuring: timing (:mod:`.timer`, :mod:`.workload`), statistics
(:mod:`.summary`), contention (:mod:`.contention`), memory, FLOPs and profiling.

What can be measured is named here, importable without torch, so that the command line can offer
the choices without loading what measures them.
"""

MODES = ("forward", "forward_backward", "train_step", "epoch")
STEP_MODES = MODES[:3]  # one step each; an epoch is many
AMP_NAMES = ("bf16", "fp16")  # autocast dtypes (harness.measuring.timer.AMP_DTYPES)
# what a step is counted by (harness.measuring.counters), in the order tables show them
COUNTERS = ("operators", "allocations", "allocated_bytes", "flops", "graph_breaks", "recompiles",
            "kernel_launches", "syncs")  # fmt: skip
