"""`bench models`: the validation checklist (endpoint reachable, model list, each model answers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from bench.config import Generation, Plan
from bench.errors import BenchError
from bench.measure.client import measure_plain
from bench.measure.targets import Target, model_facts, open_target, unknown_model_reason
from bench.runtimes.base import NotDownloaded

PROBE_PROMPT = [{"role": "user", "content": "Reply with the single word OK."}]


@dataclass(frozen=True)
class CheckRow:
    ok: bool
    endpoint: str
    model: str | None
    detail: str


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
        if not info.reachable:
            continue
        for m in (m for m in plan.models if not m.embedded and plan.endpoint_of(m).name == name):
            rows.append(_check_model(target, m.name, m.key, gen, timeout_s))
    return rows


def _check_model(target: Target, name: str, key: str, gen: Generation, timeout_s: float) -> CheckRow:
    """Is the model served (its id), loadable (loaded, timed), and does it answer a probe?"""
    info = target.probe
    served = target.runtime.served_id(name, info.models)
    if served is None:
        return CheckRow(False, info.name, key, unknown_model_reason(name, info))
    as_id = f" as {served}" if served != name else ""
    try:
        load_s = target.runtime.ensure_loaded(served)
    except NotDownloaded as e:
        return CheckRow(False, info.name, key, f"listed{as_id}, not loaded: {e}")
    except BenchError as e:
        return CheckRow(False, info.name, key, f"served{as_id}, but not loadable: {e}")
    loaded = (f"loaded in {load_s:.2f} s, " if load_s is not None else
              "already loaded, " if served in (target.runtime.loaded() or []) else "")
    r = measure_plain(target.client, served, PROBE_PROMPT, gen, timeout_s)
    if r.error:
        return CheckRow(False, info.name, key, f"{loaded}{r.error}: {r.detail}")
    answer = " ".join(r.output.split())[:60]
    return CheckRow(True, info.name, key, f"{loaded}answered in {r.e2e_ns / 1e9:.2f} s as {r.resolved_model}: "
                                          f"{answer!r}{_memory_text(target)}{_facts_text(model_facts(target, served))}")


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
