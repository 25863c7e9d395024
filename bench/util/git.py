"""Running git: the one helper. A missing git, a folder outside a repository or a hung git is an
answer (None, or a failed result), never a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

NOT_INSTALLED = "git is not installed (or not on PATH)"


def git(args: list[str], cwd: Path, *, text: bool = True, timeout_s: float = 60) -> subprocess.CompletedProcess | None:
    """``git ARGS`` in ``cwd``; None when git cannot be run at all (not installed, timed out)."""
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=text, timeout=timeout_s)
    except (OSError, subprocess.SubprocessError):
        return None


def git_out(args: list[str], cwd: Path, timeout_s: float = 10) -> str | None:
    """git's stripped output when it succeeds, else None."""
    done = git(args, cwd, timeout_s=timeout_s)
    return done.stdout.strip() if done is not None and done.returncode == 0 else None


def installed(cwd: Path) -> bool:
    return git(["--version"], cwd, timeout_s=10) is not None
