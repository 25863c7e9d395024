"""One chat exchange, timed with perf_counter_ns (retries and token counting: ``bench.measure.request``).

Definitions (docs: site_src/methodology.md):

* TTFT: request sent -> first chunk that carries non-empty content or reasoning content. A role-only
  or empty first chunk does not count.
* Inter-token gaps (``itl_s``): the gaps between consecutive content-bearing chunks after the first;
  TTFT is not one of them. When a server packs several tokens into a chunk, the per-token figure
  (TPOT) is derived from token counts in ``bench.results.stats``.
* End-to-end: request sent -> the end of the response.
* A stream that ends without a ``finish_reason`` is a failed request ("truncated"); an answer
  with no content is failed ("empty"); a silence longer than the stall timeout cuts the stream
  ("stall"); a request longer than the request timeout is cut ("timeout"); a malformed answer
  fails ("protocol"), and so does one past bench's output bounds ("runaway", see bench.measure.stream).

The timed request is bench's own. To an ``http://`` endpoint it goes on bench's HTTP/1.1 event
loop (``bench.measure.wire``: one thread for every request in flight, timestamps taken as bytes
arrive); otherwise (https, a proxy, ``BENCH_HTTP_CLIENT=httpx``) it is an httpx request sent on the
openai client's connection pool. Either way the answer is read as raw bytes by
``bench.measure.stream``, so nothing a server sends can grow without bound, and the same
Measurement comes out. The openai client does the rest (listing models). Redirects are never
followed: the key goes only to the configured origin.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl, urlencode

import openai

from bench.config import Endpoint, Generation, redact_url
from bench.errors import ResponseError
from bench.measure import wire
from bench.measure.stream import ChatStreamReader, Limits, Usage, parse_completion
from bench.runtimes import Connection
from bench.util.bounded import check_encoding, excerpt, read_bounded, read_prefix

RETRYABLE = {"rate_limited", "server_error"}
_MAX_DETAIL = 500
DRAIN_S = 1.0  # after [DONE], how long the rest of a body may take before the connection is dropped


def make_client(endpoint: Endpoint, env: dict[str, str] | Any) -> openai.OpenAI:
    # Local servers need no key; the openai client insists on a non-empty one.
    key = env.get(endpoint.api_key_env) or "not-needed"
    # Redirects are never followed: the key (and the prompt) go only to the configured origin,
    # and a redirect answer is recorded as a failed request that names where it pointed.
    http = openai.DefaultHttpxClient(follow_redirects=False)
    # A query string (Azure's api-version, a proxy's key) goes on every request, not into the path.
    base, _, query = endpoint.base_url.partition("?")
    return openai.OpenAI(
        base_url=base, api_key=key, max_retries=0, http_client=http,
        default_query=dict(parse_qsl(query)) if query else None,
    )


def http_client(client: openai.OpenAI) -> Any:
    """The httpx client under an openai client (httpx for openai 1.x, its fork httpx2 since 3.x:
    same API). Its connection pool is shared with the openai client."""
    return client._client


def _short(text: Any) -> str:
    s = str(text)
    return s if len(s) <= _MAX_DETAIL else s[:_MAX_DETAIL] + "…"


def _caused_by_timeout(exc: BaseException | None) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if "Timeout" in type(exc).__name__:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _retry_after(headers: Any) -> float | None:
    try:
        value = headers.get("retry-after") if headers is not None else None
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError, OverflowError):
        return None


def classify_status(status: int, body: Any, message: str) -> str:
    text = json.dumps(body).lower() if body is not None else ""
    text += " " + message.lower()
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status == 404 and ("model" in text) and any(
        w in text for w in ("not found", "not_found", "does not exist", "unknown", "no such")
    ):
        return "unknown_model"
    if status == 404 and "model_not_found" in text:
        return "unknown_model"
    return "client_error"


@dataclass
class Measurement:
    """What one HTTP attempt observed (internal; becomes a Sample)."""

    error: str | None = None
    detail: str | None = None
    http_status: int | None = None
    retry_after_s: float | None = None
    ttft_ns: int | None = None
    e2e_ns: int | None = None
    chunk_times: list[int] = field(default_factory=list)
    output: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    resolved_model: str | None = None
    timings: dict | None = None  # the server's own timings object, when the answer carried one
    elapsed_ns: int = 0  # the attempt's wall time, failures included
    t0_ns: int = 0  # perf_counter_ns when the request was sent
    t_end_ns: int | None = None  # perf_counter_ns when the complete answer had arrived


def redirect_detail(status: int, headers: Any) -> str:
    location = headers.get("location", "") if headers is not None else ""
    return _short(
        f"HTTP {status} redirect to {excerpt(str(location))} not followed: bench sends requests "
        "(and the API key) only to the configured base_url; configure the final address instead"
    )


def _error_message(raw: bytes) -> tuple[Any, str]:
    """(parsed body or None, the server's message) of an HTTP error answer's first bytes."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return None, excerpt(raw)
    err = body.get("error") if isinstance(body, dict) else None
    message = err.get("message") if isinstance(err, dict) else err
    if message is None and isinstance(body, dict):
        message = body.get("message")
    return body, excerpt(message if isinstance(message, str) else raw)


def _record_status(m: Measurement, response: Any, deadline_ns: int) -> None:
    """An HTTP error answer: its status, what kind of failure it is, and Retry-After."""
    status = response.status_code
    m.http_status = status
    m.retry_after_s = _retry_after(response.headers)
    if 300 <= status < 400:
        m.error, m.detail = "client_error", redirect_detail(status, response.headers)
        return
    body, message = _error_message(read_prefix(response, deadline_ns=deadline_ns))
    m.error = classify_status(status, body, message)
    m.detail = _short(f"HTTP {status}: {message}")


# ----------------------------------------------------------------------------- one timed exchange


class _Watchdog:
    """Cuts an exchange at the request timeout by shutting its socket down, which wakes a blocked
    read (closing it from another thread does not). The socket is known from the moment the
    connection opens (httpx ``trace`` extension) or, on a reused keep-alive connection, from the
    response headers: until those arrive there, the read timeout (stall) bounds each read."""

    def __init__(self, timeout_s: float):
        self.fired_at: int | None = None  # perf_counter_ns when the timeout cut the connection
        self._lock = threading.Lock()
        self._stream: Any = None
        self._timer = threading.Timer(timeout_s, self._fire)
        self._timer.daemon = True

    def trace(self, name: str, info: dict) -> None:
        if name in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            self.attach(info.get("return_value"))

    def attach(self, stream: Any) -> None:
        with self._lock:
            self._stream = stream if stream is not None else self._stream
            if self.fired_at is not None:
                _shutdown(self._stream)

    def _fire(self) -> None:
        with self._lock:
            self.fired_at = time.perf_counter_ns()
            _shutdown(self._stream)

    def restart(self, seconds: float) -> None:
        """A shorter deadline from now (draining a finished answer): cut then, not as a timeout."""
        self._timer.cancel()
        self._timer = threading.Timer(seconds, lambda: _shutdown(self._stream))
        self._timer.daemon = True
        self._timer.start()

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()


def _close(response: Any) -> None:
    try:
        if response is not None:
            response.close()
    except Exception:  # noqa: BLE001 - a broken connection may fail to close cleanly
        pass


def _shutdown(stream: Any) -> None:
    """Wake a read blocked on this network stream's socket (best effort, any thread)."""
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except Exception:  # noqa: BLE001 - already closed, or not a socket
        pass


def _headers(client: openai.OpenAI, accept: str) -> dict[str, str]:
    headers = {k: v for k, v in client.default_headers.items() if isinstance(v, str)}
    auth = getattr(client, "auth_headers", None)
    headers.update(auth if isinstance(auth, dict) else {"Authorization": f"Bearer {client.api_key}"})
    # Raw bytes are read: no compression (a compressed answer is refused, see bench.measure.stream).
    headers.update({"Accept": accept, "Accept-Encoding": "identity", "Content-Type": "application/json"})
    return headers


def connection(client: openai.OpenAI) -> Connection:
    """The openai client's origin, key and connection pool, for a runtime's own requests."""
    base = str(client.base_url).rstrip("/")
    headers = {k: v for k, v in _headers(client, "application/json").items()
               if k not in ("Accept", "Accept-Encoding", "Content-Type")}
    return Connection(base_url=base, http=http_client(client), headers=headers, query=dict(client.default_query or {}),
                      transport_errors=_http_errors(client), shown=redact_url(base))


def _send(client: openai.OpenAI, body: dict, accept: str, read_s: float, dog: _Watchdog) -> tuple[int, Any]:
    """Send one chat request on the openai client's pool; (t0 in perf_counter_ns, response with
    headers read and body unread). t0 is taken once the request is built, right before sending."""
    http = http_client(client)
    request = http.build_request(
        "POST", str(client.base_url).rstrip("/") + "/chat/completions", json=body,
        params=client.default_query or None, headers=_headers(client, accept), timeout=read_s,
        extensions={"trace": dog.trace},
    )
    t0 = time.perf_counter_ns()
    response = http.send(request, stream=True, follow_redirects=False)
    dog.attach(response.extensions.get("network_stream"))
    return t0, response


def _http_errors(client: openai.OpenAI) -> tuple[type[BaseException], ...]:
    """httpx's (or httpx2's) own exceptions: transport failures, all wrapped by the library."""
    cls = next((c for c in type(http_client(client)).__mro__ if c.__name__ == "Client"), None)
    module = __import__(cls.__module__.split(".")[0]) if cls is not None else None
    names = ("HTTPError", "StreamError", "InvalidURL")
    return tuple(getattr(module, n) for n in names if hasattr(module, n)) or (OSError,)


def _record_transport(m: Measurement, e: BaseException, started: bool, elapsed_ns: int,
                      timeout_s: float, stall_s: float | None) -> None:
    cause = f"{type(e).__name__}: {e}"
    if _caused_by_timeout(e) and (stall_s is None or elapsed_ns >= timeout_s * 1e9 * 0.99):
        m.error, m.detail = "timeout", f"no complete answer within {timeout_s:g} s"
    elif _caused_by_timeout(e):
        m.error = "stall"
        m.detail = f"silent for more than {stall_s:g} s" + (" mid-stream" if m.chunk_times else "")
    elif started and stall_s is not None:
        m.error, m.detail = "truncated", _short(f"the connection broke mid-stream: {cause}")
    else:
        m.error, m.detail = "connection", _short(cause)


def _exchange(client: openai.OpenAI, body: dict, accept: str, timeout_s: float, stall_s: float | None,
              consume: Callable[[Measurement, Any, int], Any]) -> Measurement:
    """Send, then ``consume(m, response, deadline_ns)`` a 2xx body (it sets ``m.t_end_ns`` when the
    answer is complete, and may return the byte iterator to drain). Every failure is recorded in
    the Measurement: nothing a server does raises. stall_s None: not a stream (one timeout)."""
    m = Measurement()
    m.t0_ns = time.perf_counter_ns()
    timeout_ns = int(timeout_s * 1e9)
    response = None
    with _Watchdog(timeout_s) as dog:
        try:
            m.t0_ns, response = _send(client, body, accept, min(stall_s or timeout_s, timeout_s), dog)
            if response.status_code >= 300:
                _record_status(m, response, m.t0_ns + timeout_ns)
            else:
                check_encoding(response)
                rest = consume(m, response, m.t0_ns + timeout_ns)
                if rest is not None:
                    dog.restart(DRAIN_S)
                    _drain(rest)
        except ResponseError as e:
            m.error, m.detail = e.kind, _short(e.detail)
        except _http_errors(client) as e:
            _record_transport(m, e, response is not None, time.perf_counter_ns() - m.t0_ns, timeout_s, stall_s)
        finally:
            _close(response)
    t_done = time.perf_counter_ns()
    m.elapsed_ns = t_done - m.t0_ns
    # Whatever happened once the watchdog had cut the connection is the timeout's doing.
    cut = dog.fired_at is not None and (m.t_end_ns or t_done) >= dog.fired_at
    if cut or (m.error is None and m.t_end_ns is None):
        m.error, m.detail = "timeout", f"no complete answer within {timeout_s:g} s"
    elif m.error is None and m.t_end_ns is not None:
        m.e2e_ns = m.t_end_ns - m.t0_ns
    return m


# ----------------------------------------------------------------------------- on bench's own loop

_ADDRESSES: dict[tuple[str, int], list[tuple[int, Any]]] = {}


def _wire_target(client: openai.OpenAI) -> tuple[str, int, str] | None:
    """(host, port, request path) when the timed request goes on bench's own loop (``bench.measure.wire``):
    plain http with no proxy for its host. None: httpx (https, proxies, or BENCH_HTTP_CLIENT=httpx)."""
    url = client.base_url
    if url.scheme != "http" or os.environ.get("BENCH_HTTP_CLIENT", "").lower() == "httpx":
        return None
    if urllib.request.getproxies().get("http") and not urllib.request.proxy_bypass(url.host):
        return None
    path = url.raw_path.decode("ascii").split("?", 1)[0].rstrip("/") + "/chat/completions"
    query = client.default_query or {}
    return url.host, url.port or 80, path + ("?" + urlencode(query) if query else "")


def _addresses(host: str, port: int) -> list[tuple[int, Any]]:
    key = (host, port)
    if key not in _ADDRESSES:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        _ADDRESSES[key] = [(family, addr) for family, _, _, _, addr in infos][:8]
    return _ADDRESSES[key]


def _request(client: openai.OpenAI, host: str, port: int, path: str, accept: str, body: bytes) -> bytes:
    shown = f"[{host}]" if ":" in host else host
    headers = {"Host": shown if port == 80 else f"{shown}:{port}", **_headers(client, accept),
               "Content-Length": str(len(body))}
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    head = "\r\n".join(lines)
    if any(c in head for c in "\0") or any("\r" in x or "\n" in x for x in (path, *headers, *headers.values())):
        raise ValueError("a header or the path contains a line break: check the endpoint's api_key_env and base_url")
    return (head + "\r\n\r\n").encode("latin-1") + body


def _exchange_wire(client: openai.OpenAI, target: tuple[str, int, str], body: dict, accept: str,
                   timeout_s: float, stall_s: float | None, sink: Any) -> tuple[Measurement, wire.Job | None]:
    """One exchange on bench's loop: the Measurement (``consume`` of the 2xx body happened on the
    loop, into ``sink``) and the finished job."""
    m = Measurement()
    m.t0_ns = time.perf_counter_ns()
    host, port, path = target
    try:
        request = _request(client, host, port, path, accept, json.dumps(body).encode())
        addresses = _addresses(host, port)
    except (ValueError, UnicodeError) as e:
        m.error, m.detail = "client_error", _short(str(e))
        return m, None
    except OSError as e:
        m.error, m.detail = "connection", _short(f"{type(e).__name__}: {e}")
        return m, None
    job = wire.run(wire.Job(addresses, (host, port), request, sink, timeout_s, stall_s))
    m.t0_ns, m.t_end_ns = job.t0_ns or m.t0_ns, job.t_end_ns
    if job.status is not None and job.status >= 300:
        m.http_status, m.retry_after_s = job.status, _retry_after(job.headers)
        if job.status < 400:
            m.error, m.detail = "client_error", redirect_detail(job.status, job.headers)
        else:
            parsed, message = _error_message(bytes(job.error_body.data) if job.error_body else b"")
            m.error, m.detail = classify_status(job.status, parsed, message), _short(f"HTTP {job.status}: {message}")
        m.t_end_ns = None
    elif job.error is not None:
        kind, detail = job.error
        if kind == "broken":
            kind, detail = ("truncated", f"the connection broke mid-stream: {detail}") if stall_s else ("connection", detail)
        m.error, m.detail = kind, _short(detail)
    m.elapsed_ns = time.perf_counter_ns() - m.t0_ns
    if m.error is None and m.t_end_ns is None:
        m.error, m.detail = "timeout", f"no complete answer within {timeout_s:g} s"
    elif m.error is None:
        m.e2e_ns = m.t_end_ns - m.t0_ns
    return m, job


# ----------------------------------------------------------------------------- streamed and plain


def _params(model: str, messages: list[dict], gen: Generation) -> dict[str, Any]:
    # max_tokens, not max_completion_tokens: llama-cpp-python and others ignore the latter.
    params: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "max_tokens": gen.max_tokens,
        "temperature": gen.temperature,
    }
    if gen.seed is not None:
        params["seed"] = gen.seed
    return params


