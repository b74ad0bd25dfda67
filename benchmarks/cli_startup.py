"""How long the command line takes to answer: ``bench --help``, each ``bench COMMAND --help`` and
``bench list suites``, as a user waits for them (a fresh process each time).

    python benchmarks/cli_startup.py                       # this environment's bench
    python benchmarks/cli_startup.py --baseline OTHER/bin/bench --repeats 7

With ``--baseline`` the two executables run alternately, command by command, so that the machine's
load falls on both alike; the table gives each median and the ratio. The load average before and
after is printed with it: figures from a busy machine are not comparable with a quiet one's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [
    ["--help"],
    *([name, "--help"] for name in ("run", "time", "profile", "list", "report", "compare")),
    *([name, "--help"] for name in ("ab", "rerun", "history", "new-plugin")),
    ["list", "suites"],
]


def wall_time(bench: str, args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([bench, *args], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = shutil.which("bench") or str(Path(sys.executable).with_name("bench"))
    parser.add_argument("--bench", default=default, help="the bench to time (default: on PATH)")
    parser.add_argument("--baseline", help="another bench executable, timed alternately")
    parser.add_argument("--repeats", type=int, default=5, help="runs of each command (median)")
    options = parser.parse_args()

    sides = {"bench": options.bench, **({"baseline": options.baseline} if options.baseline else {})}
    print(f"load average before: {os.getloadavg()}")
    rows = []
    for args in COMMANDS:
        times: dict[str, list[float]] = {side: [] for side in sides}
        for i in range(options.repeats):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for side in order:
                times[side].append(wall_time(sides[side], args))
        medians = {side: statistics.median(t) for side, t in times.items()}
        rows.append((" ".join(args), medians))
    print(f"load average after: {os.getloadavg()}")
    header = "| command | " + " | ".join(f"{s} median (s)" for s in sides)
    print(header + (" | baseline / bench |" if options.baseline else " |"))
    print("|---" * (len(sides) + 1 + bool(options.baseline)) + "|")
    for command, medians in rows:
        cells = " | ".join(f"{medians[s]:.3f}" for s in sides)
        ratio = f" | {medians['baseline'] / medians['bench']:.1f}x" if options.baseline else ""
        print(f"| bench {command} | {cells}{ratio} |")


if __name__ == "__main__":
    main()
