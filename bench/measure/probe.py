"""`bench models`: the validation checklist (endpoint reachable, model list, each model answers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from bench.config import Generation, Plan
from bench.measure.client import measure_plain
from bench.measure.targets import open_target, unknown_model_reason

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
        target = open_target(name, ep, env, timeout_s, probe_timeout_s=min(timeout_s, 10))
        client, info = target.client, target.probe
        listed = ", ".join(info.models) or "(no models listed)"
        server = f" [{info.server}]" if info.server else ""
        rows.append(CheckRow(info.reachable, name, None,
                             f"{info.base_url}{server}: " + (info.error or f"lists {listed}")))
        if not info.reachable:
            continue
        for m in (m for m in plan.models if not m.embedded and plan.endpoint_of(m).name == name):
            if target.runtime.served_id(m.name, info.models) is None:
                rows.append(CheckRow(False, name, m.key, unknown_model_reason(m.name, info)))
                continue
            r = measure_plain(client, m.name, PROBE_PROMPT, gen, timeout_s)
            if r.error:
                rows.append(CheckRow(False, name, m.key, f"{r.error}: {r.detail}"))
            else:
                answer = " ".join(r.output.split())[:60]
                rows.append(CheckRow(True, name, m.key,
                                     f"answered in {r.e2e_ns / 1e9:.2f} s as {r.resolved_model}: {answer!r}"))
    return rows
