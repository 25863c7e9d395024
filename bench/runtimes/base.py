"""The runtime protocol: what bench asks of a kind of server, whoever serves the model.

A runtime is one class in one module of this package, registered in ``bench.runtimes.RUNTIMES``.
Detection asks each registered runtime, in order, whether an endpoint is one of its own (by
routes only it answers); the generic OpenAI-compatible runtime, last, takes any endpoint.
Everything has a safe default here, so a runtime implements only what its server can tell.
Servers are untrusted: a runtime never raises for what a server says (it returns None, an empty
answer or a reason), and bounds what it keeps.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import psutil

from bench.errors import BenchError
from bench.results.schema import ServerTimings
from bench.runtimes.http import Connection, HTTPFailure
from bench.runtimes.process import MemorySampler
from bench.util.bounded import excerpt

EMBEDDED_NAME = "embedded"  # the runtime bench starts itself for models with a GGUF path
MAX_MODELS = 10_000
MAX_ID_CHARS = 200


@dataclass
class ModelList:
    """What GET /models said. ``status`` None: the server could not be reached."""

    status: int | None = None
    server: str | None = None  # its Server header, untrusted text (bounded)
    ids: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class MemoryReading:
    """Resident memory while a model ran, and where the figure comes from."""

    before_bytes: int = 0
    peak_bytes: int = 0
    source: str = ""


@dataclass
class OwnServer:
    """A server a runtime found or started: its OpenAI base URL, how it came to be, how to stop it."""

    base_url: str
    how: str  # "found at ..." / "started by bench via ..."
    stop: Callable[[], None] = lambda: None
    version: str | None = None  # what bench started, when it knows
    handle: Any = None  # the runtime's own object for it (foundry-local-sdk's manager): catalog, downloads


class NotDownloaded(BenchError):
    """The server would serve this model once it is downloaded. Models are gigabytes: bench
    downloads one only when told to (``bench collect --download``), and says how large it is."""

    def __init__(self, model: str, size_bytes: int | None, size_source: str, can_download: bool, how: str):
        self.model, self.size_bytes, self.can_download = model, size_bytes, can_download
        size = f"{size_text(size_bytes)} per {size_source}" if size_bytes else f"size not reported by {size_source}"
        todo = f"bench collect --download downloads it (or: {how})" if can_download else how
        super().__init__(f"{model} is not downloaded ({size}); bench downloads models only when asked: {todo}")


def size_text(n: int | None) -> str:
    if not n:
        return "size unknown"
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} KB" if n >= 1e3 else f"{n} bytes"


# What Runtime.model_facts may return (keys of ModelInfo.extra; figures in bytes and seconds):
#   disk_bytes, runtime_memory_bytes (resident memory the runtime reports for the model),
#   vram_bytes, license (SPDX id or title: bench.runtimes.license), license_raw, quantization,
#   parameters (int), context_length (int), digest, family, format;
#   sources: {fact: where it came from, e.g. "Ollama /api/ps"}; unknown: {fact: why it is not known}.
FACT_KEYS = ("disk_bytes", "runtime_memory_bytes", "vram_bytes", "license", "license_raw", "quantization",
             "parameters", "context_length", "digest", "family", "format")


def merge_facts(*parts: dict[str, Any]) -> dict[str, Any]:
    """Facts from several answers: later parts win; ``sources`` and ``unknown`` are merged, and a
    fact that became known leaves ``unknown``."""
    out: dict[str, Any] = {}
    sources: dict[str, Any] = {}
    unknown: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key == "sources" and isinstance(value, dict):
                sources.update(value)
            elif key == "unknown" and isinstance(value, dict):
                unknown.update(value)
            elif value is not None:
                out[key] = value
    unknown = {k: v for k, v in unknown.items() if k not in out}
    if sources:
        out["sources"] = {k: v for k, v in sources.items() if k in out}
    if unknown:
        out["unknown"] = unknown
    return out


@contextlib.contextmanager
def watch_process(pid: int, source: str) -> Iterator[MemoryReading | None]:
    """The resident memory of a process tree while the block runs (None: the process is gone)."""
    try:
        sampler = MemorySampler(pid)
    except psutil.Error:
        yield None
        return
    reading = MemoryReading(before_bytes=sampler.rss(), source=source)
    sampler.start()
    try:
        yield reading
    finally:
        reading.peak_bytes = sampler.stop()


class Runtime:
    """One kind of server. Subclasses set ``name`` and override what their server can tell."""

    name: ClassVar[str] = ""
    label: ClassVar[str] = ""  # how pages name it
    finds_own_server: ClassVar[bool] = False  # an endpoint of this runtime may omit base_url

    @classmethod
    def own_server(cls, options: dict[str, str]) -> "OwnServer":
        """Find a running server of this runtime on this machine, or start one with ``options``
        (the endpoint's ``options:`` in bench.yaml; finds_own_server)."""
        raise NotImplementedError

    def __init__(self, conn: Connection | None):
        self.conn = conn
        self.own: OwnServer | None = None  # set when the runtime found or started the server itself
        self.note: str | None = None  # why this runtime may be the wrong one (forced, but answers unlike it)

    # -- which runtime is this endpoint?
    @classmethod
    def detect(cls, conn: Connection) -> bool:
        """True when the endpoint is one of this runtime's (asked in RUNTIMES order)."""
        return False

    # -- identity
    def version(self) -> str | None:
        return None

    # -- models
    def list_models(self, timeout_s: float = 10.0) -> ModelList:
        """GET /models on the configured origin: bounded, never raises."""
        out = ModelList()
        if self.conn is None:
            return out
        try:
            answer = self.conn.get("/models", timeout_s=timeout_s)
        except HTTPFailure as e:
            out.status, out.error = e.status, str(e)
            return out
        out.status, out.server = answer.status, answer.server
        items = answer.data.get("data") if isinstance(answer.data, dict) else None
        if not isinstance(items, list):
            out.error = f"GET /models returned something unexpected: {excerpt(answer.data)}"
            return out
        out.ids = sorted({m["id"][:MAX_ID_CHARS] for m in items[:MAX_MODELS]
                          if isinstance(m, dict) and isinstance(m.get("id"), str)})
        return out

    def served_id(self, name: str, listed: list[str]) -> str | None:
        """The id the server serves for a user's name, or None when it serves no such model.
        An empty list means the server does not say: the name is taken as it is."""
        if not listed or name in listed:
            return name
        return None

    def loaded(self) -> list[str] | None:
        """The ids the server has loaded now (None: it does not say, or has no such notion)."""
        return None

    def ensure_loaded(self, model_id: str) -> float | None:
        """Load the model if the server needs that before inference; seconds it took, or None.
        Raises NotDownloaded for a model the server knows but has not downloaded."""
        return None

    def download(self, model_id: str, progress: Callable[[float], None]) -> None:
        """Download a model ensure_loaded said was not downloaded (``progress`` gets percent done)."""
        raise BenchError(f"bench cannot download models for {self.label or self.name or 'this server'}: "
                         "download it with the server's own tool, then run again")

    # -- facts
    def count_tokens(self, model_id: str, text: str) -> int | None:
        """Tokens in ``text`` by the server's own tokenizer, when it has one to ask."""
        return None

    def model_facts(self, model_id: str) -> dict[str, Any]:
        """What the selection framework needs that the server knows: disk_bytes, license,
        quantization, parameters, ... (keys of ModelInfo.extra)."""
        return {}

    @contextlib.contextmanager
    def watch_memory(self) -> Iterator[MemoryReading | None]:
        """Resident memory while the block runs (None: this runtime cannot see it)."""
        yield None

    # -- the server's own view of a request (stored beside bench's figures, never mixed in)
    def response_timings(self, raw: Any) -> ServerTimings | None:
        """The server's timings carried by a measured response itself: ``raw`` is the ``timings``
        object of its last chunk (or body), as llama.cpp's server sends it; None when absent."""
        return None

    def paired_timings(self, model_id: str, text: str, max_tokens: int, temperature: float,
                       seed: int | None) -> ServerTimings | None:
        """The server's timings of a second request with the same prompt on its native route,
        sent outside the timed ones (only with ``bench collect --server-timings``): for runtimes
        that report timings only there (Ollama, LM Studio). None: it has no such route."""
        return None

    # -- life
    def died(self) -> str | None:
        """After a failed request: why the server is gone, or None if it still answers."""
        return None

    def stopped_answering(self) -> str | None:
        """Why the endpoint no longer answers /models (unreachable, or a gateway error), or None."""
        if self.conn is None:
            return None
        again = self.list_models(timeout_s=3)
        if again.status is None or again.status in (502, 503, 504):
            return f"the server at {self.conn.shown} stopped answering mid-run ({again.error})"
        return None

    def start(self) -> None:
        """Start the server (runtimes that run one themselves)."""

    def stop(self) -> None:
        """Stop what start() started; safe to call twice."""
