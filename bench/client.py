"""One chat request, timed with perf_counter_ns, with bounded retries.

Definitions (docs: site_src/methodology.md):

* TTFT: request sent -> first chunk that carries non-empty content or reasoning content. A role-only
  or empty first chunk does not count.
* Inter-token gaps (``itl_s``): the gaps between consecutive content-bearing chunks after the first;
  TTFT is not one of them. When a server packs several tokens into a chunk, the per-token figure
  (TPOT) is derived from token counts in ``bench.stats``.
* End-to-end: request sent -> the end of the response.
* A stream that ends without a ``finish_reason`` is a failed request ("truncated"); an answer
  with no content is failed ("empty"); a silence longer than the stall timeout cuts the stream
  ("stall"); a request longer than the request timeout is cut ("timeout").
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qsl

import openai

from bench.config import Endpoint, Generation
from bench.schema import Attempt, Sample
from bench.store import utcnow
from bench.stream import read_bounded

MAX_TOKENIZE_BYTES = 1 << 20  # a tokenize answer larger than this is not a tokenizer

RETRYABLE = {"rate_limited", "server_error"}
_MAX_DETAIL = 500


_sent = threading.local()


def _mark_sent(request: Any) -> None:
    """httpx request hook: the moment the request leaves the client's request building.

    Timing from here (not from the openai call) keeps the client library's own request
    construction (a few ms) out of TTFT and end-to-end latency.
    """
    _sent.ns = time.perf_counter_ns()


def make_client(endpoint: Endpoint, env: dict[str, str] | Any) -> openai.OpenAI:
    # Local servers need no key; the openai client insists on a non-empty one.
    key = env.get(endpoint.api_key_env) or "not-needed"
    # Redirects are never followed: the key (and the prompt) go only to the configured origin,
    # and a redirect answer is recorded as a failed request that names where it pointed.
    http_client = openai.DefaultHttpxClient(
        event_hooks={"request": [_mark_sent], "response": []}, follow_redirects=False
    )
    # A query string (Azure's api-version, a proxy's key) goes on every request, not into the path.
    base, _, query = endpoint.base_url.partition("?")
    return openai.OpenAI(
        base_url=base, api_key=key, max_retries=0, http_client=http_client,
        default_query=dict(parse_qsl(query)) if query else None,
    )


def http_client(client: openai.OpenAI) -> Any:
    """The httpx client under an openai client (httpx for openai 1.x, its fork httpx2 since 3.x:
    same API). Its connection pool is shared with the openai client."""
    return client._client


def _start_time(fallback_ns: int) -> int:
    sent = getattr(_sent, "ns", None)
    return sent if sent is not None and sent >= fallback_ns else fallback_ns


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
    except (TypeError, ValueError):
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
    usage: Any = None
    resolved_model: str | None = None
    elapsed_ns: int = 0  # the attempt's wall time, failures included


def _record_status(m: Measurement, e: openai.APIStatusError) -> None:
    """An HTTP error answer: its status, what kind of failure it is, and Retry-After."""
    m.http_status = e.status_code
    m.error = classify_status(e.status_code, e.body, e.message)
    m.detail = _short(e.message)
    headers = getattr(e.response, "headers", None)
    m.retry_after_s = _retry_after(headers)
    if 300 <= e.status_code < 400:
        m.detail = redirect_detail(e.status_code, headers)


def redirect_detail(status: int, headers: Any) -> str:
    location = headers.get("location", "") if headers is not None else ""
    return _short(
        f"HTTP {status} redirect to {str(location)[:200]!r} not followed: bench sends requests "
        "(and the API key) only to the configured base_url; configure the final address instead"
    )


def _shutdown(response: Any) -> None:
    """Wake a read blocked on this response's socket (best effort, any thread)."""
    import socket as _socket

    try:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if sock is not None:
            sock.shutdown(_socket.SHUT_RDWR)
            return
    except Exception:  # noqa: BLE001 - fall back to closing
        pass
    try:
        response.close()
    except Exception:  # noqa: BLE001
        pass


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


def _delta_reasoning(delta: Any) -> str:
    extra = getattr(delta, "model_extra", None) or {}
    value = getattr(delta, "reasoning_content", None) or extra.get("reasoning_content") or extra.get("reasoning")
    return value if isinstance(value, str) else ""


