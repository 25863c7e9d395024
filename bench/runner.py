"""The benchmark matrix: per model, warmup requests, then rounds x prompts.

Every finished request is saved at once (atomic rewrite of the run file), so a crash or kill -9
loses nothing measured; ``resume`` runs only the cells a run file is missing.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

import openai

import bench
from bench.client import RequestOptions, TokenCounter, make_client, run_request
from bench import local
from bench.config import Endpoint, Model, Plan, Prompt, plan_from_snapshot, redact_url
from bench.errors import BenchError, ResultsError
from bench.rubric import parse_rubric
from bench.rubric import score as score_rubric
from bench.machine import git_info, machine_info
from bench.schema import EndpointInfo, ModelInfo, Run, Sample
from bench.store import RunWriter, ensure_writable, find_run, load_run, new_run_id, run_path, utcnow, workload


# Warmup uses its own prompt: a server that caches the last prompt (llama.cpp does) would
# otherwise answer the first measured request, the same text, with a near-zero TTFT.
WARMUP_PROMPT = Prompt(id="_warmup", text="Reply with one short sentence about the weather.")


class Interrupted(BenchError):
    exit_code = 130


class Reporter(Protocol):
    """Progress events; the CLI draws a progress bar from them. All methods optional in spirit."""

    def start(self, run: Run, total: int) -> None: ...
    def model(self, key: str, info: ModelInfo) -> None: ...
    def sample(self, sample: Sample) -> None: ...


class _Silent:
    def start(self, run: Run, total: int) -> None:
        pass

    def model(self, key: str, info: ModelInfo) -> None:
        pass

    def sample(self, sample: Sample) -> None:
        pass


@dataclass
class Outcome:
    run: Run
    path: Path


# ----------------------------------------------------------------------------- endpoints


def probe_endpoint(name: str, endpoint: Endpoint, client: openai.OpenAI, timeout_s: float = 10) -> EndpointInfo:
    """GET /models: reachable? what does the server list? (never raises)"""
    info = EndpointInfo(name=name, base_url=redact_url(endpoint.base_url), reachable=False)
    try:
        raw = client.models.with_raw_response.list(timeout=timeout_s)
        info.server = raw.headers.get("server")
        page = raw.parse()
        info.models = sorted(m.id for m in page.data)
        info.reachable = True
    except openai.APIStatusError as e:
        # Reachable, but /models failed (some servers do not implement it).
        info.reachable = e.status_code not in (502, 503, 504)
        info.error = f"GET /models answered HTTP {e.status_code}"
        info.server = e.response.headers.get("server") if e.response is not None else None
    except openai.APIError as e:
        cause = e.__cause__ or e
        info.error = f"cannot reach {info.base_url}: {type(cause).__name__}: {str(cause)[:200]}"
    except Exception as e:  # noqa: BLE001 - a malformed /models body must not stop the run
        info.reachable = True
        info.error = f"GET /models returned something unexpected: {str(e)[:200]}"
    return info


def model_listed(name: str, listed: list[str]) -> bool:
    """Empty list: the server does not say, so assume yes. Ollama lists 'x:latest' for 'x'."""
    return not listed or name in listed or f"{name}:latest" in listed


def unknown_model_reason(name: str, info: EndpointInfo) -> str:
    have = ", ".join(info.models[:20]) + (" …" if len(info.models) > 20 else "")
    return f"the server at {info.base_url} does not serve '{name}'; it has: {have}"


# ----------------------------------------------------------------------------- the matrix


def _cells(plan: Plan) -> Iterator[tuple[int, Any]]:
    for r in range(plan.rounds):
        for p in plan.prompts:
            yield r, p


@dataclass
class Target:
    """Where one model's requests go."""

    client: openai.OpenAI
    counter: TokenCounter
    probe: EndpointInfo
    server: tuple[int, str] | None = None  # (pid, name) of a loopback server we can measure


@contextlib.contextmanager
def _server_memory(target: Target, info: ModelInfo) -> Iterator[None]:
    """Sample the resident memory of a loopback server's process tree while one model runs."""
    if target.server is None:
        yield
        return
    pid, name = target.server
    try:
        sampler = local._MemorySampler(pid)
    except Exception:  # noqa: BLE001 - the process went away
        yield
        return
    before = sampler.rss()
    sampler.start()
    try:
        yield
    finally:
        peak = sampler.stop()
        if info.status == "ok" and peak:
            info.extra.update(
                rss_before_bytes=before, peak_rss_bytes=peak,
                memory_source=f"process tree of {name} (pid {pid}), which serves the endpoint; it may hold other models too",
            )


