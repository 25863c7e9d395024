"""`bench judge`: an LLM scores each distinct response of a run against the prompt's rubric.

A model never judges its own outputs. Every verdict is stored with the judge's resolved model
id, the judge prompt's version and hash, and the raw text; a verdict with no unambiguous
"SCORE: N" is recorded as unparseable (score null), never as a score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping

from bench.config import Endpoint, Generation, redact_url
from bench.errors import EndpointError
from bench.measure.client import measure_plain
from bench.measure.targets import open_target
from bench.quality.annotations import (
    JUDGE_PROMPT_HASH,
    JUDGE_PROMPT_VERSION,
    judge_messages,
    parse_verdict,
    response_id,
    same_model,
)
from bench.results.journal import RunWriter
from bench.results.schema import Judgement, Run, Sample, utcnow


@dataclass
class JudgeSummary:
    judged: int
    unparseable: int
    skipped_self: list[str]
    already: int
    failed: int = 0  # requests to the judge that failed: not verdicts, retried by the next bench judge
    last_error: str | None = None


def _to_judge(run: Run, judge_model: str, done: set[str], summary: JudgeSummary) -> Iterator[tuple[str, Sample]]:
    """Each distinct successful response not judged yet, and not the judge's own (counted as skipped)."""
    seen: set[str] = set()
    for s in run.samples:
        if not s.ok or s.warmup:
            continue
        rid = response_id(s.model, s.prompt_id, s.output)
        if rid in seen:
            continue
        seen.add(rid)
        if rid in done:
            summary.already += 1
            continue
        minfo = run.models.get(s.model)
        if same_model(judge_model, None, minfo.name if minfo else s.model, s.resolved_model or (minfo.resolved_id if minfo else None)):
            _skip_self(summary, s.model)
            continue
        yield rid, s


def _skip_self(summary: JudgeSummary, model: str) -> None:
    if model not in summary.skipped_self:
        summary.skipped_self.append(model)


def judge_run(writer: RunWriter, endpoint: Endpoint, judge_model: str, *, env: Mapping[str, str],
              timeout_s: float = 120.0, max_tokens: int = 64, redo: bool = False,
              progress: Callable[[Judgement], None] | None = None) -> JudgeSummary:
    run = writer.run
    target = open_target("judge", endpoint, env, timeout_s)
    client, info = target.client, target.probe
    if not info.reachable:
        raise EndpointError(f"the judge endpoint is down: {info.error}; start it or pass another --endpoint")
    if target.runtime.served_id(judge_model, info.models) is None:
        raise EndpointError(f"the judge endpoint does not serve '{judge_model}'; it has: {', '.join(info.models)}")
    gen = Generation(max_tokens=max_tokens, temperature=0.0, seed=0, stream=False)
    prompts = {p["id"]: p for p in run.workload.prompts}
    done = {j.response_id for j in run.judgements if j.judge_model == judge_model}
    if redo:
        run.judgements = [j for j in run.judgements if j.judge_model != judge_model]
        done = set()
    summary = JudgeSummary(0, 0, [], 0)
    for rid, s in _to_judge(run, judge_model, done, summary):
        p = prompts.get(s.prompt_id, {"text": s.prompt_id})
        m = measure_plain(client, judge_model, judge_messages(p["text"], p.get("rubric"), s.output), gen, timeout_s)
        if m.error in ("connection",):
            raise EndpointError(f"the judge endpoint stopped answering ({m.detail}); verdicts so far are saved")
        if m.error is not None:
            # A failed request is not a verdict: nothing is stored, and the next run retries it.
            summary.failed += 1
            summary.last_error = f"{m.error}: {m.detail}"
            continue
        if m.resolved_model and same_model(m.resolved_model, None, s.resolved_model or s.model, None):
            _skip_self(summary, s.model)
            continue
        score = parse_verdict(m.output)
        j = Judgement(
            response_id=rid, model=s.model, prompt_id=s.prompt_id, judge_model=judge_model,
            judge_endpoint=redact_url(endpoint.base_url), judge_resolved_id=m.resolved_model,
            prompt_version=JUDGE_PROMPT_VERSION, prompt_hash=JUDGE_PROMPT_HASH, raw=m.output[:4000],
            score=score, error=None if score is not None else "unparseable verdict", judged_at=utcnow(),
        )
        run.judgements.append(j)
        writer.save()
        summary.judged += 1
        summary.unparseable += score is None
        if progress:
            progress(j)
    return summary