def measure_stream(
    client: openai.OpenAI, model: str, messages: list[dict], gen: Generation, timeout_s: float, stall_s: float
) -> Measurement:
    m = Measurement()
    timed_out = threading.Event()
    holder: dict[str, Any] = {}

    def on_timeout() -> None:
        # Closing the response from another thread does not wake a blocked read; shutting the
        # socket down does, so the request ends at the timeout, not at the next stall check.
        timed_out.set()
        stream = holder.get("stream")
        if stream is not None:
            _shutdown(stream.response)

    timeout_ns = int(timeout_s * 1e9)
    watchdog = threading.Timer(timeout_s, on_timeout)
    watchdog.daemon = True
    out_parts: list[str] = []
    reasoning_parts: list[str] = []
    t0 = time.perf_counter_ns()
    watchdog.start()
    try:
        stream = client.chat.completions.create(
            **_params(model, messages, gen),
            stream=True,
            stream_options={"include_usage": True},
            # A read timeout is the longest silence allowed between bytes: the stall timeout
            # (or the request timeout, if shorter, for a server that never sends headers).
            timeout=min(stall_s, timeout_s),
        )
        holder["stream"] = stream
        t0 = _start_time(t0)
        for chunk in stream:
            t = time.perf_counter_ns()
            if chunk.model:
                m.resolved_model = chunk.model
            if getattr(chunk, "usage", None) is not None:
                m.usage = chunk.usage
            for choice in chunk.choices or []:
                delta = choice.delta
                text = (delta.content or "") if delta is not None else ""
                rtext = _delta_reasoning(delta) if delta is not None else ""
                if text or rtext:
                    m.chunk_times.append(t)
                    out_parts.append(text)
                    reasoning_parts.append(rtext)
                if choice.finish_reason:
                    m.finish_reason = choice.finish_reason
            if t - t0 > timeout_ns:
                timed_out.set()
                break
        t_end = time.perf_counter_ns()
        if timed_out.is_set():
            m.error, m.detail = "timeout", f"no complete answer within {timeout_s:g} s"
        elif m.finish_reason is None:
            m.error = "truncated"
            m.detail = "the stream ended without a finish_reason"
        m.e2e_ns = t_end - t0
    except openai.APIStatusError as e:
        _record_status(m, e)
    except openai.APIError as e:
        started = bool(holder.get("stream"))
        if timed_out.is_set():
            m.error, m.detail = "timeout", f"no complete answer within {timeout_s:g} s"
        elif _caused_by_timeout(e) and time.perf_counter_ns() - t0 >= timeout_ns * 0.99:
            m.error, m.detail = "timeout", f"no complete answer within {timeout_s:g} s"
        elif _caused_by_timeout(e):
            m.error = "stall"
            m.detail = f"silent for more than {stall_s:g} s" + (" mid-stream" if m.chunk_times else "")
        elif not started and isinstance(e, openai.APIConnectionError):
            m.error, m.detail = "connection", _short(f"{e.message} ({e.__cause__ or ''})")
        elif isinstance(e, openai.APIConnectionError):
            m.error, m.detail = "truncated", _short(f"the connection broke mid-stream: {e.__cause__ or e}")
        else:
            m.error, m.detail = "server_error", _short(f"error event in the stream: {e.message}")
    except (ValueError, KeyError, TypeError) as e:  # malformed chunk JSON
        m.error, m.detail = "protocol", _short(f"malformed stream: {e}")
    finally:
        m.elapsed_ns = time.perf_counter_ns() - t0
        watchdog.cancel()
        stream = holder.get("stream")
        if stream is not None:
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                pass
    m.output = "".join(out_parts)
    m.reasoning = "".join(reasoning_parts)
    if m.chunk_times:
        m.ttft_ns = m.chunk_times[0] - t0
    if m.error is None and not m.chunk_times:
        m.error, m.detail = "empty", f"no content (finish_reason {m.finish_reason})"
    return m


