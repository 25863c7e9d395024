"""Facts that decide whether two runs are comparable: the machine and the code version."""

from __future__ import annotations

import hashlib
import platform
import shutil
import socket
import subprocess
from pathlib import Path

import psutil

from bench.results.machines import GIB, fingerprint
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


# CPU features that change inference speed (llama.cpp's kernels, ONNX Runtime's), as /proc/cpuinfo
# (x86 "flags", ARM "Features") and macOS sysctl name them.
SPEED_FEATURES = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                  "avx_vnni", "amx_tile", "amx_int8", "amx_bf16", "asimd", "neon", "asimddp", "dotprod", "i8mm",
                  "sve", "sve2", "bf16")


def _cpu_features() -> list[str] | None:
    """The speed-relevant CPU features this machine reports (None: not known here)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip().lower() in ("flags", "features"):
                flags.update(value.split())
    except OSError:
        pass
    if not flags and platform.system() == "Darwin":
        flags = _darwin_features()
    return sorted(f for f in flags if f in SPEED_FEATURES) if flags else None


def _darwin_features() -> set[str]:
    try:
        out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    on = {line.split(":")[0].rsplit(".", 1)[-1].lower() for line in out.splitlines()
          if line.startswith("hw.optional.") and line.rstrip().endswith(": 1")}
    names = {"neon": "neon", "arm_feat_dotprod": "dotprod", "arm_feat_i8mm": "i8mm", "arm_feat_bf16": "bf16",
             "avx2_0": "avx2", "avx512f": "avx512f", "avx1_0": "avx", "fma": "fma"}
    return {names[k] for k in on if k in names}


def machine_info(name: str | None = None) -> Machine:
    total = psutil.virtual_memory().total
    m = Machine(
        # A hash, not the name: enough to tell machines apart without publishing hostnames.
        hostname_hash=hashlib.sha256(socket.gethostname().encode()).hexdigest()[:12],
        os=platform.platform(),
        python=platform.python_version(),
        cpu=_cpu_model(),
        cores_physical=psutil.cpu_count(logical=False),
        cores_logical=psutil.cpu_count(logical=True),
        ram_bytes=total,
        gpus=_gpus(),
        name=name,
        os_family=platform.system() or None,
        arch=platform.machine() or None,
        ram_gib=round(total / GIB) if total else None,
        cpu_features=_cpu_features(),
    )
    return m.model_copy(update={"fingerprint": fingerprint(m)})


def git_info(cwd: Path | None = None) -> GitInfo | None:
    """Commit, branch and dirtiness of the repository we run in (None outside a repository)."""
    cwd = cwd or Path.cwd()
    commit = git_out(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return None
    branch = git_out(["rev-parse", "--abbrev-ref", "HEAD"], cwd)
    status = git_out(["status", "--porcelain", "--untracked-files=no"], cwd)
    return GitInfo(commit=commit, branch=branch, dirty=bool(status) if status is not None else None)