def _drain(chunks: Any, limit: int = 64 * 1024) -> None:
    """After [DONE], read what is left of the body (little, normally) so the connection goes
    back to the pool; a body that goes on is dropped with its connection."""
    seen = 0
    try:
        for data in chunks:
            seen += len(data)
            if seen > limit:
                break
    except Exception:  # noqa: BLE001 - the answer is complete; a broken tail is not a failure
        pass


def measure_stream(
    client: openai.OpenAI, model: str, messages: list[dict], gen: Generation, timeout_s: float, stall_s: float
) -> Measurement:
    """One streamed request. The read timeout is the stall timeout (the longest silence allowed
    between bytes, or the request timeout if shorter); the request timeout is a watchdog."""
    reader = ChatStreamReader(Limits.for_max_tokens(gen.max_tokens))
    body = {**_params(model, messages, gen), "stream": True, "stream_options": {"include_usage": True}}

    def consume(m: Measurement, response: Any, deadline_ns: int) -> Any:
        m.chunk_times = reader.chunk_times  # the same list: a stall knows whether content came
        chunks = response.iter_raw()
        if reader.read(chunks, deadline_ns):  # False: bytes arrived past the deadline
            m.t_end_ns = time.perf_counter_ns()
        return chunks if reader.done else None

    target = _wire_target(client)
    if target is not None:
        m, _ = _exchange_wire(client, target, body, "text/event-stream", timeout_s, stall_s, reader)
        if m.error == "stall" and reader.chunk_times:
            m.detail += " mid-stream"
    else:
        m = _exchange(client, body, "text/event-stream", timeout_s, stall_s, consume)
    m.chunk_times, m.output, m.reasoning = reader.chunk_times, reader.output, reader.reasoning
    m.finish_reason, m.usage, m.resolved_model = reader.finish_reason, reader.usage, reader.resolved_model
    m.timings = reader.timings
    if m.chunk_times:
        m.ttft_ns = m.chunk_times[0] - m.t0_ns
    if m.error is None and m.finish_reason is None:
        m.error, m.detail = "truncated", "the stream ended without a finish_reason"
    if m.error is None and not m.chunk_times:
        m.error, m.detail = "empty", f"no content (finish_reason {m.finish_reason})"
    return m