def measure_plain(
    client: openai.OpenAI, model: str, messages: list[dict], gen: Generation, timeout_s: float
) -> Measurement:
    """Non-streamed: only end-to-end time can be measured."""
    m = Measurement()
    t0 = time.perf_counter_ns()
    try:
        resp = client.chat.completions.create(**_params(model, messages, gen), stream=False, timeout=timeout_s)
        m.e2e_ns = time.perf_counter_ns() - _start_time(t0)
        m.resolved_model = resp.model
        m.usage = resp.usage
        choice = resp.choices[0] if resp.choices else None
        if choice is not None:
            m.output = choice.message.content or ""
            m.reasoning = _delta_reasoning(choice.message)
            m.finish_reason = choice.finish_reason
        if not m.output and not m.reasoning:
            m.error, m.detail = "empty", f"no content (finish_reason {m.finish_reason})"
    except openai.APIStatusError as e:
        _record_status(m, e)
    except openai.APIError as e:
        if _caused_by_timeout(e):
            m.error, m.detail = "timeout", f"no answer within {timeout_s:g} s"
        else:
            m.error, m.detail = "connection", _short(f"{e.message} ({e.__cause__ or ''})")
    except (ValueError, KeyError, TypeError) as e:
        m.error, m.detail = "protocol", _short(f"malformed response: {e}")
    m.elapsed_ns = time.perf_counter_ns() - t0
    return m


# ----------------------------------------------------------------------------- token counting


class TokenCounter:
    """Counts tokens when the server's stream carried no usage, by the best means available.

    1. the server's tokenize endpoint (llama-cpp-python ``/extras/tokenize``, llama.cpp and vLLM
       ``/tokenize``), with the tokens it adds to an empty text (BOS) subtracted;
    2. a non-streamed usage probe of the same request, trusted only when it returns the very
       same text (deterministic settings);
    3. the number of content chunks, the last resort (wrong when chunks carry several tokens).
    """

    def __init__(self, endpoint: Endpoint, client: openai.OpenAI, env: Any, timeout_s: float):
        self.root = endpoint.base_url.partition("?")[0].rstrip("/")
        if self.root.endswith("/v1"):
            self.root = self.root[:-3]
        key = env.get(endpoint.api_key_env)
        self.headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.client = client
        self.timeout_s = timeout_s
        self._tokenize: Callable[[str, str], int] | None | bool = False  # False: not yet probed
        self._baseline: dict[str, int] = {}
        self._probes: dict[tuple[str, str], tuple[str, Any]] = {}
        self._prompt_tokens: dict[tuple[str, str], int | None] = {}

    def _post(self, path: str, body: dict) -> Any:
        """POST to the configured origin only: a redirect is an answer of its own (no tokenizer)."""
        timeout = min(self.timeout_s, 30)
        deadline = time.perf_counter_ns() + int(timeout * 1e9)
        with http_client(self.client).stream(
            "POST", self.root + path, json=body, headers=self.headers, timeout=timeout, follow_redirects=False
        ) as resp:
            if resp.status_code != 200:
                raise ValueError(f"HTTP {resp.status_code}")
            return json.loads(read_bounded(resp, MAX_TOKENIZE_BYTES, deadline))

    def _find_tokenizer(self, model: str) -> Callable[[str, str], int] | None:
        shapes: list[tuple[str, Callable[[str, str], dict], Callable[[Any], int]]] = [
            ("/extras/tokenize", lambda mm, t: {"input": t, "model": mm}, lambda r: len(r["tokens"])),
            ("/tokenize", lambda mm, t: {"model": mm, "prompt": t}, lambda r: int(r.get("count", len(r["tokens"])))),
            ("/tokenize", lambda mm, t: {"content": t}, lambda r: len(r["tokens"])),
        ]
        for path, body, count in shapes:
            try:
                count(self._post(path, body(model, "hello world")))
            except Exception:  # noqa: BLE001 - any failure means: not this shape
                continue
            return lambda mm, t, path=path, body=body, count=count: count(self._post(path, body(mm, t)))
        return None

    def count_tokens(self, model: str, text: str) -> int | None:
        if self._tokenize is False:
            self._tokenize = self._find_tokenizer(model)
        if not self._tokenize:
            return None
        try:
            if model not in self._baseline:
                self._baseline[model] = self._tokenize(model, "")  # type: ignore[operator]
            return max(0, self._tokenize(model, text) - self._baseline[model])  # type: ignore[operator]
        except Exception:  # noqa: BLE001
            return None

    def prompt_tokens(self, model: str, messages: list[dict], gen: Generation) -> int | None:
        """Prompt tokens (chat template included) from a cheap non-streamed 1-token request."""
        key = (model, json.dumps(messages))
        if key not in self._prompt_tokens:
            m = measure_plain(self.client, model, messages, gen.model_copy(update={"max_tokens": 1}), self.timeout_s)
            self._prompt_tokens[key] = getattr(m.usage, "prompt_tokens", None) if m.error is None else None
        return self._prompt_tokens[key]

    def usage_probe(self, model: str, messages: list[dict], gen: Generation) -> tuple[str, Any]:
        key = (model, json.dumps(messages))
        if key not in self._probes:
            m = measure_plain(self.client, model, messages, gen, self.timeout_s)
            self._probes[key] = (m.output, m.usage if m.error is None else None)
        return self._probes[key]


