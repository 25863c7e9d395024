"""The benchmark matrix: per model, warmup requests, then rounds x prompts.

Every finished request is saved at once (atomic rewrite of the run file), so a crash or kill -9
loses nothing measured; ``resume`` runs only the cells a run file is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import bench
from bench.config import Endpoint, Model, Plan, Prompt, plan_from_snapshot, rebind
from bench.errors import BenchError, ResultsError
from bench.measure import scenarios
from bench.measure.machine import git_info, machine_info
from bench.measure.request import RequestOptions, run_request
from bench.measure.scenarios import Cell, Scenario
from bench.measure.targets import Target, model_facts, open_target, probe_endpoint  # noqa: F401 (probe_endpoint: API)
from bench.results.journal import RunWriter
from bench.results.schema import ModelInfo, Run, Sample, utcnow
from bench.results.store import (
    ensure_writable,
    find_run,
    load_run,
    new_run_id,
    run_path,
    work_dir,
    workload,
)
from bench.runtimes import embedded
from bench.runtimes.base import NotDownloaded, size_text
from bench.runtimes.builtin import builtin_facts

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
    def note(self, text: str) -> None: ...


class _Silent:
    def start(self, run: Run, total: int) -> None:
        pass

    def model(self, key: str, info: ModelInfo) -> None:
        pass

    def sample(self, sample: Sample) -> None:
        pass

    def note(self, text: str) -> None:
        pass


@dataclass
class Outcome:
    run: Run
    path: Path


def _model_extra(m: Model) -> dict[str, Any]:
    """What the configuration says about a model, before any runtime is asked."""
    extra: dict[str, Any] = builtin_facts(m.path)
    if m.quantization:
        extra["quantization"] = m.quantization
    if m.parameters:
        extra["parameters"] = m.parameters
    if m.chat_format:
        extra["chat_format"] = m.chat_format
    return extra


def _new_run(plan: Plan, scenario: Scenario) -> Run:
    prompts = [p.model_dump(exclude_none=True) for p in plan.prompts]
    return Run(
        run_id=new_run_id(),
        status="running",
        started_at=utcnow(),
        bench_version=bench.__version__,
        git=git_info(),
        machine=machine_info(plan.machine_name),
        workload=workload(prompts, plan.generation.model_dump(), plan.prompt_cache, scenario.params()),
        config=plan.snapshot(),
        models={
            m.key: ModelInfo(
                name=m.name,
                endpoint=embedded.EMBEDDED if m.embedded else plan.endpoint_of(m).name,
                license=m.license,
                capabilities=list(m.capabilities),
                notes=m.notes,
                extra=_model_extra(m),
            )
            for m in plan.models
        },
    )


# A cell whose only samples failed for one of these reasons is run again on resume.
TRANSIENT_ERRORS = {"connection", "server_error", "rate_limited", "timeout", "stall"}


def prepare(
    plan: Plan | None,
    *,
    resume: str | None = None,
    results_dir: Path | None = None,
    current: Plan | None = None,
) -> tuple[Plan, RunWriter]:
    """A new run (plan given) or a run file to complete (resume given).

    A resume re-uses the run file's workload, but servers and credentials come from ``current``
    (the user's own bench.yaml, environment and flags): never from a results file, which may have
    arrived through a pull request. The returned plan's ``notes`` say what differs.
    """
    if resume is None:
        assert plan is not None
        if plan.uses_embedded:
            embedded.check_runtime()
        ensure_writable(plan.results_dir)
        run = _new_run(plan, scenarios.get(plan.scenario, plan.load))
        return plan, RunWriter(run_path(plan.results_dir, run.run_id), run, new=True, journal=True, purpose="bench collect")
    rdir = results_dir or (plan.results_dir if plan else Path("results"))
    path = find_run(rdir, resume)
    run = load_run(path)
    if run.status == "complete":
        raise ResultsError(f"run {run.run_id} is already complete: nothing to resume")
    ensure_writable(path.parent)
    resumed = rebind(plan_from_snapshot(run.config, path.parent), current)
    if resumed.uses_embedded:
        embedded.check_runtime()
    return resumed, RunWriter(path, run, new=False, journal=True, purpose="bench collect --resume")


def _final_cells(run: Run) -> set[tuple[str, str, int, int]]:
    """Cells with a final answer: a success, or a failure that another try would not change."""
    return {(s.model, s.prompt_id, s.round, s.session) for s in run.samples
            if not s.warmup and (s.ok or s.error not in TRANSIENT_ERRORS)}


def collect(
    plan: Plan,
    writer: RunWriter,
    *,
    env: Mapping[str, str] | None = None,
    reporter: Reporter | None = None,
    sleep: Callable[[float], None] = time.sleep,
    backoff_s: float = 1.0,
    download: bool = False,
    server_timings: bool = False,
) -> Outcome:
    """Run every missing cell of ``writer.run``; journal each request; never lose a sample.
    ``download``: a runtime may download a model it has not got (never without being told)."""
    try:
        _collect(plan, writer, env=os.environ if env is None else env, reporter=reporter or _Silent(),
                 sleep=sleep, backoff_s=backoff_s, download=download, server_timings=server_timings)
    except KeyboardInterrupt:
        run = writer.run
        run.status, run.ended_at = "interrupted", utcnow()
        with contextlib.suppress(Exception):
            writer.finish()
        measured = sum(1 for s in run.samples if not s.warmup)
        raise Interrupted(
            f"interrupted: {measured} requests are saved in {writer.path}; "
            f"finish the run with: bench collect --resume {run.run_id}"
        ) from None
    except BaseException:
        with contextlib.suppress(Exception):  # the journal keeps everything if this fails too
            writer.finish()
        raise
    writer.finish()
    return Outcome(run=writer.run, path=writer.path)


def _collect(plan: Plan, writer: RunWriter, *, env: Mapping[str, str], reporter: Reporter,
             sleep: Callable[[float], None], backoff_s: float, download: bool, server_timings: bool) -> None:
    run = writer.run
    scenario = scenarios.get(plan.scenario, plan.load)
    done = _final_cells(run)
    todo = {m.key: [c for c in scenario.cells(plan) if (m.key, *c.key) not in done] for m in plan.models}
    total = sum(len(c) + (plan.warmup if c else 0) for c in todo.values())
    opts = RequestOptions(gen=plan.generation, timeout_s=plan.timeout_s, stall_timeout_s=plan.stall_timeout_s,
                          retries=plan.retries, backoff_s=backoff_s)
    targets, unavailable = _open_targets(plan, env)
    try:
        # Latest probe replaces an older one for the same endpoint name (resume may re-probe).
        run.endpoints = [e for e in run.endpoints if e.name not in targets] + [t.probe for t in targets.values()]
        model_paths = preflight(plan, run, todo)
        writer.save()
        reporter.start(run, total)
        for m in plan.models:
            job = _Job(plan, writer, m, todo[m.key], scenario, opts, reporter, sleep, download, server_timings)
            if job.cells:
                _run_one(job, targets, unavailable, model_paths, env)
    finally:
        for target in targets.values():
            if target.own is not None:
                target.own.stop()
    done = _final_cells(run)
    missing = any((m.key, *c.key) not in done for m in plan.models for c in scenario.cells(plan))
    bad = any(run.models[m.key].status != "ok" for m in plan.models)
    run.status = "partial" if (missing or bad) else "complete"
    run.ended_at = utcnow()


def _open_targets(plan: Plan, env: Mapping[str, str]) -> tuple[dict[str, Target], dict[str, str]]:
    """A target per endpoint; an endpoint whose server cannot be found or started is unavailable
    (its models fail with the reason; the others still run)."""
    targets, unavailable = {}, {}
    for name, ep in plan.endpoints.items():
        try:
            targets[name] = open_target(name, ep, env, plan.timeout_s)
        except BenchError as e:
            unavailable[name] = str(e)
    return targets, unavailable


def _run_one(job: "_Job", targets: Mapping[str, Target], unavailable: Mapping[str, str],
             model_paths: Mapping[str, Path], env: Mapping[str, str]) -> None:
    """Each session of the model in turn (its own warmup, and a fresh server when bench starts
    it); a session that leaves the model failed or skipped ends it."""
    for session in sorted({c.session for c in job.cells}):
        _run_session(dataclasses.replace(job, cells=[c for c in job.cells if c.session == session]), targets,
                     unavailable, model_paths, env)
        if job.info.status != "ok":
            break


def _run_session(job: "_Job", targets: Mapping[str, Target], unavailable: Mapping[str, str],
                 model_paths: Mapping[str, Path], env: Mapping[str, str]) -> None:
    m, run = job.m, job.writer.run
    if m.embedded:
        if m.key in model_paths:
            _run_embedded(job, model_paths[m.key], env)
    elif job.plan.endpoint_of(m).name in unavailable:
        run.models[m.key].status, run.models[m.key].reason = "failed", unavailable[job.plan.endpoint_of(m).name]
    else:
        target = targets[job.plan.endpoint_of(m).name]
        if target.own is not None:
            run.models[m.key].extra["server"] = target.own.how
        with target.memory(run.models[m.key]):
            _run_model(job, target)
    job.writer.save()
    job.reporter.model(m.key, run.models[m.key])


@dataclass
class _Job:
    """One model's share of the run: what it must still measure, and how."""

    plan: Plan
    writer: RunWriter
    m: Model
    cells: list[Cell]
    scenario: Scenario
    opts: RequestOptions
    reporter: Reporter
    sleep: Callable[[float], None]
    download: bool = False  # may a runtime download a model it has not got?
    server_timings: bool = False  # ask for the server's own timings with a paired untimed request

    @property
    def info(self) -> ModelInfo:
        return self.writer.run.models[self.m.key]


CACHE_FLUSH_PROMPT = "Reply with the single word: ready."


class _ModelRun:
    """The requests of one model on one target, with the prompt-cache rule of the workload.

    cold (default): a measured request never reuses an earlier request's prompt prefill. On the
    embedded server (llama-cpp-python keeps only the previous request's prefix) that holds as long
    as no prompt follows itself, so a one-token request with another text goes in between when
    one would; on any other server a short random marker goes before the prompt ("nonce").
    warm: an identical one-token request goes right before each measured one.
    """

    def __init__(self, job: _Job, target: Target, served: str):
        self.plan, self.writer, self.m, self.target = job.plan, job.writer, job.m, target
        self.opts, self.reporter, self.sleep = job.opts, job.reporter, job.sleep
        self.info, self.job = job.info, job
        plan = job.plan
        ordered = target.embedded and plan.scenario == "sequential"  # "order" needs one request at a time
        self.mechanism = "prime" if plan.prompt_cache == "warm" else ("order" if ordered else "nonce")
        self.info.extra["prompt_cache"] = {"mode": plan.prompt_cache, "mechanism": self.mechanism}
        self.extra_requests = 0
        self.served = served  # the id the runtime resolved the model's name to

    def _unmeasured(self, text: str) -> None:
        opts = RequestOptions(gen=self.opts.gen.model_copy(update={"max_tokens": 1}), timeout_s=self.opts.timeout_s,
                              stall_timeout_s=self.opts.stall_timeout_s, retries=0)
        run_request(self.target.client, None, self.served, "_cache", text, opts, round=0, warmup=True,
                    sleep=self.sleep)
        self.extra_requests += 1
        self.info.extra["prompt_cache"]["unmeasured_requests"] = self.extra_requests
        self.target.last_text = text

    def _text_for(self, prompt: Any, warmup: bool) -> tuple[str, str | None]:
        text, nonce = prompt.text, None
        if warmup:
            return text, None
        if self.mechanism == "prime":
            self._unmeasured(text)
        elif self.mechanism == "order" and self.target.last_text == text:
            self._unmeasured(CACHE_FLUSH_PROMPT)
        elif self.mechanism == "nonce":
            nonce = secrets.token_hex(4)
            text = f"[{nonce}]\n{text}"
        return text, nonce

    def _paired(self, text: str) -> Any:
        """The server's own timings of the same prompt on its native route: a second request,
        after the timed one and outside it, cold like it (--server-timings)."""
        if self.mechanism == "nonce":
            text = f"[{secrets.token_hex(4)}]\n{text}"
        gen = self.opts.gen
        try:
            timings = self.target.runtime.paired_timings(self.served, text, gen.max_tokens, gen.temperature, gen.seed)
        except Exception:  # noqa: BLE001 - a server's junk never fails a request
            timings = None
        if timings is not None:
            self.target.last_text = text
        return timings

    def dropped(self, cell: Any) -> None:
        """An open-loop arrival that found the in-flight cap full: recorded, never sent."""
        cap = self.plan.load.get("max_in_flight")
        s = Sample(model=self.m.key, prompt_id=cell.prompt.id, round=cell.round, warmup=False, ok=False,
                   error="dropped", error_detail=f"arrived while {cap} requests were in flight (the cap): not sent",
                   started_at=utcnow(), stream=self.opts.gen.stream, scenario=dict(cell.coords))
        self.writer.add(s)
        self.reporter.sample(s)

    def request(self, prompt: Any, round_: int, warmup: bool, coords: dict[str, Any] | None = None,
                session: int = 0) -> Sample:
        text, nonce = self._text_for(prompt, warmup)
        s = run_request(self.target.client, self.target.counter, self.served, prompt.id, text, self.opts,
                        round=round_, warmup=warmup, sleep=self.sleep,
                        server_timings=self.target.runtime.response_timings)
        self.target.last_text = text
        if self.job.server_timings and s.ok and not warmup and s.server is None:
            s.server = self._paired(prompt.text)
        s.model, s.cache_nonce, s.scenario, s.session = self.m.key, nonce, dict(coords or {}), session
        if s.resolved_model:
            self.info.resolved_id = s.resolved_model
        self.writer.add(s)
        self.reporter.sample(s)
        return s

    def stop_after(self, s: Sample, consecutive: int, remaining: int) -> bool:
        """After a failed request: should this model stop? (sets status and reason when so)"""
        if s.error == "unknown_model":
            self.info.status, self.info.reason = "skipped", f"unknown model: {s.error_detail}"
        elif (self.target.embedded is not None or s.error in SERVER_GONE_ERRORS) and self.target.died():
            self.info.status = "failed"
            self.info.reason = f"{self.target.gone}; the remaining {remaining} requests of {self.m.key} were skipped"
        elif consecutive >= self.plan.max_consecutive_failures:
            self.info.status = "failed"
            self.info.reason = (f"gave up after {consecutive} consecutive failed requests "
                                f"(last: {s.error}: {s.error_detail})")
        else:
            return False
        self.writer.save()
        return True


# A failure of these kinds may mean the server itself is gone: check before the next request.
SERVER_GONE_ERRORS = {"connection", "truncated", "stall", "timeout"}


def _load(target: Target, served: str, job: _Job) -> str | None:
    """Have the runtime load the model (timed; downloaded first when it is missing and the user
    said --download) and tell its facts; why not, if it cannot."""
    info = job.info
    try:
        try:
            load_s = target.runtime.ensure_loaded(served)
        except NotDownloaded as e:
            if not (job.download and e.can_download):
                info.extra["not_downloaded"] = {"size_bytes": e.size_bytes}
                return str(e)
            try:
                _download(target, served, e, job)
            except BenchError as d:
                return str(d)
            load_s = target.runtime.ensure_loaded(served)
    except BenchError as e:
        return f"the runtime could not load '{served}': {e}"
    facts = model_facts(target, served)
    license_ = facts.pop("license", None)
    if license_ and not info.license:
        info.license = str(license_)[:200]
    info.extra.update(facts)
    if load_s is not None:
        info.extra["load_s"] = load_s
    return None


def _download(target: Target, served: str, missing: NotDownloaded, job: _Job) -> None:
    """Download a missing model (the user said --download); the time it took goes in the run."""
    job.reporter.note(f"{job.m.key}: downloading {served} ({size_text(missing.size_bytes)})")
    shown = [-10.0]

    def progress(percent: float) -> None:
        if percent - shown[0] >= 10 or percent >= 100 > shown[0]:
            shown[0] = percent
            job.reporter.note(f"{job.m.key}: {percent:.0f}% downloaded")

    t0 = time.perf_counter()
    target.runtime.download(served, progress)
    job.info.extra["download"] = {"seconds": time.perf_counter() - t0, "size_bytes": missing.size_bytes}


def _run_model(job: _Job, target: Target) -> None:
    """Warmup, then the scenario's cells, on one target; the model's status at the end."""
    info, writer, key = job.info, job.writer, job.m.key
    info.status, info.reason, info.runtime = "pending", None, target.runtime.name
    why = target.unusable(job.m.name)
    if why:
        info.status, info.reason = "skipped", why
        writer.save()
        return
    served = target.runtime.served_id(job.m.name, target.probe.models) or job.m.name
    if served != job.m.name:
        info.resolved_id = served
    why = _load(target, served, job)
    if why:
        info.status, info.reason = "skipped" if "not_downloaded" in info.extra else "failed", why
        writer.save()
        return
    mr = _ModelRun(job, target, served)
    first_warmup = sum(1 for s in writer.run.samples if s.model == key and s.warmup)
    session = job.cells[0].session if job.cells else 0
    for i in range(job.plan.warmup):
        s = mr.request(WARMUP_PROMPT, first_warmup + i, True, session=session)
        if not s.ok and mr.stop_after(s, 0, len(job.cells)):
            return
    stopped = False

    def stop(s: Sample, consecutive: int, remaining: int) -> bool:
        nonlocal stopped
        stopped = mr.stop_after(s, consecutive, remaining)
        return stopped

    job.scenario.drive(job.cells, lambda c: mr.request(c.prompt, c.round, False, c.coords, c.session), stop,
                       lambda c: mr.request(c.prompt, c.round, True, c.coords, c.session), mr.dropped)
    if stopped:
        return
    mine = [s for s in writer.run.samples if s.model == key and not s.warmup]
    if any(s.ok for s in mine):
        info.status = "ok"
    else:
        last = mine[-1] if mine else None
        info.status = "failed"
        info.reason = f"no request succeeded (last: {last.error}: {last.error_detail})" if last else "no requests"
    writer.save()


def log_dir(results_dir: Path) -> Path:
    """Embedded servers' logs, in bench's working folder beside results/."""
    return work_dir(results_dir) / "logs"


def preflight(plan: Plan, run: Run, todo: Mapping[str, list]) -> dict[str, Path]:
    """Check every embedded model that has work before any request; a bad one is failed with
    its one-line reason (the others still run). Returns the model files of the good ones."""
    paths: dict[str, Path] = {}
    for m in plan.models:
        if not (m.embedded and todo[m.key]):
            continue
        try:
            paths[m.key] = embedded.preflight(m.key, m.path or "", m.chat_format, plan.embedded.settings())
        except BenchError as e:
            run.models[m.key].status, run.models[m.key].reason = "failed", str(e)
    return paths


def _run_embedded(job: _Job, model_path: Path, env: Mapping[str, str]) -> None:
    """Start the model's own llama.cpp server, run its cells, and always stop the server."""
    run, m, info = job.writer.run, job.m, job.info
    log = log_dir(job.writer.path.parent) / f"{run.run_id}-{embedded.safe_name(m.key)}.log"
    server = embedded.LocalServer(m.name, model_path, chat_format=m.chat_format,
                                  settings=job.plan.embedded.settings(), log_path=log)
    runtime = embedded.EmbeddedRuntime(server, m.path)
    try:
        try:
            runtime.start()
        except embedded.ServerStartError as e:
            info.status, info.reason = "failed", str(e)
            return
        ep = Endpoint(name=f"{embedded.EMBEDDED}:{m.key}", base_url=server.base_url)
        target = open_target(ep.name, ep, env, job.plan.timeout_s, runtime=runtime)
        target.probe.server = f"{server.facts.runtime} (embedded)"
        run.endpoints = [e for e in run.endpoints if e.name != ep.name] + [target.probe]
        job.writer.save()
        _run_model(job, target)
    finally:
        runtime.stop()
        if server.facts is not None:
            info.extra.update(server.facts.as_dict())
        job.writer.save()