def measure_plain(
    client: openai.OpenAI, model: str, messages: list[dict], gen: Generation, timeout_s: float,
    *, limits: Limits | None = None,
) -> Measurement:
    """Non-streamed: only end-to-end time can be measured (to the last byte of the body).
    ``limits``: the answer's bounds, by default those of ``gen.max_tokens``."""
    limits = limits or Limits.for_max_tokens(gen.max_tokens)
    answer: list[Any] = []

    def consume(m: Measurement, response: Any, deadline_ns: int) -> None:
        raw = read_bounded(response, limits.max_body_bytes, deadline_ns)
        m.t_end_ns = time.perf_counter_ns()
        answer.append(parse_completion(raw, limits))

    body, target = {**_params(model, messages, gen), "stream": False}, _wire_target(client)
    if target is not None:
        sink = wire.BodySink(limits.max_body_bytes)
        m, job = _exchange_wire(client, target, body, "application/json", timeout_s, None, sink)
        if m.error is None:
            try:
                answer.append(parse_completion(bytes(sink.data), limits))
            except ResponseError as e:
                m.error, m.detail = e.kind, _short(e.detail)
    else:
        m = _exchange(client, body, "application/json", timeout_s, None, consume)
    if answer:
        a = answer[0]
        m.output, m.reasoning, m.finish_reason, m.usage, m.resolved_model = (
            a.content, a.reasoning, a.finish_reason, a.usage, a.model)
        m.timings = a.timings
    if m.error is None and not m.output and not m.reasoning:
        m.error, m.detail = "empty", f"no content (finish_reason {m.finish_reason})"
    return m
