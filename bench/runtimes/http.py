"""How a runtime talks to its server outside the measured requests: small JSON requests to the
configured origin only, bounded in bytes and time, following no redirect (a key goes nowhere
else), on the same connection pool as the measured requests."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

from bench.errors import ResponseError
from bench.util.bounded import excerpt, read_bounded

MAX_JSON_BYTES = 4 << 20  # an answer to a runtime's question larger than this is not an answer
MAX_LINE_BYTES = 64 << 10  # one line of a streamed progress answer


class HTTPFailure(Exception):
    """A runtime's request failed: not reachable (``status`` None), an HTTP error, or junk."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


@dataclass
class Answer:
    status: int
    server: str | None  # the Server header, untrusted (bounded, quoted)
    data: Any


@dataclass
class Connection:
    """One endpoint's origin: ``base_url`` is the OpenAI-compatible base (``.../v1``)."""

    base_url: str
    http: Any  # an httpx client (httpx or its fork httpx2: same API), redirects off
    headers: dict[str, str] = field(default_factory=dict)  # Authorization when a key is set: never shown
    query: dict[str, str] = field(default_factory=dict)
    transport_errors: tuple[type[BaseException], ...] = (OSError,)
    shown: str = ""  # the URL as messages may show it (credentials, query and fragment cut)

    @property
    def root(self) -> str:
        """The server's root: the base URL without a trailing ``/v1``."""
        base = self.base_url.rstrip("/")
        return base[:-3] if base.endswith("/v1") else base

    def request(self, method: str, path: str, *, body: Any = None, root: bool = False, timeout_s: float = 10.0,
                max_bytes: int = MAX_JSON_BYTES, ok_only: bool = True) -> Answer:
        """``path`` below the base URL (or below the root); the answer's JSON, or HTTPFailure."""
        url = (self.root if root else self.base_url.rstrip("/")) + path
        headers = {**self.headers, "Accept": "application/json", "Accept-Encoding": "identity"}
        try:
            request = self.http.build_request(method, url, json=body, params=self.query or None, headers=headers,
                                              timeout=timeout_s)
            response = self.http.send(request, stream=True, follow_redirects=False)
            try:
                server = excerpt(response.headers.get("server") or "") or None
                if ok_only and response.status_code != 200:
                    raise HTTPFailure(f"{method} {path} answered HTTP {response.status_code}", response.status_code)
                raw = read_bounded(response, max_bytes, time.perf_counter_ns() + int(timeout_s * 1e9))
            finally:
                response.close()
        except self.transport_errors as e:
            raise HTTPFailure(f"{type(e).__name__}: {excerpt(str(e))}") from None
        except ResponseError as e:
            raise HTTPFailure(f"{method} {path} returned something unexpected: {excerpt(str(e))}",
                              response.status_code) from None
        try:
            data = json.loads(raw) if raw else None
        except (ValueError, RecursionError):
            raise HTTPFailure(f"{method} {path} did not answer JSON: {excerpt(raw)}", response.status_code) from None
        return Answer(response.status_code, server, data)

    def get_text(self, path: str, *, root: bool = False, timeout_s: float = 10.0,
                 max_bytes: int = MAX_JSON_BYTES) -> str:
        """GET a text answer (Prometheus metrics): bounded, decoded leniently; HTTPFailure otherwise."""
        url = (self.root if root else self.base_url.rstrip("/")) + path
        headers = {**self.headers, "Accept": "text/plain", "Accept-Encoding": "identity"}
        try:
            request = self.http.build_request("GET", url, params=self.query or None, headers=headers, timeout=timeout_s)
            response = self.http.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code != 200:
                    raise HTTPFailure(f"GET {path} answered HTTP {response.status_code}", response.status_code)
                raw = read_bounded(response, max_bytes, time.perf_counter_ns() + int(timeout_s * 1e9))
            finally:
                response.close()
        except self.transport_errors as e:
            raise HTTPFailure(f"{type(e).__name__}: {excerpt(str(e))}") from None
        except ResponseError as e:
            raise HTTPFailure(f"GET {path} returned something unexpected: {excerpt(str(e))}") from None
        return raw.decode("utf-8", errors="replace")

    def get(self, path: str, **kw: Any) -> Answer:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any, **kw: Any) -> Answer:
        return self.request("POST", path, body=body, **kw)

    def stream_lines(self, path: str, body: Any, *, root: bool = False, timeout_s: float = 3600.0,
                     max_line: int = MAX_LINE_BYTES) -> Iterator[bytes]:
        """POST, then the answer's lines as they come (newline-delimited JSON progress, such as
        Ollama's pull): each line bounded, the whole within ``timeout_s``; HTTPFailure otherwise."""
        url = (self.root if root else self.base_url.rstrip("/")) + path
        headers = {**self.headers, "Accept": "application/x-ndjson", "Accept-Encoding": "identity"}
        deadline = time.monotonic() + timeout_s
        try:
            request = self.http.build_request("POST", url, json=body, params=self.query or None, headers=headers,
                                              timeout=min(timeout_s, 300.0))
            response = self.http.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code != 200:
                    raise HTTPFailure(f"POST {path} answered HTTP {response.status_code}", response.status_code)
                pending = b""
                for data in response.iter_raw():
                    pending += data
                    *lines, pending = pending.split(b"\n")
                    yield from (line for line in lines if line.strip())
                    if len(pending) > max_line:
                        raise HTTPFailure(f"POST {path} sent a line longer than {max_line} bytes")
                    if time.monotonic() > deadline:
                        raise HTTPFailure(f"POST {path} took longer than {timeout_s:.0f} s")
                if pending.strip():
                    yield pending
            finally:
                response.close()
        except self.transport_errors as e:
            raise HTTPFailure(f"{type(e).__name__}: {excerpt(str(e))}") from None

