"""The results file format: one JSON file per run, raw per-request samples are the truth.

Statistics are computed when a file is loaded (``bench.results.stats``), so a better statistic never
needs a migration. A change to what is *stored* bumps ``SCHEMA_VERSION`` and adds an
``_upgrade_to_N`` step in ``bench.results.store``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bench.results.rubric import RubricResult


def utcnow() -> str:
    """A timestamp as results files store them: ISO 8601, UTC, milliseconds, "Z"."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# History of the format (bump on any change to what is stored; add bench.results.store._upgrade_to_N):
#   1 (bench 0.1.0): first version. Run metadata (git, machine, endpoints, models, config
#     snapshot, workload hash) and per-request samples with TTFT, inter-token gaps, e2e,
#     token counts and their source, output, and every HTTP attempt.
#   2 (bench 0.1.0): quality. Each sample may carry `rubric` (per-check results and score);
#     the run carries `judgements` (LLM judge verdicts: judge model, prompt hash, raw text, score).
#     Upgrading a version-1 file adds `rubric: null` to each sample and `judgements: []`.
#   3 (bench 0.2.0): prompt cache control. `workload.prompt_cache` (cold | warm; in the workload
#     hash) and `sample.cache_nonce` (the marker that kept a measured prompt cold, when one was
#     sent); embedded models record `extra.runtime_settings` (threads, batch, extra buffer types,
#     CPU features). Upgrading a version-2 file sets `prompt_cache: "unknown"` (runs before this
#     version may have measured cached prompts) and keeps its workload hash.
#   4 (bench 0.3.0): runtimes and scenarios. `endpoints[].runtime` / `runtime_version` and
#     `models[].runtime` (which runtime served it: "openai-compatible", "embedded", ...);
#     `workload.scenario` (how requests were scheduled; the default sequential matrix is not in
#     the workload hash, so runs of it stay comparable across versions) and `sample.scenario`
#     (the sample's scenario coordinates, empty for the sequential matrix). Rubric scores are
#     no longer stored: they are computed from the stored outputs on load, like statistics.
#     Upgrading a version-3 file drops stored rubric scores and sets the sequential scenario.
#   5 (bench 0.4.0): server timings. `sample.server` (the server's own account of the request:
#     time to first token, prompt and decode tokens and seconds, load time, and where it came
#     from: the response itself or a paired native request sent outside the timed ones).
#     `endpoints[].runtime_note` (a runtime bench.yaml forced that the endpoint does not answer like).
#     Load scenarios: `workload.scenario` "concurrency" / "rate" with their parameters, the error
#     kind "dropped" (an open-loop arrival over the in-flight cap, never sent).
#     Upgrading a version-4 file sets `server: null`.
#   6 (bench 0.5.0): machines and sessions. `machine.fingerprint` (a hash of the hardware facts
#     that change results: CPU model and features, cores, RAM in GiB, GPUs, OS family, arch) with
#     those facts and `machine.name` (bench.yaml `machine:`): runs are compared by it, not by the
#     hostname hash. `sample.session` (the repeat of the matrix it belongs to, `--sessions`).
#     Upgrading a version-5 file derives the facts its machine record holds (CPU features are
#     unknown) and its fingerprint, and sets `session: 0`.
SCHEMA_VERSION = 6

