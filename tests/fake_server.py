"""Scripted OpenAI-compatible HTTP server for tests (standard library only).

Tests start it on 127.0.0.1 with an ephemeral port and point a benchmark
client at ``server.url``.  Every response is driven by a :class:`Script`, so
timing (TTFT, inter-chunk gaps) and faults (HTTP errors, truncated streams,
stalls, servers that ignore ``max_tokens``) are exact and reproducible.

In-process use::

    with FakeServer({"m": Script(ttft_s=0.2, itl_s=0.01)}) as srv:
        client = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0)
        ...
        srv.enqueue("m", Script(status=429, retry_after=1))   # next request only
        srv.down = True                                       # 503 to everything

Subprocess use (no shared GIL with the client under test)::

    python tests/fake_server.py --port 0 --config script.json
    # script.json: {"models": {"m": {"ttft_s": 0.2, "itl_s": 0.01}},
    #               "tokenize": true, "api_key": null,
    #               "queue": {"m": [{"status": 429}]}}        # "queue" optional
    # prints exactly one line "READY http://127.0.0.1:PORT/v1", serves until
    # SIGTERM/SIGINT.

Endpoints
---------
GET  /v1/models            model list (default scripts + models with queued scripts)
POST /v1/chat/completions  streamed (SSE) or plain chat completion, see Script
POST /extras/tokenize      only with tokenize=True.  Body {"input": text}
                           ("prompt" or "text" also accepted) -> {"tokens":
                           [0..n-1], "count": n} with n = len(text.split()),
                           i.e. one token per whitespace-separated word, which
                           matches the default "tokN " pieces exactly.
routes[(METHOD, PATH)]     extra routes a test adds (a runtime's own API): a (status, JSON)
                           pair, or a function of the request body returning one; JSON may be
                           Raw(bytes, content_type) for a body that is not JSON.
anything else              404 with an OpenAI-style error body.

Control endpoints (for the subprocess mode; not recorded, never "down"):
POST /_fake/down {"down": bool}; POST /_fake/set_model {"model", "script"};
POST /_fake/enqueue {"model", "scripts": [...]}; GET /_fake/requests.

Stream layout (stream=true)
---------------------------
At receipt: HTTP headers, then a chunk with delta {"role": "assistant",
"content": ""} (not a token: do not take TTFT from it).  Then token chunks:
reasoning pieces first (delta.reasoning_content), then content pieces
(delta.content), ``tokens_per_chunk`` pieces per chunk.  Token chunk k
(0-based, reasoning and content counted together) is written at the absolute
deadline ``t_received + ttft_s + k * itl_s`` (perf_counter clock; t_received
is taken right after the request line is read and is what ``requests[i]
["t_received"]`` holds).  Then a chunk with an empty delta and finish_reason,
then (if stream_options.include_usage and send_usage) a chunk with
"choices": [] and "usage", then "data: [DONE]".  With include_usage every
other chunk carries "usage": null, as OpenAI does.  Streams use chunked
transfer encoding (Script.chunked=False: no framing, body ends at EOF) and
"Connection: close".

max_tokens (or max_completion_tokens) caps the emitted tokens, reasoning +
content counted together; if the cap cuts the script short the finish_reason is
"length".  Script.ignore_max_tokens=True disables the cap.
usage.completion_tokens = number of tokens emitted (reasoning + content).

truncate_after=N / stall_after=N count token chunks (reasoning chunks count
too).  truncate: right after chunk N the connection is closed, with no
finish_reason and no [DONE] (with chunked encoding the terminating zero-length
chunk is missing too, so httpx raises RemoteProtocolError; with chunked=False
the body just ends).  stall: after chunk N nothing more is sent for stall_s
seconds, then the connection is closed the same way.  For stream=false the
same options drop the connection without any response (truncate: at the time
chunk N would have been sent; stall: stall_s later).

Errors
------
Script.status != 200 -> immediate reply with that status and
{"error": {"message", "type", "param", "code"}} (+ "Retry-After" when
retry_after is set).  Unknown model -> 404 code "model_not_found".  With
api_key set, /v1/* requests without "Authorization: Bearer <api_key>" -> 401.
``down = True`` -> 503 to every request.  Client disconnects are swallowed.

Note: the openai client retries 429/5xx by itself; use max_retries=0 in tests
that count requests.

Hostile modes (tests/test_hostile_server.py)
--------------------------------------------
A server is other people's software; these modes make it lie, pour or send
credentials elsewhere.  Each one replaces the normal reply to a chat request.

Script.sse=[piece, ...]      streamed reply (status 200, text/event-stream, the
                             Script's framing) whose body is exactly these
                             pieces, written verbatim one write each at
                             t_received + ttft_s + k * itl_s: nothing is added
                             (no role chunk, no [DONE]), so a test controls
                             line endings (CRLF), comments, multi-line data,
                             "event: error", and where writes split an event.
Script.body="..."            any request: reply ``status`` with exactly this
                             body and Content-Type ``content_type`` (default
                             application/json), e.g. HTML under HTTP 200.
Script.flood_bytes=N         reply ``status`` and then pour N-byte writes with
                             no framing (body ends at close) until the client
                             goes away or ``flood_s`` (default 20 s) passes:
                             bounded, so a failing test cannot hang.  Streamed
                             requests get one valid content event per write,
                             each carrying N bytes of "x" (flood_line=True: one
                             endless "data: xxx..." line that never ends);
                             plain requests get "x" * N writes after a
                             ``{"choices": [`` prefix.
FakeServer.tokenize_reply=obj  with tokenize=True: /extras/tokenize answers
                             exactly this JSON (e.g. {"count": -5}).
FakeServer.redirects={path: (status, location)}
                             any request to that path (query string ignored)
                             gets that status with "Location: location" and an
                             empty body; it is recorded like any request.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import signal
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Script", "FakeServer"]

# The last SPIN_S seconds before a deadline are waited out with a
# yielding spin (time.sleep(0) releases the GIL) instead of one long sleep.
SPIN_S = 0.001
# Longest single sleep, so stalled/slow handlers notice stop() promptly.
SLICE_S = 0.05


@dataclass
class Script:
    tokens: list[str] = field(default_factory=lambda: [f"tok{i} " for i in range(20)])
    ttft_s: float = 0.0
    itl_s: float = 0.0
    tokens_per_chunk: int = 1
    send_usage: bool = True
    prompt_tokens: int = 7
    finish_reason: str = "stop"
    status: int = 200
    retry_after: float | None = None
    truncate_after: int | None = None
    stall_after: int | None = None
    stall_s: float = 30.0
    empty: bool = False
    reasoning: list[str] = field(default_factory=list)
    resolved_model: str | None = None
    ignore_max_tokens: bool = False
    chunked: bool = True  # stream framing: chunked transfer encoding, or plain body ended by close
    # A prompt cache, as vLLM's prefix caching or llama.cpp's: messages this server has seen before
    # (any earlier request) are answered with this TTFT instead of ttft_s. None: no cache.
    cached_ttft_s: float | None = None
    # A server of limited capacity (streams only): with more than `capacity` streams in flight every
    # stream's gaps between tokens stretch in proportion (n streams: itl_s * n / capacity), as a
    # batching server's do once its compute is saturated. None: no limit.
    capacity: int | None = None
    # Noise, as real machines have: every timing of a request is scaled by a log-normal factor drawn
    # once per server start (sd noise_run: warm state, thermal state, other load) times one drawn
    # per request (sd noise_request), from the server's seed (FakeServer(seed=...)).
    noise_run: float = 0.0
    noise_request: float = 0.0
    # Fields a runtime adds to the last chunk (streams) or the body, e.g. llama-server's "timings".
    final_extra: dict[str, Any] | None = None
    # Hostile modes (see the module docstring).
    sse: list[str] | None = None
    body: str | None = None
    content_type: str = "application/json"
    flood_bytes: int = 0
    flood_line: bool = False
    flood_s: float = 20.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Script":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown Script field(s): {sorted(unknown)}")
        return cls(**d)


@dataclass
class Raw:
    """A route's reply that is not JSON: the bytes as they are (Prometheus text, NDJSON lines)."""

    body: bytes
    content_type: str = "text/plain"