def _model_extra(m: Model) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    builtin = local.BUILTINS.get(m.path.removeprefix("builtin:")) if m.path and m.path.startswith("builtin:") else None
    if builtin:
        extra.update(quantization=builtin.quantization, parameters=builtin.parameters, source=builtin.source)
    if m.quantization:
        extra["quantization"] = m.quantization
    if m.parameters:
        extra["parameters"] = m.parameters
    if m.chat_format or (builtin and builtin.chat_format):
        extra["chat_format"] = m.chat_format or (builtin.chat_format if builtin else None)
    return extra


def _new_run(plan: Plan) -> Run:
    prompts = [p.model_dump(exclude_none=True) for p in plan.prompts]
    return Run(
        run_id=new_run_id(),
        status="running",
        started_at=utcnow(),
        bench_version=bench.__version__,
        git=git_info(),
        machine=machine_info(),
        workload=workload(prompts, plan.generation.model_dump()),
        config=plan.snapshot(),
        models={
            m.key: ModelInfo(
                name=m.name,
                endpoint=local.EMBEDDED if m.embedded else plan.endpoint_of(m).name,
                license=m.license,
                capabilities=list(m.capabilities),
                notes=m.notes,
                extra=_model_extra(m),
            )
            for m in plan.models
        },
    )


def prepare(
    plan: Plan | None,
    *,
    resume: str | None = None,
    results_dir: Path | None = None,
    endpoint_override: str | None = None,
) -> tuple[Plan, RunWriter]:
    """A new run (plan given) or a run file to complete (resume given)."""
    if resume is None:
        assert plan is not None
        if plan.uses_embedded:
            local.check_runtime()
        ensure_writable(plan.results_dir)
        run = _new_run(plan)
        return plan, RunWriter(run_path(plan.results_dir, run.run_id), run, new=True)
    rdir = results_dir or (plan.results_dir if plan else Path("results"))
    path = find_run(rdir, resume)
    run = load_run(path)
    if run.status == "complete":
        raise ResultsError(f"run {run.run_id} is already complete: nothing to resume")
    ensure_writable(path.parent)
    resumed = plan_from_snapshot(run.config, path.parent, endpoint_override)
    if resumed.uses_embedded:
        local.check_runtime()
    return resumed, RunWriter(path, run, new=False)


def collect(
    plan: Plan,
    writer: RunWriter,
    *,
    env: Mapping[str, str] | None = None,
    reporter: Reporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    backoff_s: float = 1.0,
) -> Outcome:
    """Run every missing cell of ``writer.run``; save after each request; never lose a sample."""
    env = os.environ if env is None else env
    reporter = reporter or _Silent()
    run = writer.run
    done = {(s.model, s.prompt_id, s.round) for s in run.samples if not s.warmup}
    todo = {
        m.key: [(r, p) for r, p in _cells(plan) if (m.key, p.id, r) not in done] for m in plan.models
    }
    total = sum(len(c) + (plan.warmup if c else 0) for c in todo.values())
    opts = RequestOptions(
        gen=plan.generation,
        timeout_s=plan.timeout_s,
        stall_timeout_s=plan.stall_timeout_s,
        retries=plan.retries,
        backoff_s=backoff_s,
    )

    targets: dict[str, Target] = {}
    for name, ep in plan.endpoints.items():
        client = make_client(ep, env)
        targets[name] = Target(client, TokenCounter(ep, client, env, plan.timeout_s), probe_endpoint(name, ep, client),
                               local.loopback_server(ep.base_url))
    # Latest probe replaces an older one for the same endpoint name (resume may re-probe).
    run.endpoints = [e for e in run.endpoints if e.name not in targets] + [t.probe for t in targets.values()]
    writer.save()
    reporter.start(run, total)

    try:
        for m in plan.models:
            cells = todo[m.key]
            if not cells:
                continue
            if m.embedded:
                _run_embedded(plan, writer, m, cells, env, opts, reporter, sleep)
            else:
                target = targets[plan.endpoint_of(m).name]
                with _server_memory(target, run.models[m.key]):
                    _run_model(plan, writer, m, cells, target, opts, reporter, sleep)
                writer.save()
            reporter.model(m.key, run.models[m.key])
    except KeyboardInterrupt:
        run.status = "interrupted"
        run.ended_at = utcnow()
        writer.save()
        measured = sum(1 for s in run.samples if not s.warmup)
        raise Interrupted(
            f"interrupted: {measured} requests are saved in {writer.path}; "
            f"finish the run with: bench collect --resume {run.run_id}"
        ) from None

    done = {(s.model, s.prompt_id, s.round) for s in run.samples if not s.warmup}
    missing = any((m.key, p.id, r) not in done for m in plan.models for r, p in _cells(plan))
    bad = any(run.models[m.key].status != "ok" for m in plan.models)
    run.status = "partial" if (missing or bad) else "complete"
    run.ended_at = utcnow()
    writer.save()
    return Outcome(run=run, path=writer.path)


