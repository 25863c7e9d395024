"""Where a model's requests go: an endpoint (or an embedded server), its runtime, its client.

The runner asks a :class:`Target` everything runtime-specific through the runtime protocol
(``bench.runtimes.base.Runtime``): which models the server lists, which id serves a name, how
to count tokens, the memory it uses, whether it died.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import openai

from bench import runtimes
from bench.config import Endpoint, redact_url
from bench.measure.client import connection, make_client
from bench.measure.request import TokenCounter
from bench.results.schema import EndpointInfo, ModelInfo
from bench.runtimes import OwnServer, Runtime

MAX_VERSION_CHARS = 100  # a server's version string is untrusted text: kept short
MAX_CLOSE_CANDIDATES = 2000  # names compared for 'closest' (difflib is quadratic per pair)


def probe_endpoint(name: str, endpoint: Endpoint, client: openai.OpenAI, timeout_s: float = 10,
                   runtime: Runtime | None = None) -> EndpointInfo:
    """GET /models: reachable? what does the server list? which runtime is it? (never raises; bounded)"""
    if runtime is None:
        runtime = runtimes.detect(connection(client), getattr(endpoint, "runtime", None))
    info = EndpointInfo(name=name, base_url=redact_url(endpoint.base_url), reachable=False, runtime=runtime.name,
                        runtime_note=runtime.note)
    listed = runtime.list_models(timeout_s)
    info.server, info.models = listed.server, listed.ids
    if listed.status is None:
        info.error = f"cannot reach {info.base_url}: {listed.error}"
        return info
    # Reachable, even when /models failed (some servers do not implement it), unless a gateway says not.
    info.reachable = listed.status not in (502, 503, 504)
    info.error = listed.error
    if info.reachable:
        with contextlib.suppress(Exception):  # noqa: BLE001 - a version is a nicety, never a failure
            version = runtime.version()
            info.runtime_version = str(version)[:MAX_VERSION_CHARS] if version else None
    return info


def unknown_model_reason(name: str, info: EndpointInfo) -> str:
    have = ", ".join(info.models[:20]) + (" …" if len(info.models) > 20 else "") or "(no models listed)"
    close = [m for m in info.models if name.lower() in m.lower()][:3] or difflib.get_close_matches(
        name, info.models[:MAX_CLOSE_CANDIDATES], n=3, cutoff=0.6)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return f"the server at {info.base_url} does not serve '{name}'{hint}; it has: {have}"


@dataclass
class Target:
    """Where one model's requests go."""

    client: openai.OpenAI
    counter: TokenCounter
    probe: EndpointInfo
    runtime: Runtime
    endpoint: Endpoint | None = None
    own: OwnServer | None = None  # a server the runtime found or started (no base_url was configured)
    gone: str | None = None  # why the server stopped answering, once it has
    last_text: str | None = None  # the last user prompt sent (embedded: the server's cached prefix)

    @property
    def embedded(self) -> bool:
        return self.runtime.name == runtimes.EMBEDDED_NAME

    def died(self) -> str | None:
        """After a failed request: has the server itself gone (crashed, exited, stopped answering)?"""
        self.gone = self.runtime.died() or (self.gone if not self.embedded else None)
        return self.gone

    def unusable(self, name: str) -> str | None:
        """Why a model cannot be measured here before any request (None: go ahead)."""
        if self.gone and self.died():
            return f"{self.gone} (earlier in this run)"
        if not self.probe.reachable:
            return self.probe.error or "endpoint unreachable"
        if self.runtime.served_id(name, self.probe.models) is None:
            return unknown_model_reason(name, self.probe)
        return None

    @contextlib.contextmanager
    def memory(self, info: ModelInfo) -> Iterator[None]:
        """Record the serving processes' resident memory while one model runs (when visible)."""
        with self.runtime.watch_memory() as reading:
            yield
        if reading is not None and info.status == "ok" and reading.peak_bytes:
            info.extra.update(rss_before_bytes=reading.before_bytes, peak_rss_bytes=reading.peak_bytes,
                              memory_source=reading.source)


def open_target(name: str, endpoint: Endpoint, env: Mapping[str, str], timeout_s: float,
                runtime: Runtime | None = None, probe_timeout_s: float = 10) -> Target:
    """Client, runtime (detected, or the one given) and probe for one endpoint. An endpoint without
    a base_url is served by its runtime's own server (found on this machine, or started)."""
    own = None
    if endpoint.base_url is None:
        own = runtimes.own_server(endpoint.runtime or "", endpoint.options)
        endpoint = endpoint.model_copy(update={"base_url": own.base_url})
    client = make_client(endpoint, env)
    conn = connection(client)
    if runtime is None:
        runtime = runtimes.detect(conn, getattr(endpoint, "runtime", None))
    else:
        runtime.conn = conn
    runtime.own = own
    counter = TokenCounter(endpoint, client, env, timeout_s, runtime=runtime)
    return Target(client, counter, probe_endpoint(name, endpoint, client, probe_timeout_s, runtime=runtime), runtime,
                  endpoint=endpoint, own=own)


def model_facts(target: Target, model_id: str) -> dict[str, Any]:
    """The runtime's facts about a model; a runtime that fails to tell gives none."""
    try:
        return dict(target.runtime.model_facts(model_id) or {})
    except Exception:  # noqa: BLE001 - a server's junk never stops a run
        return {}
