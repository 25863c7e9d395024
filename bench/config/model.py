"""The configuration's types: bench.yaml's schema and the resolved :class:`Plan`.

A :class:`Plan` is everything the runner needs, with secrets held only as the *name* of the
environment variable that carries them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bench.config.profiles import Profile
from bench.config.urls import check_base_url, redact_url

if TYPE_CHECKING:
    from bench.runtimes.embedded import Settings

DEFAULT_CONFIG_NAME = "bench.yaml"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# A silent stream never hangs a run, even when bench.yaml sets no stall timeout.
DEFAULT_STALL_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 300.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Strict):
    """An OpenAI-compatible server. The key is never stored: only the variable's name."""

    name: str
    base_url: str | None = Field(None, description="required unless the runtime finds or starts its own server")
    api_key_env: str = DEFAULT_KEY_ENV
    runtime: str | None = Field(None, description="force a runtime instead of detecting it (see bench.runtimes)")
    options: dict[str, str] = Field(default_factory=dict, description=(
        "settings for a server the runtime starts itself (foundry: catalog_url, model_cache_dir)"))

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        return None if v is None else check_base_url(v)

    @model_validator(mode="after")
    def _url_or_own_server(self) -> "Endpoint":
        from bench import runtimes

        if self.base_url is None and not runtimes.finds_own_server(self.runtime):
            own = ", ".join(runtimes.self_serving()) or "none"
            raise ValueError(f"endpoint '{self.name}' needs a base_url like http://HOST:PORT/v1 (only a runtime "
                             f"that finds or starts its own server may omit it: {own})")
        return self

    @field_validator("runtime")
    @classmethod
    def _runtime_name(cls, v: str | None) -> str | None:
        from bench import runtimes

        if v is not None and v not in runtimes.names():
            raise ValueError(f"unknown runtime '{v}'; known: {', '.join(runtimes.names())}")
        return v

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(
                "api_key_env is the NAME of an environment variable (like OPENAI_API_KEY), "
                "not the key itself"
            )
        return v


class Model(_Strict):
    """A model as the server knows it, plus what the selection framework needs about it."""

    name: str
    endpoint: str | None = None
    label: str | None = None
    license: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    notes: str | None = None
    # Served by the embedded runtime (llama-cpp-python) instead of an endpoint:
    path: str | None = Field(None, description="GGUF file, or builtin:NAME")
    chat_format: str | None = None
    quantization: str | None = None
    parameters: int | None = None

    @property
    def embedded(self) -> bool:
        return self.path is not None

    @property
    def key(self) -> str:
        return self.label or self.name


class Prompt(_Strict):
    id: str
    text: str
    rubric: dict[str, Any] | None = None


class Generation(_Strict):
    max_tokens: int = Field(150, ge=1)
    temperature: float = Field(0.0, ge=0, allow_inf_nan=False)
    seed: int | None = 42
    stream: bool = True


class Embedded(_Strict):
    """Options of the embedded llama.cpp servers."""

    threads: int | None = Field(None, ge=1, description="default: physical cores")
    n_ctx: int = Field(2048, ge=256)
    n_batch: int = Field(512, ge=1, description="prompt tokens per llama_decode call")
    extra_bufts: Literal["auto", "on", "off"] = Field(
        "auto", description="llama.cpp extra buffer types (weight repacking, AMX); auto: off on AMX CPUs")
    flash_attn: bool = False

    def settings(self) -> "Settings":
        from bench.runtimes.embedded import Settings

        return Settings(threads=self.threads, n_ctx=self.n_ctx, n_batch=self.n_batch,
                        extra_bufts=self.extra_bufts, flash_attn=self.flash_attn)


MACHINE_NAME = r"^[\w][\w .:@+()/-]*$"  # a machine's name: 1-64 such characters


class Config(_Strict):
    endpoints: list[Endpoint] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    prompts: list[Prompt | str] | None = None
    prompts_file: str | None = None
    generation: Generation = Field(default_factory=Generation)
    rounds: int = Field(3, ge=1)
    warmup: int = Field(1, ge=0)
    sessions: int = Field(1, ge=1, le=100)
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, allow_inf_nan=False)
    stall_timeout_s: float = Field(DEFAULT_STALL_TIMEOUT_S, gt=0, allow_inf_nan=False)
    retries: int = Field(3, ge=0)
    max_consecutive_failures: int = Field(3, ge=1)
    results_dir: str = "results"
    embedded: Embedded = Field(default_factory=Embedded)
    profiles: dict[str, Profile] = Field(default_factory=dict)
    # cold: no measured request can reuse an earlier request's prompt prefill (methodology.md);
    # warm: each measured request follows an identical unmeasured one, so its prefill is cached.
    prompt_cache: Literal["cold", "warm"] = "cold"
    # service-level objectives for `bench capacity`, e.g. "ttft_p95<=0.5,tps_p50>=20"
    slo: str | None = None
    # runs per machine (the newest) that get a page of their own on the site; older ones are rows
    site_run_pages: int = Field(20, ge=1, le=10_000)
    # this machine's name (runs are grouped and compared by it; default: its hardware fingerprint)
    machine: str | None = Field(None, min_length=1, max_length=64, pattern=MACHINE_NAME)


@dataclass(frozen=True)
class Plan:
    """The resolved benchmark: what to run, where, and how."""

    endpoints: dict[str, Endpoint]
    models: list[Model]
    prompts: list[Prompt]
    generation: Generation
    rounds: int
    warmup: int
    timeout_s: float
    stall_timeout_s: float
    retries: int
    max_consecutive_failures: int
    results_dir: Path
    config_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    embedded: Embedded = field(default_factory=Embedded)
    prompt_cache: str = "cold"
    scenario: str = "sequential"
    load: dict[str, Any] = field(default_factory=dict)  # the scenario's parameters (levels, requests, seed)
    notes: tuple[str, ...] = ()  # what a resume took from the user's config instead of the run file
    machine_name: str | None = None  # bench.yaml's `machine:`
    sessions: int = 1  # repeats of the whole matrix (a fresh embedded server each)

    def endpoint_of(self, model: Model) -> Endpoint:
        return self.endpoints[model.endpoint or next(iter(self.endpoints))]

    @property
    def uses_embedded(self) -> bool:
        return any(m.embedded for m in self.models)

    def snapshot(self) -> dict[str, Any]:
        """The plan as stored in a results file: no secrets, URLs without credentials."""
        return {
            "config_path": self.config_path,
            "overrides": dict(self.overrides),
            "endpoints": [
                {**e.model_dump(), "base_url": redact_url(e.base_url) if e.base_url else None,
                 # resume must then be given the URL again: the stored one lacks what was cut
                 "url_redacted": bool(e.base_url) and redact_url(e.base_url) != e.base_url}
                for e in self.endpoints.values()
            ],
            "models": [m.model_dump(exclude_none=True) for m in self.models],
            "prompts": [p.model_dump(exclude_none=True) for p in self.prompts],
            "generation": self.generation.model_dump(),
            "rounds": self.rounds,
            "warmup": self.warmup,
            "sessions": self.sessions,
            "timeout_s": self.timeout_s,
            "stall_timeout_s": self.stall_timeout_s,
            "retries": self.retries,
            "max_consecutive_failures": self.max_consecutive_failures,
            "embedded": self.embedded.model_dump(),
            "prompt_cache": self.prompt_cache,
            "scenario": self.scenario,
            "load": dict(self.load),
        }