def _run_model(
    plan: Plan,
    writer: RunWriter,
    m: Model,
    cells: list[tuple[int, Any]],
    target: Target,
    opts: RequestOptions,
    reporter: Reporter,
    sleep: Callable[[float], None],
) -> None:
    run = writer.run
    info = run.models[m.key]
    probe = target.probe
    info.status, info.reason = "pending", None
    if not probe.reachable:
        info.status, info.reason = "skipped", probe.error or "endpoint unreachable"
        writer.save()
        return
    if not model_listed(m.name, probe.models):
        info.status, info.reason = "skipped", unknown_model_reason(m.name, probe)
        writer.save()
        return

    client, counter = target.client, target.counter
    rubrics = {p.id: parse_rubric(p.rubric, f"prompt {p.id}") for p in plan.prompts if p.rubric}

    def one(prompt: Any, round_: int, warmup: bool) -> Sample:
        s = run_request(
            client, counter, m.name, prompt.id, prompt.text, opts, round=round_, warmup=warmup, sleep=sleep
        )
        s.model = m.key
        if s.ok and prompt.id in rubrics:
            s.rubric = score_rubric(rubrics[prompt.id], s.output)
        run.samples.append(s)
        if s.resolved_model:
            info.resolved_id = s.resolved_model
        writer.save()
        reporter.sample(s)
        return s

    first_warmup = sum(1 for s in run.samples if s.model == m.key and s.warmup)
    for i in range(plan.warmup):
        s = one(WARMUP_PROMPT, first_warmup + i, True)
        if s.error == "unknown_model":
            info.status, info.reason = "skipped", f"unknown model: {s.error_detail}"
            writer.save()
            return

    consecutive = 0
    for r, p in cells:
        s = one(p, r, False)
        if s.ok:
            consecutive = 0
            continue
        consecutive += 1
        if s.error == "unknown_model":
            info.status, info.reason = "skipped", f"unknown model: {s.error_detail}"
            writer.save()
            return
        if consecutive >= plan.max_consecutive_failures:
            info.status = "failed"
            info.reason = (
                f"gave up after {consecutive} consecutive failed requests "
                f"(last: {s.error}: {s.error_detail})"
            )
            writer.save()
            return
    mine = [s for s in run.samples if s.model == m.key and not s.warmup]
    if any(s.ok for s in mine):
        info.status = "ok"
    else:
        last = mine[-1] if mine else None
        info.status = "failed"
        info.reason = f"no request succeeded (last: {last.error}: {last.error_detail})" if last else "no requests"
    writer.save()


def _run_embedded(
    plan: Plan,
    writer: RunWriter,
    m: Model,
    cells: list[tuple[int, Any]],
    env: Mapping[str, str],
    opts: RequestOptions,
    reporter: Reporter,
    sleep: Callable[[float], None],
) -> None:
    """Start the model's own llama.cpp server, run its cells, and always stop the server."""
    run = writer.run
    info = run.models[m.key]
    assert m.path is not None
    try:
        model_path = local.resolve_model_path(m.path)
    except BenchError as e:
        info.status, info.reason = "skipped", str(e)
        writer.save()
        return
    server = local.LocalServer(
        m.name, model_path, chat_format=m.chat_format, threads=plan.embedded.threads, n_ctx=plan.embedded.n_ctx
    )
    try:
        try:
            facts = server.start()
        except local.ServerStartError as e:
            info.status, info.reason = "skipped", str(e)
            return
        ep = Endpoint(name=f"{local.EMBEDDED}:{m.key}", base_url=server.base_url)
        client = make_client(ep, env)
        probe = probe_endpoint(ep.name, ep, client)
        probe.server = f"{facts.runtime} (embedded)"
        run.endpoints = [e for e in run.endpoints if e.name != ep.name] + [probe]
        info.extra.update(facts.as_dict())
        writer.save()
        _run_model(plan, writer, m, cells, Target(client, TokenCounter(ep, client, env, plan.timeout_s), probe),
                   opts, reporter, sleep)
    finally:
        server.stop()
        if server.facts is not None:
            info.extra.update(server.facts.as_dict())
        writer.save()
