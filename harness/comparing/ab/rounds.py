"""One run of a ``bench ab`` session on both sides, over its rounds, and the records it makes.

Each round measures the run in a fresh pair of workers (:mod:`harness.comparing.ab.session`); a
:class:`RunPair` collects what the rounds measured, each side's facts about the run (from its
first round) and the first failure, and turns them into one results record per side. A round
counts only once both sides measured every mode in it, so the two records always hold the same
rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.execution.outcome import make_record
from harness.measuring.contention import summarize_records
from harness.measuring.timer import Timing, rates
from harness.planning.suite_files import Run
from harness.results.store import now

ROLES = ("baseline", "candidate")


@dataclass
class RunPair:
    """One run as each side planned it, and what its rounds have measured so far."""

    runs: dict[str, Run]
    started: str = ""  # when its first round began
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)
    # role -> mode -> one block per completed round
    blocks: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    failures: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, baseline: Run, candidate: Run) -> RunPair:
        modes = baseline.config["modes"]
        return cls(
            runs={"baseline": baseline, "candidate": candidate},
            blocks={role: {mode: [] for mode in modes} for role in ROLES},
        )

    @property
    def name(self) -> str:
        return self.runs["baseline"].name

    @property
    def modes(self) -> list[str]:
        return list(self.blocks["baseline"])

    @property
    def rounds(self) -> int:
        return len(next(iter(self.blocks["baseline"].values()), []))

    def begin_round(self) -> None:
        self.started = self.started or now()

    def add_round(self, blocks: dict[str, dict[str, dict[str, Any]]]) -> None:
        """One round's block of every mode on both sides."""
        for role in ROLES:
            for mode in self.modes:
                self.blocks[role][mode].append(blocks[role][mode])

    def record(self, role: str) -> dict[str, Any]:
        """The results record of ``role``'s run: failed if either side failed (the side that
        did not is "not measured"), else its rounds merged mode by mode."""
        run = self.runs[role]
        if self.failures:
            other = next(r for r in ROLES if r != role)
            reply = self.failures.get(role) or {
                "status": "failed",
                "error": f"not measured: the {other} failed ({self.failures[other].get('error')})",
            }
            return make_record(
                run,
                status=reply.get("status", "failed"),
                error=reply.get("error"),
                traceback=reply.get("traceback"),
                started_at=self.started,
                wall_time_s=0.0,
            )
        metrics = dict(self.facts[role])
        for mode, records in self.blocks[role].items():
            metrics[mode] = merge_blocks(mode, records, metrics)
        seconds = sum(
            r["warmup_s"] + sum(r["samples"]) for rs in self.blocks[role].values() for r in rs
        )
        return make_record(
            run, status="ok", metrics=metrics, started_at=self.started, wall_time_s=seconds
        )


def merge_blocks(mode: str, blocks: list[dict[str, Any]], facts: dict[str, Any]) -> dict[str, Any]:
    """One timing record of a side's blocks of ``mode``: their samples in order, statistics
    over all of them, the rounds (sample count, median, contention) and, as in any timing
    record, samples/s, FLOP/s, peak memory, contention and the step's counters (every round's
    count the same, or none: the record says the rounds disagreed)."""
    samples = [x for block in blocks for x in block["samples"]]
    timing = Timing(
        samples,
        warmup_iterations=sum(b["warmup_iterations"] for b in blocks),
        warmup_seconds=sum(b["warmup_s"] for b in blocks),
    )
    first = blocks[0]
    work = None
    if mode == "epoch":
        extra = {"split_size": first["split_size"], "amp": first.get("amp")}
        speed = rates(timing, first["split_size"])
    else:
        batch, extra = facts["batch_size"], {}
        flops = facts["flops_per_sample"].get("forward" if mode == "forward" else "train_step")
        work = flops * batch if flops is not None else None
        speed = rates(timing, batch, work)
    return {
        **timing.to_dict(),
        # a round's cap, as that side's worker recorded it (a worker of an older bench: none)
        "capped": any(b["capped"] for b in blocks),
        "cap": next((b.get("cap") for b in blocks if b["capped"]), None),
        **speed,
        **extra,
        "memory": _peak([b["memory"] for b in blocks]),
        "contention": summarize_records([b["contention"] for b in blocks]),
        **_counters([b.get("counters") for b in blocks], work),
        "rounds": [
            {
                "n": len(b["samples"]),
                "median": b["median"],
                "contended": bool(b["contention"].get("contended")),
                "evidence": b["contention"].get("evidence", ""),
            }
            for b in blocks
        ],
    }


def _counters(counted: list[dict[str, Any] | None], flops: int | None) -> dict[str, Any]:
    """The rounds' counters, which the same code counts alike in every round, with the
    session's FLOPs (counted once, in the first round); none from a worker that counts none
    (an older bench's)."""
    if counted[0] is None:
        return {}
    plain = [_without_flops(counters) for counters in counted]
    if any(counters != plain[0] for counters in plain[1:]):
        differ = sum(counters != plain[0] for counters in plain[1:])
        why = f"{differ} of {len(counted)} rounds counted otherwise than the first"
        return {"counters": {"unavailable": {"all": why}}}
    merged = plain[0]
    if flops is not None:
        merged["flops"] = flops
    else:
        merged["unavailable"]["flops"] = "bench counts no FLOPs for this workload"
    return {"counters": merged}


def _without_flops(counters: dict[str, Any] | None) -> dict[str, Any] | None:
    if counters is None:
        return None
    unavailable = {k: v for k, v in counters.get("unavailable", {}).items() if k != "flops"}
    return {**{k: v for k, v in counters.items() if k != "flops"}, "unavailable": unavailable}


def _peak(memories: list[dict[str, Any]]) -> dict[str, Any]:
    """The largest of each figure over the blocks (peaks are reset for every block)."""
    merged = dict(memories[0])
    for memory in memories[1:]:
        for key, value in memory.items():
            if isinstance(value, (int, float)) and isinstance(merged.get(key), (int, float)):
                merged[key] = max(merged[key], value)
    return merged
