"""``bench`` and ``python -m harness``: start the worker server if the command will use it, then
load the command line (seconds of imports, which the server's now overlap)."""

import sys

from harness.execution.forkserver import start_early


def main() -> None:
    start_early(sys.argv[1:])
    from harness.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