def count_completion(
    m: Measurement, counter: TokenCounter | None, model: str, messages: list[dict], gen: Generation
) -> tuple[int | None, int | None, str | None]:
    """(completion_tokens, prompt_tokens, tokens_source) for a successful measurement."""
    usage = m.usage
    if usage is not None and getattr(usage, "completion_tokens", None) is not None:
        return usage.completion_tokens, getattr(usage, "prompt_tokens", None), "usage"
    if counter is not None:
        n = counter.count_tokens(model, m.reasoning + m.output)
        if n is not None:
            return n, counter.prompt_tokens(model, messages, gen), "tokenize"
        if gen.temperature == 0:
            text, pusage = counter.usage_probe(model, messages, gen)
            if pusage is not None and text == m.output and pusage.completion_tokens is not None:
                return pusage.completion_tokens, pusage.prompt_tokens, "usage_probe"
    return len(m.chunk_times), None, "chunks"


# ----------------------------------------------------------------------------- one request with retries


@dataclass
class RequestOptions:
    gen: Generation
    timeout_s: float
    stall_timeout_s: float
    retries: int
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0


def run_request(
    client: openai.OpenAI,
    counter: TokenCounter | None,
    model: str,
    prompt_id: str,
    prompt_text: str,
    opts: RequestOptions,
    *,
    round: int,
    warmup: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> Sample:
    """Send one request (retrying 429/5xx with backoff) and return its Sample."""
    messages = [{"role": "user", "content": prompt_text}]
    started_at = utcnow()
    attempts: list[Attempt] = []
    for n in range(opts.retries + 1):
        if opts.gen.stream:
            m = measure_stream(client, model, messages, opts.gen, opts.timeout_s, opts.stall_timeout_s)
        else:
            m = measure_plain(client, model, messages, opts.gen, opts.timeout_s)
        attempts.append(
            Attempt(
                error=m.error,
                http_status=m.http_status,
                detail=m.detail,
                elapsed_s=m.elapsed_ns / 1e9,
                retry_after_s=m.retry_after_s,
            )
        )
        if m.error not in RETRYABLE or n == opts.retries:
            break
        wait = m.retry_after_s if m.retry_after_s is not None else opts.backoff_s * (2**n)
        sleep(min(wait, opts.max_backoff_s))

    sample = Sample(
        model="",  # filled by the caller (the model's label)
        prompt_id=prompt_id,
        round=round,
        warmup=warmup,
        ok=m.error is None,
        error=m.error,
        error_detail=m.detail,
        started_at=started_at,
        stream=opts.gen.stream,
        output=m.output,
        reasoning=m.reasoning,
        finish_reason=m.finish_reason,
        resolved_model=m.resolved_model,
        attempts=attempts,
        chunks=len(m.chunk_times),
    )
    if m.error is None:
        completion, prompt_tokens, source = count_completion(m, counter, model, messages, opts.gen)
        sample.e2e_s = m.e2e_ns / 1e9 if m.e2e_ns is not None else None
        if opts.gen.stream and m.ttft_ns is not None:
            sample.ttft_s = m.ttft_ns / 1e9
            sample.itl_s = [(b - a) / 1e9 for a, b in zip(m.chunk_times, m.chunk_times[1:])]
        sample.completion_tokens = completion
        sample.prompt_tokens = prompt_tokens
        sample.tokens_source = source  # type: ignore[assignment]
        sample.over_limit = completion is not None and completion > opts.gen.max_tokens
    return sample