SEQUENTIAL = {"name": "sequential"}  # the default scenario: one request at a time, rounds x prompts
RunStatus = Literal["running", "complete", "partial", "interrupted"]
TokensSource = Literal["usage", "tokenize", "usage_probe", "chunks"]
# Why a request failed. A failed request never enters latency statistics.
ErrorKind = Literal[
    "truncated",  # stream ended without a finish_reason
    "empty",  # the answer had no content
    "stall",  # the stream was silent for longer than the stall timeout
    "timeout",  # the request took longer than the request timeout
    "rate_limited",  # HTTP 429 after every retry
    "server_error",  # HTTP 5xx after every retry
    "client_error",  # other HTTP 4xx
    "unknown_model",  # the server does not serve this model
    "connection",  # could not connect, or the connection broke
    "protocol",  # the response was not a valid chat completion (malformed JSON, chunk or usage)
    "runaway",  # the response passed bench's bounds (output past 4 x max_tokens, a 1 MiB event, ...)
    "dropped",  # an open-loop arrival found the cap of requests in flight full: never sent, never delayed
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # NaN and infinity are never valid JSON


class Attempt(_Model):
    """One HTTP attempt of a request (429/5xx are retried; every attempt is kept)."""

    error: ErrorKind | None = None
    http_status: int | None = None
    detail: str | None = None
    elapsed_s: float
    retry_after_s: float | None = None


class ServerTimings(_Model):
    """A server's own account of one request, by its own clock (never mixed into bench's figures)."""

    source: str = Field(description="where it came from, e.g. 'llama-server timings in the response', "
                                    "'Ollama /api/chat, a paired request outside the timed ones'")
    paired: bool = Field(False, description="from a second, untimed request with the same prompt, not this one")
    ttft_s: float | None = Field(None, description="the server's time to first token")
    prompt_tokens: int | None = None
    prompt_s: float | None = Field(None, description="prompt processing (prefill) time")
    decode_tokens: int | None = None
    decode_s: float | None = Field(None, description="generation time of decode_tokens")
    load_s: float | None = Field(None, description="model load time within the request, when the server reports it")
    cached_tokens: int | None = Field(None, description="prompt tokens the server took from its cache")


class Sample(_Model):
    """One request of the matrix. Latencies in seconds, measured with perf_counter_ns."""

    model: str
    prompt_id: str
    round: int = Field(description="0-based round; warmup requests count their own rounds")
    warmup: bool
    session: int = Field(0, description="0-based repeat of the whole matrix (bench collect --sessions)")
    ok: bool
    error: ErrorKind | None = None
    error_detail: str | None = None
    started_at: str = Field(description="UTC ISO-8601 time the request was sent")
    stream: bool
    ttft_s: float | None = Field(None, description="request sent -> first chunk with content (streams only)")
    e2e_s: float | None = Field(None, description="request sent -> end of response")
    itl_s: list[float] = Field(default_factory=list, description="gaps between content chunks after the first")
    chunks: int = Field(0, description="content-bearing chunks received")
    completion_tokens: int | None = None
    prompt_tokens: int | None = None
    tokens_source: TokensSource | None = None
    finish_reason: str | None = None
    over_limit: bool = Field(False, description="more completion tokens than max_tokens asked for")
    resolved_model: str | None = None
    output: str = ""
    reasoning: str = ""
    attempts: list[Attempt] = Field(default_factory=list)
    rubric: RubricResult | None = Field(None, exclude=True, description=(
        "rubric checks of the output (successful requests): computed on load from the workload's rubrics, "
        "never stored"))
    scenario: dict[str, Any] = Field(default_factory=dict, description=(
        "the sample's scenario coordinates (e.g. concurrency); empty for the sequential matrix"))
    cache_nonce: str | None = Field(None, description="marker sent before the prompt to keep its prefill cold")
    server: ServerTimings | None = Field(None, description="the server's own timings of this request, when it "
                                                           "reports them")


class Judgement(_Model):
    """One LLM-judge verdict on one distinct response (see bench.quality.annotations)."""

    response_id: str = Field(description="model/prompt_id/sha256-prefix of the output")
    model: str
    prompt_id: str
    judge_model: str
    judge_endpoint: str = Field(description="without credentials or query string")
    judge_resolved_id: str | None = None
    prompt_version: int
    prompt_hash: str
    raw: str = Field(description="the judge's verdict text, untrusted")
    score: int | None = Field(None, description="1-5, or null when the verdict could not be parsed")
    error: str | None = None
    judged_at: str


class GitInfo(_Model):
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None


class Machine(_Model):
    hostname_hash: str | None = Field(None, description="sha256 prefix of the hostname (not the name); not used "
                                                        "to compare runs: many CI runners and images share one")
    os: str
    python: str
    cpu: str | None = None
    cores_physical: int | None = None
    cores_logical: int | None = None
    ram_bytes: int | None = None
    gpus: list[str] = Field(default_factory=list)
    name: str | None = Field(None, description="the user's name for this machine (bench.yaml `machine:`)")
    os_family: str | None = Field(None, description="Linux, Darwin, Windows (not the kernel build)")
    arch: str | None = Field(None, description="x86_64, arm64, ...")
    ram_gib: int | None = Field(None, description="RAM rounded to the nearest GiB (totals drift by a few MB)")
    cpu_features: list[str] | None = Field(None, description=(
        "the CPU features that change inference speed (avx2, avx512f, amx_int8, neon, ...); null: not known"))
    fingerprint: str | None = Field(None, description=(
        "sha256 prefix of cpu, cpu_features, cores, ram_gib, gpus, os_family and arch: equal = same hardware"))


class EndpointInfo(_Model):
    name: str
    base_url: str = Field(description="without credentials or query string")
    reachable: bool
    server: str | None = Field(None, description="the Server header, untrusted text")
    models: list[str] = Field(default_factory=list, description="model ids the server listed")
    error: str | None = None
    runtime: str | None = Field(None, description="the runtime bench detected (or was told) serves this endpoint")
    runtime_version: str | None = Field(None, description="its version as the server reports it, untrusted text")
    runtime_note: str | None = Field(None, description="why the runtime may be wrong: bench.yaml forced one the "
                                                       "endpoint does not answer like")


class ModelInfo(_Model):
    name: str = Field(description="the model id sent to the server")
    endpoint: str
    runtime: str | None = Field(None, description="the runtime that served the model")
    status: Literal["pending", "ok", "skipped", "failed"] = "pending"
    reason: str | None = None
    resolved_id: str | None = Field(None, description="the model id the server answered with")
    license: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    notes: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="runtime facts (memory, disk, ...)")


class Workload(_Model):
    hash: str = Field(description="sha256 of prompts + generation params: equal hash = comparable runs")
    prompts: list[dict[str, Any]]
    generation: dict[str, Any]
    prompt_cache: Literal["cold", "warm", "unknown"] = Field(
        "unknown", description="cold: no measured prompt reused a cached prefill; unknown: recorded before bench controlled it")
    scenario: dict[str, Any] = Field(default_factory=lambda: {"name": "sequential"}, description=(
        "how requests were scheduled: name and parameters (in the hash unless it is the sequential matrix)"))


class Run(_Model):
    schema_version: int = SCHEMA_VERSION
    run_id: str
    status: RunStatus
    started_at: str
    ended_at: str | None = None
    bench_version: str
    git: GitInfo | None = None
    machine: Machine
    endpoints: list[EndpointInfo] = Field(default_factory=list)
    models: dict[str, ModelInfo] = Field(default_factory=dict, description="keyed by model label")
    workload: Workload
    config: dict[str, Any]
    samples: list[Sample] = Field(default_factory=list)
    judgements: list[Judgement] = Field(default_factory=list)


def json_schema() -> dict[str, Any]:
    schema = Run.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = f"bench results file, schema_version {SCHEMA_VERSION}"
    return schema


def schema_text() -> str:
    import json

    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":  # python -m bench.results.schema > bench/results/schemas/run.schema.json
    print(schema_text(), end="")