class _Headers(dict):
    """A plain dict of request headers with lower-cased keys; lookups ignore case."""

    def __getitem__(self, k):
        return super().__getitem__(k.lower())

    def get(self, k, default=None):
        return super().get(k.lower(), default)

    def __contains__(self, k):
        return isinstance(k, str) and super().__contains__(k.lower())


_ERROR_KINDS = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("Forbidden.", "invalid_request_error", "forbidden"),
    404: ("Not found.", "invalid_request_error", "not_found"),
    408: ("Request timed out.", "server_error", "timeout"),
    413: ("Request too large.", "invalid_request_error", "request_too_large"),
    422: ("Unprocessable request.", "invalid_request_error", None),
    429: ("Rate limit reached. Please try again later.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", "bad_gateway"),
    503: ("The server is overloaded or not ready yet.", "server_error", "service_unavailable"),
    504: ("Gateway timeout.", "server_error", "gateway_timeout"),
}


def _error_body(status: int, message: str | None = None, etype: str | None = None, code: Any = None) -> dict:
    dm, dt, dc = _ERROR_KINDS.get(
        status, (f"HTTP {status}", "server_error" if status >= 500 else "invalid_request_error", None)
    )
    return {"error": {"message": message or dm, "type": etype or dt, "param": None, "code": code if code is not None else dc}}


