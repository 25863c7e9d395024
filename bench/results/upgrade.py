"""Older results files -> the current format, on load (never rewritten in place).

``_UPGRADES[n]`` turns a version-n dict into a version-(n+1) dict; see the history beside
``bench.results.schema.SCHEMA_VERSION``.
"""

from __future__ import annotations

from typing import Any, Callable

from bench.errors import ResultsError
from bench.results.schema import SCHEMA_VERSION, SEQUENTIAL


def _upgrade_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added rubric results per sample and LLM-judge verdicts per run."""
    samples = data.get("samples")
    for s in samples if isinstance(samples, list) else []:
        if isinstance(s, dict):
            s.setdefault("rubric", None)
    data.setdefault("judgements", [])
    return data


def _upgrade_to_3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 records the prompt-cache mode; older runs may have measured cached prompts."""
    if isinstance(data.get("workload"), dict):
        data["workload"].setdefault("prompt_cache", "unknown")
    return data


def _upgrade_to_4(data: dict[str, Any]) -> dict[str, Any]:
    """Version 4 records runtimes and scenarios; rubric scores are computed on load, not stored."""
    samples = data.get("samples")
    for s in samples if isinstance(samples, list) else []:
        if isinstance(s, dict):
            s.pop("rubric", None)
    if isinstance(data.get("workload"), dict):
        data["workload"].setdefault("scenario", dict(SEQUENTIAL))
    return data


def _upgrade_to_5(data: dict[str, Any]) -> dict[str, Any]:
    """Version 5 may store the server's own timings per sample; older runs have none."""
    samples = data.get("samples")
    for s in samples if isinstance(samples, list) else []:
        if isinstance(s, dict):
            s.setdefault("server", None)
    return data


def _upgrade_to_6(data: dict[str, Any]) -> dict[str, Any]:
    """Version 6 compares machines by a fingerprint of their hardware facts: derive what the old
    machine record holds (its CPU features are unknown); every sample was in session 0."""
    from bench.results.machines import GIB, arch_of, fingerprint, os_family
    from bench.results.schema import Machine

    m = data.get("machine")
    if isinstance(m, dict):
        text = m.get("os") if isinstance(m.get("os"), str) else ""
        ram = m.get("ram_bytes")
        m.setdefault("os_family", os_family(text))
        m.setdefault("arch", arch_of(text))
        m.setdefault("ram_gib", round(ram / GIB) if isinstance(ram, int) and not isinstance(ram, bool) and ram > 0
                     else None)
        try:
            m.setdefault("fingerprint", fingerprint(Machine.model_validate(m)))
        except ValueError:
            pass  # a malformed machine record: validation of the whole file says what is wrong
    for s in data.get("samples") if isinstance(data.get("samples"), list) else []:
        if isinstance(s, dict):
            s.setdefault("session", 0)
    return data


_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_to_2, 2: _upgrade_to_3,
                                                                    3: _upgrade_to_4, 4: _upgrade_to_5, 5: _upgrade_to_6}


def upgrade(data: dict[str, Any], source: str) -> dict[str, Any]:
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(f"{source}: not a bench results file (no integer schema_version)")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{source}: written by a newer bench (schema_version {version}, this bench reads up to "
            f"{SCHEMA_VERSION}); upgrade bench: pip install -U bench"
        )
    while version < SCHEMA_VERSION:
        data = _UPGRADES[version](data)
        version += 1
        data["schema_version"] = version
    return data


