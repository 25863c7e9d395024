"""Machines as results files record them: the fingerprint runs are compared by, and how two
machine records are told apart (the live facts are read by ``bench.measure.machine``)."""

from __future__ import annotations

import hashlib
import json

from bench.results.schema import Machine

GIB = 1 << 30


def os_family(platform_text: str) -> str | None:
    """'Linux-6.8.0-1019-aws-x86_64-with-glibc2.36' -> 'Linux' (the family, not the build)."""
    head = platform_text.split("-", 1)[0]
    return {"macOS": "Darwin"}.get(head, head) or None


def arch_of(platform_text: str) -> str | None:
    """The architecture named in a platform string (x86_64, aarch64, arm64, AMD64), if any."""
    for arch in ("x86_64", "aarch64", "arm64", "AMD64", "i686", "armv7l", "ppc64le", "s390x", "riscv64"):
        if arch in platform_text:
            return arch
    return None


def fingerprint(m: Machine) -> str:
    """A stable id of the hardware facts that change results (not the hostname, not the kernel)."""
    facts = {"cpu": m.cpu, "cpu_features": m.cpu_features, "cores": [m.cores_physical, m.cores_logical],
             "ram_gib": m.ram_gib, "gpus": sorted(m.gpus), "os_family": m.os_family, "arch": m.arch}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:12]


def same_machine(a: Machine, b: Machine) -> str | None:
    """None when runs of ``a`` and ``b`` are comparable; otherwise what differs, said plainly.

    Two named machines are the same when their names are; otherwise the hardware facts are
    compared one by one, and a fact one side does not know (older runs lack CPU features) is not
    held against it."""
    if a.name and b.name:
        return None if a.name == b.name else f"different machines ({a.name} vs {b.name})"
    facts = [("CPU", a.cpu, b.cpu), ("CPU features", a.cpu_features, b.cpu_features),
             ("cores", a.cores_logical, b.cores_logical), ("RAM GiB", a.ram_gib, b.ram_gib),
             ("GPUs", sorted(a.gpus) or None, sorted(b.gpus) or None), ("OS", a.os_family, b.os_family),
             ("arch", a.arch, b.arch)]
    differ = [f"{label} {_shown(x)} vs {_shown(y)}" for label, x, y in facts if x is not None and y is not None and x != y]
    return f"different machines: {'; '.join(differ)}" if differ else None


def _shown(value: object) -> str:
    return ", ".join(value) if isinstance(value, list) else str(value)


def machine_key(m: Machine) -> str:
    """What groups runs by machine: the user's name, else the fingerprint."""
    return m.name or m.fingerprint or m.hostname_hash or "unknown"


def machine_label(m: Machine) -> str:
    """A short human label: the name, or 'CPU · N cores · R GiB'."""
    if m.name:
        return m.name
    parts = [m.cpu or "unknown CPU"]
    if m.cores_logical:
        parts.append(f"{m.cores_logical} cores")
    if m.ram_gib:
        parts.append(f"{m.ram_gib} GiB")
    return " · ".join(parts)
