"""`bench models`: the validation checklist (endpoint reachable, model list, each model answers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from bench.config import Generation, Plan
from bench.errors import BenchError
from bench.measure.client import measure_plain
from bench.measure.targets import Target, model_facts, open_target, unknown_model_reason
from bench.runtimes.base import NotDownloaded, size_text

PROBE_PROMPT = [{"role": "user", "content": "Reply with the single word OK."}]


@dataclass(frozen=True)
class CheckRow:
    ok: bool
    endpoint: str
    model: str | None
    detail: str
    # a model's checklist: present, loaded, answers, memory, disk, license -> what bench found
    checks: dict[str, str] = field(default_factory=dict)


def checklist(plan: Plan, *, env: Mapping[str, str], timeout_s: float = 60.0) -> list[CheckRow]:
    rows: list[CheckRow] = []
    gen = Generation(max_tokens=8, temperature=0, seed=plan.generation.seed, stream=False)
    for name, ep in plan.endpoints.items():
        try:
            target = open_target(name, ep, env, timeout_s, probe_timeout_s=min(timeout_s, 10))
        except BenchError as e:  # a runtime that could not find or start its own server
            rows.append(CheckRow(False, name, None, str(e)))
            continue
        info = target.probe
        if target.own is not None:
            rows.append(CheckRow(True, name, None, f"Foundry Local {target.own.how}" if info.runtime == "foundry"
                                 else target.own.how))
        listed = ", ".join(info.models) or "(no models listed)"
        server = f" [{info.server}]" if info.server else ""
        runtime = f"{info.runtime} {info.runtime_version or '(version not reported)'}"
        rows.append(CheckRow(info.reachable, name, None,
                             f"{info.base_url}{server}, runtime {runtime}: " + (info.error or f"lists {listed}")))
        if info.runtime_note:
            rows.append(CheckRow(False, name, None, info.runtime_note))
        if not info.reachable:
            continue
        for m in (m for m in plan.models if not m.embedded and plan.endpoint_of(m).name == name):
            rows.append(_check_model(target, m.name, m.key, gen, timeout_s))
    return rows


def _check_model(target: Target, name: str, key: str, gen: Generation, timeout_s: float) -> CheckRow:
    """Is the model present (its id), loaded or loadable (timed), does it answer a probe, and
    what does its runtime tell of its memory, disk and license?"""
    info = target.probe
    served = target.runtime.served_id(name, info.models)
    if served is None:
        return CheckRow(False, info.name, key, unknown_model_reason(name, info), {"present": "no"})
    as_id = f" as {served}" if served != name else ""
    checks = {"present": f"yes{as_id}"}
    try:
        load_s = target.runtime.ensure_loaded(served)
    except NotDownloaded as e:
        checks["loaded"] = "no: not downloaded" + (f" ({size_text(e.size_bytes)})" if e.size_bytes else "")
        return CheckRow(False, info.name, key, f"listed{as_id}, not loaded: {e}", checks)
    except BenchError as e:
        checks["loaded"] = "no: not loadable"
        return CheckRow(False, info.name, key, f"served{as_id}, but not loadable: {e}", checks)
    already = served in (target.runtime.loaded() or [])
    checks["loaded"] = f"loaded now, in {load_s:.2f} s" if load_s is not None else ("yes" if already else "–")
    loaded = (f"loaded in {load_s:.2f} s, " if load_s is not None else "already loaded, " if already else "")
    r = measure_plain(target.client, served, PROBE_PROMPT, gen, timeout_s)
    if r.error:
        checks["answers"] = f"no: {r.error}"
        return CheckRow(False, info.name, key, f"{loaded}{r.error}: {r.detail}", checks)
    checks["answers"] = f"yes, in {r.e2e_ns / 1e9:.2f} s"
    facts = model_facts(target, served)
    checks.update(_fact_checks(target, facts))
    answer = " ".join(r.output.split())[:60]
    return CheckRow(True, info.name, key, f"{loaded}answered in {r.e2e_ns / 1e9:.2f} s as {r.resolved_model}: "
                                          f"{answer!r}{_memory_text(target)}{_facts_text(facts)}", checks)


def _fact_checks(target: Target, facts: dict) -> dict[str, str]:
    """memory / disk / license: the figure and where it comes from, or unknown and why."""
    unknown = facts.get("unknown") if isinstance(facts.get("unknown"), dict) else {}
    sources = facts.get("sources") if isinstance(facts.get("sources"), dict) else {}
    with target.runtime.watch_memory() as reading:
        pass
    out = {}
    if reading and reading.before_bytes:
        out["memory"] = f"{size_text(reading.before_bytes)} (the server's processes now)"
    elif isinstance(facts.get("runtime_memory_bytes"), int):
        out["memory"] = f"{size_text(facts['runtime_memory_bytes'])} ({sources.get('runtime_memory_bytes', 'runtime')})"
    else:
        out["memory"] = "unknown: " + str(unknown.get("runtime_memory_bytes") or
                                          "bench cannot see the server's processes (not on this machine, or "
                                          "bench's own) and its runtime reports none")
    disk = facts.get("disk_bytes")
    out["disk"] = (f"{size_text(disk)} ({sources.get('disk_bytes', 'runtime')})" if isinstance(disk, int) and disk
                   else "unknown: " + str(unknown.get("disk_bytes") or "not reported"))
    lic = facts.get("license")
    out["license"] = (f"{lic} ({sources.get('license', 'runtime')})" if isinstance(lic, str) and lic
                      else "unknown: " + str(unknown.get("license") or "not reported: set license: in bench.yaml"))
    return {k: v[:200] for k, v in out.items()}


def _memory_text(target: Target) -> str:
    """The serving processes' resident memory now, when the runtime can see them."""
    with target.runtime.watch_memory() as reading:
        pass
    return f"; server memory now {reading.before_bytes / 1e6:.0f} MB" if reading and reading.before_bytes else ""


def _facts_text(facts: dict) -> str:
    """What the runtime knows about the model's footprint, and what it cannot tell."""
    parts = []
    if isinstance(facts.get("license"), str):
        parts.append(f"license {facts['license']}")
    if isinstance(facts.get("disk_bytes"), int):
        parts.append(f"disk {facts['disk_bytes'] / 1e6:.0f} MB")
    unknown = facts.get("unknown")
    if isinstance(unknown, dict) and unknown:
        parts.append("not known: " + ", ".join(str(k) for k in unknown))
    return ("; " + "; ".join(parts)) if parts else ""