class _Stopped(Exception):
    pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # never join handler threads in server_close()
    request_queue_size = 1024  # listen backlog: many concurrent clients must not hit SYN retries
    allow_reuse_address = True

    fake: "FakeServer"

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, _Stopped)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeOpenAI/1.0"
    sys_version = ""
    server: _HTTPServer

    # ---- plumbing -------------------------------------------------------
    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.server.fake._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, False)

    def handle(self):
        try:
            super().handle()
        except (OSError, _Stopped):
            self.close_connection = True

    def parse_request(self):
        # Called right after the request line has been read: the receipt time.
        self._t0 = time.perf_counter()
        return super().parse_request()

    def log_message(self, format, *args):  # silence default logging
        pass

    def do_GET(self):
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    # ---- helpers ----------------------------------------------------------
    def _read_body(self) -> bytes:
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        return self.rfile.read(n) if n > 0 else b""

    def _send_json(self, status: int, obj: Any, extra: dict[str, str] | None = None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str | None = None, etype: str | None = None,
                    code: Any = None, retry_after: float | None = None):
        extra = {}
        if retry_after is not None:
            ra = float(retry_after)
            extra["Retry-After"] = str(int(ra)) if ra.is_integer() else repr(ra)
        self._send_json(status, _error_body(status, message, etype, code), extra)

    def _sleep_until(self, deadline: float):
        fake = self.server.fake
        stop = fake._stop_event
        while True:
            if stop.is_set():
                raise _Stopped()
            rem = deadline - time.perf_counter()
            if rem <= 0:
                return
            if rem > SPIN_S:
                time.sleep(min(rem - SPIN_S, SLICE_S))
            else:
                time.sleep(0)

    # ---- routing ----------------------------------------------------------
    def _dispatch(self):
        fake = self.server.fake
        t0 = getattr(self, "_t0", time.perf_counter())
        raw = self._read_body()
        try:
            body = json.loads(raw) if raw else None
            bad_json = False
        except ValueError:
            body, bad_json = None, True
        path = self.path.split("?", 1)[0]
        method = self.command

        if path.startswith("/_fake/"):
            return self._control(path, method, body)

        fake._record({
            "path": self.path,
            "method": method,
            "headers": _Headers((k.lower(), v) for k, v in self.headers.items()),
            "body": body,
            "t_received": t0,
        })

        if fake.down:
            return self._send_error(503)
        if path in fake.redirects:
            status, location = fake.redirects[path]
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        is_v1 = path == "/v1" or path.startswith("/v1/")
        if is_v1 and fake.api_key is not None:
            if self.headers.get("Authorization") != f"Bearer {fake.api_key}":
                return self._send_error(401)
        if method == "GET" and path == "/v1/models" and ("GET", path) not in fake.routes:  # a route may replace it
            return self._send_json(200, {
                "object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "fake"}
                         for n in fake._model_names()],
            })
        if method == "POST" and path == "/v1/chat/completions":
            if bad_json or not isinstance(body, dict):
                return self._send_error(400, "Request body is not a valid JSON object.")
            return self._chat(body, t0)
        if method == "POST" and path == "/extras/tokenize" and fake.tokenize:
            if bad_json or not isinstance(body, dict):
                return self._send_error(400, "Request body is not a valid JSON object.")
            text = body.get("input", body.get("prompt", body.get("text", "")))
            if not isinstance(text, str):
                return self._send_error(400, "'input' must be a string.")
            if fake.tokenize_reply is not None:
                return self._send_json(200, fake.tokenize_reply)
            n = len(text.split())
            return self._send_json(200, {"tokens": list(range(n)), "count": n})
        if (method, path) in fake.routes:  # a runtime's own routes: (status, JSON) or body -> (status, JSON)
            reply = fake.routes[(method, path)]
            status, obj = reply(body) if callable(reply) else reply
            if isinstance(obj, Raw):
                return self._send_raw(status, obj.body, obj.content_type)
            return self._send_json(status, obj)
        return self._send_error(404, f"Unknown endpoint: {method} {path}", code="not_found")

    def _control(self, path: str, method: str, body: Any):
        fake = self.server.fake
        try:
            if path == "/_fake/down" and method == "POST":
                fake.down = bool(body["down"])
            elif path == "/_fake/set_model" and method == "POST":
                fake.set_model(body["model"], Script.from_dict(body.get("script") or {}))
            elif path == "/_fake/enqueue" and method == "POST":
                fake.enqueue(body["model"], *[Script.from_dict(s) for s in body["scripts"]])
            elif path == "/_fake/requests" and method == "GET":
                with fake._lock:
                    reqs = [dict(r, headers=dict(r["headers"])) for r in fake.requests]
                return self._send_json(200, {"requests": reqs})
            else:
                return self._send_error(404, f"Unknown control endpoint: {path}")
        except (KeyError, TypeError, ValueError) as e:
            return self._send_error(400, f"bad control request: {e!r}")
        return self._send_json(200, {"ok": True})

    # ---- chat completions ---------------------------------------------------
    def _chat(self, body: dict, t0: float):
        fake = self.server.fake
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._send_error(400, "you must provide a model parameter", code="missing_model")
        script = fake._take_script(model)
        if script is None:
            return self._send_error(404, f"The model `{model}` does not exist",
                                    "invalid_request_error", "model_not_found")
        if script.body is not None:
            return self._send_raw(script.status, script.body.encode(), script.content_type)
        if script.flood_bytes > 0:
            return self._flood(script, bool(body.get("stream")))
        if script.sse is not None and body.get("stream"):
            return self._send_sse(script, t0)
        if script.status != 200:
            return self._send_error(script.status, retry_after=script.retry_after)
        seen_key = json.dumps(body.get("messages"), sort_keys=True)
        with fake._lock:
            seen = seen_key in fake._seen_prompts
            fake._seen_prompts.add(seen_key)
        if seen and script.cached_ttft_s is not None:
            script = dataclasses.replace(script, ttft_s=script.cached_ttft_s)
        if script.noise_run or script.noise_request:
            f = fake._noise(model, script)
            script = dataclasses.replace(script, ttft_s=script.ttft_s * f, itl_s=script.itl_s * f)

        n_req = fake._next_id()
        cid = f"chatcmpl-fake-{n_req}"
        created = int(time.time())
        resolved = script.resolved_model or model

        # Token plan: reasoning first, then content, capped by max_tokens.
        reasoning = [] if script.empty else list(script.reasoning)
        content = [] if script.empty else list(script.tokens)
        finish = script.finish_reason
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(limit, int) and not isinstance(limit, bool) and not script.ignore_max_tokens:
            if len(reasoning) + len(content) > limit:
                limit = max(limit, 0)
                reasoning = reasoning[:limit]
                content = content[: limit - len(reasoning)]
                finish = "length"
        n_tokens = len(reasoning) + len(content)
        tpc = max(1, int(script.tokens_per_chunk))
        chunks: list[tuple[str, str]] = []  # (delta key, text)
        for key, pieces in (("reasoning_content", reasoning), ("content", content)):
            for i in range(0, len(pieces), tpc):
                chunks.append((key, "".join(pieces[i:i + tpc])))
        usage = {"prompt_tokens": script.prompt_tokens, "completion_tokens": n_tokens,
                 "total_tokens": script.prompt_tokens + n_tokens}

        if body.get("stream"):
            so = body.get("stream_options") or {}
            include_usage = isinstance(so, dict) and bool(so.get("include_usage"))
            return self._stream(script, chunks, finish, usage, include_usage, cid, created, resolved, t0)

        # Non-streamed: answer when the last chunk would have been sent.
        n_chunks = max(1, len(chunks))
        cut = script.truncate_after if script.truncate_after is not None else script.stall_after
        if cut is not None:
            self._sleep_until(t0 + script.ttft_s + max(0, min(cut, n_chunks) - 1) * script.itl_s)
            if script.truncate_after is None:
                self._sleep_until(time.perf_counter() + script.stall_s)
            self.close_connection = True
            return
        self._sleep_until(t0 + script.ttft_s + (n_chunks - 1) * script.itl_s)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
        if reasoning:
            message["reasoning_content"] = "".join(reasoning)
        resp: dict[str, Any] = {
            "id": cid, "object": "chat.completion", "created": created, "model": resolved,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
        }
        if script.send_usage:
            resp["usage"] = usage
        resp.update(script.final_extra or {})
        self._send_json(200, resp)

    # ---- hostile modes --------------------------------------------------------
    def _send_raw(self, status: int, data: bytes, content_type: str):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, script: Script, t0: float):
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        if script.chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        sock = self.connection
        for k, piece in enumerate(script.sse or []):
            data = piece.encode()
            self._sleep_until(t0 + script.ttft_s + k * script.itl_s)
            if not data:
                continue  # a zero-length chunk would end chunked framing
            sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if script.chunked else data)
        if script.chunked:
            sock.sendall(b"0\r\n\r\n")

    def _flood(self, script: Script, stream: bool):
        self.close_connection = True
        self.send_response(script.status)
        self.send_header("Content-Type", "text/event-stream" if stream else script.content_type)
        self.send_header("Connection", "close")
        self.end_headers()
        n = script.flood_bytes
        if not stream:
            first, piece = b'{"choices": [', b"x" * n
        elif script.flood_line:
            first, piece = b"data: ", b"x" * n
        else:
            event = {"choices": [{"index": 0, "delta": {"content": "x" * n}, "finish_reason": None}]}
            first, piece = b"", b"data: " + json.dumps(event).encode() + b"\n\n"
        sock = self.connection
        sock.sendall(first)
        deadline = time.perf_counter() + script.flood_s
        while time.perf_counter() < deadline:
            if self.server.fake._stop_event.is_set():
                raise _Stopped()
            sock.sendall(piece)

    def _stream(self, script: Script, chunks, finish, usage, include_usage, cid, created, resolved, t0):
        self.close_connection = True
        chunked = script.chunked
        sock = self.connection

        def write(payload: bytes):
            data = b"data: " + payload + b"\n\n"
            if chunked:
                data = b"%x\r\n%s\r\n" % (len(data), data)
            sock.sendall(data)

        def chunk(delta: dict, finish_reason=None) -> bytes:
            obj: dict[str, Any] = {
                "id": cid, "object": "chat.completion.chunk", "created": created, "model": resolved,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                obj["usage"] = None
            if finish_reason is not None:
                obj.update(script.final_extra or {})
            return json.dumps(obj).encode()

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        write(chunk({"role": "assistant", "content": ""}))

        fake = self.server.fake
        with fake._lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            due = t0 + script.ttft_s
            for k, (key, text) in enumerate(chunks):
                if script.truncate_after is not None and k >= script.truncate_after:
                    return
                if script.stall_after is not None and k >= script.stall_after:
                    self._sleep_until(time.perf_counter() + script.stall_s)
                    return
                payload = chunk({key: text})  # encode before waiting: nothing but the write after the deadline
                if k and script.capacity:  # the next gap, stretched by the streams in flight now
                    due += script.itl_s * max(1.0, fake.in_flight / script.capacity)
                elif k:
                    due = t0 + script.ttft_s + k * script.itl_s
                self._sleep_until(due)
                write(payload)
        finally:
            with fake._lock:
                fake.in_flight -= 1
        n = len(chunks)
        if script.truncate_after is not None and n >= script.truncate_after:
            return
        if script.stall_after is not None and n >= script.stall_after:
            self._sleep_until(time.perf_counter() + script.stall_s)
            return
        if not chunks:  # empty stream: finish at the TTFT deadline
            self._sleep_until(t0 + script.ttft_s)
        write(chunk({}, finish))
        if include_usage and script.send_usage:
            write(json.dumps({"id": cid, "object": "chat.completion.chunk", "created": created,
                              "model": resolved, "choices": [], "usage": usage}).encode())
        write(b"[DONE]")
        if chunked:
            sock.sendall(b"0\r\n\r\n")


class FakeServer:
    """Scripted OpenAI-compatible server running in a background thread."""

    def __init__(self, models: dict[str, Script] | None = None, tokenize: bool = False,
                 api_key: str | None = None, host: str = "127.0.0.1", port: int = 0, seed: int = 0):
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._run_factor: dict[str, float] = {}
        self._models: dict[str, Script] = dict(models or {})
        self._queues: dict[str, deque[Script]] = {}
        self.tokenize = tokenize
        self.api_key = api_key
        self.host = host
        self._port_req = port
        self.requests: list[dict] = []
        self._seen_prompts: set[str] = set()
        self.down = False
        self.redirects: dict[str, tuple[int, str]] = {}
        self.tokenize_reply: Any = None
        self.routes: dict[tuple[str, str], Any] = {}
        self.in_flight = 0  # streams being sent now (Script.capacity reads it)
        self.max_in_flight = 0
        self._ids = 0
        self._conns: set[socket.socket] = set()
        self._stop_event = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle ---------------------------------------------------------
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeServer not started")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> "FakeServer":
        if self._httpd is not None:
            return self
        self._stop_event.clear()
        httpd = _HTTPServer((self.host, self._port_req), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"FakeServer:{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        httpd = self._httpd
        if httpd is None:
            return
        self._stop_event.set()  # sleeping/stalled handlers bail out within SLICE_S
        httpd.shutdown()
        with self._lock:
            conns = list(self._conns)
        for c in conns:  # wake handlers blocked reading idle keep-alive connections
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- scripting ---------------------------------------------------------
    def set_model(self, name: str, script: Script):
        with self._lock:
            self._models[name] = script

    def enqueue(self, name: str, *scripts: Script):
        with self._lock:
            self._queues.setdefault(name, deque()).extend(scripts)

    # ---- internals -------------------------------------------------------
    def _model_names(self) -> list[str]:
        with self._lock:
            names = list(self._models)
            names += [n for n, q in self._queues.items() if q and n not in self._models]
        return names

    def _take_script(self, name: str) -> Script | None:
        with self._lock:
            q = self._queues.get(name)
            if q:
                return q.popleft()
            return self._models.get(name)

    def _noise(self, model: str, script: Script) -> float:
        """This request's timing factor: the model's per-start factor times a per-request one."""
        with self._lock:
            if model not in self._run_factor:
                self._run_factor[model] = math.exp(self._rng.gauss(0.0, script.noise_run))
            return self._run_factor[model] * math.exp(self._rng.gauss(0.0, script.noise_request))

    def _next_id(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def _record(self, entry: dict):
        with self._lock:
            self.requests.append(entry)

    def _track(self, conn: socket.socket, add: bool):
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Scripted OpenAI-compatible fake server")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--config", help='JSON: {"models": {name: {Script fields}}, "tokenize": bool, '
                                     '"api_key": str|null, "queue": {name: [{Script fields}, ...]}}')
    ap.add_argument("--api-key", default=None)
    args = ap.parse_args(argv)

    cfg: dict[str, Any] = {"models": {"fake-model": {}}}
    if args.config:
        with open(args.config) as f:
            cfg = json.load(f)
    models = {name: Script.from_dict(d or {}) for name, d in (cfg.get("models") or {}).items()}
    srv = FakeServer(models, tokenize=bool(cfg.get("tokenize", False)),
                     api_key=args.api_key if args.api_key is not None else cfg.get("api_key"),
                     host=args.host, port=args.port)
    for name, lst in (cfg.get("queue") or {}).items():
        srv.enqueue(name, *[Script.from_dict(d or {}) for d in lst])

    done = threading.Event()

    def _on_signal(signum, frame):
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    srv.start()
    sys.stdout.write(f"READY {srv.url}\n")
    sys.stdout.flush()
    try:
        while not done.wait(0.2):
            pass
    finally:
        srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(_main())
