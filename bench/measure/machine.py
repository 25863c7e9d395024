"""Facts that decide whether two runs are comparable: the machine and the code version."""

from __future__ import annotations

import hashlib
import platform
import shutil
import socket
import subprocess
from pathlib import Path

import psutil

from bench.results.schema import GitInfo, Machine
from bench.util.git import git_out


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _gpus() -> list[str]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def machine_info() -> Machine:
    return Machine(
        # A hash, not the name: enough to tell machines apart without publishing hostnames.
        hostname_hash=hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12],
        os=platform.platform(),
        python=platform.python_version(),
        cpu=_cpu_model(),
        cores_physical=psutil.cpu_count(logical=False),
        cores_logical=psutil.cpu_count(logical=True),
        ram_bytes=psutil.virtual_memory().total,
        gpus=_gpus(),
    )


def git_info(cwd: Path | None = None) -> GitInfo | None:
    """Commit, branch and dirtiness of the repository we run in (None outside a repository)."""
    cwd = cwd or Path.cwd()
    commit = git_out(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return None
    branch = git_out(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    status = git_out(["status", "--porcelain", "--untracked-files=no"], cwd)
    return GitInfo(commit=commit, branch=branch, dirty=bool(status) if status is not None else None)
