"""The context every number carries: software versions, device, threads, code revision."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import __version__
from harness.devices import cpu_model, device_name

if TYPE_CHECKING:  # torch is imported where the environment is captured, so that the history
    import torch  # commands, which need only git, start without it


def git_output(*args: str, cwd: Path | None = None) -> str | None:
    """What ``git ARGS`` printed, stripped; None without git, a repository or an answer."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def git_commit(path: Path | None = None) -> str | None:
    """The commit of the code being benchmarked (the current directory's checkout), if any."""
    commit = git_output("rev-parse", "HEAD", cwd=path)
    if commit is None:
        return None
    dirty = git_output("status", "--porcelain", "--untracked-files=no", cwd=path)
    return commit + ("-dirty" if dirty else "")


def capture_environment(device: torch.device) -> dict[str, Any]:
    import torch

    return {
        "bench_version": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "device": str(device),
        "device_name": device_name(device),
        "cpu": cpu_model(),
        "threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "git_commit": git_commit(),
    }
