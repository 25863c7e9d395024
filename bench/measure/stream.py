"""Reading answers from servers, which are untrusted: bounded in bytes, strict in shape.

Nothing here keeps more than a fixed number of bytes, whatever a server sends, and every
surprise becomes a ``bench.errors.ResponseError`` carrying the kind of failure ("protocol",
"runaway", "server_error", "timeout") and a short excerpt of what the server said.

The pieces, usable by any load generator (no global state, no I/O except in ``read``):

* ``Limits.for_max_tokens(n)``: the bounds of one answer (see below).
* ``SSEParser``: bytes in, ``(event, data)`` pairs out (text/event-stream rules: LF, CRLF or CR
  line ends, comments, multi-line data, named events), no line or event over a byte bound.
* ``ChatStreamReader``: one streamed chat completion. ``feed(data, t_ns)`` takes bytes with the
  ``perf_counter_ns()`` at which they arrived and returns True at ``[DONE]``; ``read(chunks,
  deadline_ns)`` pulls them from an iterator such as ``response.iter_raw()`` of an httpx
  response opened with ``stream=True``; ``end()`` at the end of the body. It keeps content
  chunk arrival times, output, reasoning, finish_reason, usage and the model id.
* ``parse_completion(body, limits)``: one non-streamed chat completion.
* ``read_bounded`` / ``read_prefix``: a whole body, or its start, without trusting its size.

Bounds (``Limits``), documented in site_src/methodology.md: a server may ignore ``max_tokens``
and still succeed (flagged ``over_limit``) up to ``RUNAWAY_FACTOR`` x max_tokens content chunks
or reported completion tokens, and ``max(64 KiB, 64 x that)`` characters of output + reasoning;
one SSE line or event is at most 1 MiB; one response at most ``max(16 MiB, ...)`` bytes. Past
any of them the answer is cut and fails as "runaway". Malformed JSON, a chunk of the wrong shape,
or token counts that are not integers in [0, 2**31) fail as "protocol".
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from bench.errors import ResponseError
from bench.util.bounded import EXCERPT, excerpt

MAX_EVENT_BYTES = 1 << 20  # one SSE line or event
RUNAWAY_FACTOR = 4  # content chunks / completion tokens kept, per max_tokens asked
CHARS_PER_TOKEN = 64  # output characters kept per token of that cap ...
MIN_TEXT_CHARS = 64 * 1024  # ... but never fewer than this
MIN_RESPONSE_BYTES = 16 << 20
MAX_REPORTED_TOKENS = 2**31  # a token count at or past this is not a count (int32 holds up to 2**31 - 1)

_EOL = re.compile(rb"\r\n|\r|\n")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Limits:
    """The bounds of one answer; past any of them it is cut and fails as "runaway"."""

    max_tokens: int  # what the request asked for
    token_cap: int  # content chunks kept, and the most completion tokens a success may report
    max_text_chars: int  # output + reasoning characters kept
    max_response_bytes: int  # raw bytes read from one streamed response
    max_body_bytes: int  # raw bytes of one non-streamed response
    max_event_bytes: int = MAX_EVENT_BYTES

    @classmethod
    def for_max_tokens(cls, max_tokens: int) -> "Limits":
        cap = RUNAWAY_FACTOR * max(1, int(max_tokens))
        text = max(MIN_TEXT_CHARS, cap * CHARS_PER_TOKEN)
        return cls(
            max_tokens=max_tokens,
            token_cap=cap,
            max_text_chars=text,
            max_response_bytes=max(MIN_RESPONSE_BYTES, 8 * text + 1024 * cap),
            max_body_bytes=max(MAX_EVENT_BYTES, 8 * text),
        )


# ----------------------------------------------------------------------------- server-sent events


class SSEParser:
    """Incremental text/event-stream parser (WHATWG rules) with a bound on lines and events.

    ``feed(bytes)`` returns the ``(event name, data)`` pairs completed by those bytes; the name
    is "message" unless an ``event:`` field said otherwise. An event left incomplete when the
    body ends is dropped, as the standard says.
    """

    def __init__(self, max_event_bytes: int = MAX_EVENT_BYTES):
        self.max_event_bytes = max_event_bytes
        self._line = bytearray()  # the current, incomplete line
        self._data: list[str] = []
        self._data_bytes = 0
        self._event = ""
        self._after_cr = False  # the last byte was a CR: a LF right after it ends nothing more

    def feed(self, chunk: bytes) -> list[tuple[str, str]]:
        events: list[tuple[str, str]] = []
        if not chunk:  # nothing new: a CR just before still waits for its LF
            return events
        pos = 1 if self._after_cr and chunk[:1] == b"\n" else 0
        self._after_cr = False
        for m in _EOL.finditer(chunk, pos):
            self._line += chunk[pos:m.start()]
            self._check(len(self._line))
            self._take_line(bytes(self._line), events)
            self._line.clear()
            pos = m.end()
            self._after_cr = m.group() == b"\r" and pos == len(chunk)
        self._line += chunk[pos:]
        self._check(len(self._line))
        return events

    def _check(self, size: int) -> None:
        if size + self._data_bytes > self.max_event_bytes:
            raise ResponseError("runaway", f"an event or line longer than {self.max_event_bytes} bytes: cut")

    def _take_line(self, line: bytes, events: list[tuple[str, str]]) -> None:
        if not line:  # a blank line ends the event
            if self._data:
                events.append((self._event or "message", "\n".join(self._data)))
            self._data, self._data_bytes, self._event = [], 0, ""
            return
        if line.startswith(b":"):  # a comment (keep-alive)
            return
        name, _, value = line.partition(b":")
        value = value[1:] if value.startswith(b" ") else value
        if name == b"data":
            self._data.append(value.decode("utf-8", "replace"))
            self._data_bytes += len(value) + 1
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")[:100]
        # id, retry and unknown fields carry nothing bench uses


# ----------------------------------------------------------------------------- chat completion shapes


@dataclass
class Usage:
    """Token counts a server reported (validated: integers in [0, 2**31))."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class Chunk:
    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    timings: dict | None = None  # a server's own timings object (llama.cpp's server), untrusted


class _Malformed(ValueError):
    """Internal: a value of the wrong shape (becomes a "protocol" ResponseError with an excerpt)."""


def _json(payload: str | bytes) -> Any:
    try:
        return json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise _Malformed(f"not JSON ({type(e).__name__})") from None


def _text(value: Any, what: str) -> str:
    """A string field a Sample stores: str or null, and valid Unicode (no lone surrogates)."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Malformed(f"{what} is not a string")
    if _SURROGATE.search(value):
        raise _Malformed(f"{what} is not valid Unicode")
    return value


def _reasoning(message: dict) -> str:
    # Tolerant: servers name it reasoning_content or reasoning, and some send objects there.
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return _text(value, key)
    return ""


def _count(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < MAX_REPORTED_TOKENS:
        raise _Malformed(f"{what} is not a token count")
    return value


def parse_usage(value: Any) -> Usage | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Malformed("usage is not an object")
    _count(value.get("total_tokens"), "usage.total_tokens")
    return Usage(_count(value.get("prompt_tokens"), "usage.prompt_tokens"),
                 _count(value.get("completion_tokens"), "usage.completion_tokens"))


def _model(value: Any) -> str | None:
    if not isinstance(value, str) or not value or _SURROGATE.search(value):
        return None  # metadata only: a bad one is dropped, not fatal
    return value[:200]


def _timings(obj: Any) -> dict | None:
    """A ``timings`` object beside the OpenAI fields (llama.cpp's server adds one), kept only when
    it is a small flat object: the runtime that knows its meaning reads it."""
    t = obj.get("timings") if isinstance(obj, dict) else None
    if isinstance(t, dict) and len(t) <= 32 and all(isinstance(v, (int, float, str, type(None))) for v in t.values()):
        return t
    return None


def _server_error(obj: dict) -> None:
    """OpenAI-style servers report a failure mid-answer as {"error": {...}}."""
    err = obj.get("error")
    if err:
        message = err.get("message", err) if isinstance(err, dict) else err
        raise ResponseError("server_error", f"error in the answer: {excerpt(message)}")


def _choices(obj: Any) -> list:
    if not isinstance(obj, dict):
        raise _Malformed("not a JSON object")
    _server_error(obj)
    choices = obj.get("choices")
    if choices is None:
        return []
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise _Malformed("choices is not a list of objects")
    return choices


def _finish(choice: dict) -> str | None:
    return _text(choice.get("finish_reason"), "finish_reason")[:100] or None


def parse_chunk(payload: str) -> Chunk:
    """One ``chat.completion.chunk`` event's data; ResponseError("protocol") if malformed."""
    try:
        obj = _json(payload)
        out = Chunk()
        for choice in _choices(obj):
            delta = choice.get("delta")
            delta = {} if delta is None else delta
            if not isinstance(delta, dict):
                raise _Malformed("delta is not an object")
            out.content += _text(delta.get("content"), "delta.content")
            out.reasoning += _reasoning(delta)
            out.finish_reason = _finish(choice) or out.finish_reason
        out.usage = parse_usage(obj.get("usage"))
        out.model = _model(obj.get("model"))
        out.timings = _timings(obj)
        return out
    except _Malformed as e:
        raise ResponseError("protocol", f"malformed chunk ({e}): {excerpt(payload)}") from None


def check_usage(usage: Usage | None, limits: Limits) -> None:
    n = usage.completion_tokens if usage is not None else None
    if n is not None and n > limits.token_cap:
        raise ResponseError("runaway", f"the server reports {n} completion tokens, more than "
                                       f"{RUNAWAY_FACTOR} x max_tokens ({limits.max_tokens})")


def parse_completion(body: bytes, limits: Limits) -> Chunk:
    """One non-streamed ``chat.completion``; ResponseError ("protocol" / "runaway") if it is not one."""
    try:
        obj = _json(body)
        choices = _choices(obj)
        out = Chunk()
        if choices:
            message = choices[0].get("message")
            if not isinstance(message, dict):
                raise _Malformed("message is not an object")
            out.content = _text(message.get("content"), "message.content")
            out.reasoning = _reasoning(message)
            out.finish_reason = _finish(choices[0])
        out.usage = parse_usage(obj.get("usage"))
        out.model = _model(obj.get("model"))
        out.timings = _timings(obj)
    except _Malformed as e:
        raise ResponseError("protocol", f"malformed answer ({e}): {excerpt(body)}") from None
    if len(out.content) + len(out.reasoning) > limits.max_text_chars:
        raise ResponseError("runaway", f"an answer longer than {limits.max_text_chars} characters")
    check_usage(out.usage, limits)
    return out


# ----------------------------------------------------------------------------- the streamed answer


@dataclass
class ChatStreamReader:
    """One streamed chat completion, read from raw bytes with the time they arrived.

    Keeps only what a sample stores, within ``limits``; raises ResponseError on a malformed
    chunk ("protocol"), an error event ("server_error") or too much of anything ("runaway").
    """

    limits: Limits
    chunk_times: list[int] = field(default_factory=list)  # arrival of each content-bearing chunk
    finish_reason: str | None = None
    usage: Usage | None = None
    resolved_model: str | None = None
    timings: dict | None = None  # the last ``timings`` object a chunk carried
    done: bool = False  # the server said [DONE]
    events: int = 0
    bytes_read: int = 0
    text_chars: int = 0
    _parts: list[str] = field(default_factory=list)
    _reasoning: list[str] = field(default_factory=list)
    _head: bytearray = field(default_factory=bytearray)  # the first bytes, quoted if not SSE at all
    _parser: SSEParser = field(init=False)

    def __post_init__(self) -> None:
        self._parser = SSEParser(self.limits.max_event_bytes)

    @property
    def output(self) -> str:
        return "".join(self._parts)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    def read(self, chunks: Iterable[bytes], deadline_ns: int | None = None,
             clock: Callable[[], int] = time.perf_counter_ns) -> bool:
        """Feed raw byte chunks as they arrive, timing each on arrival, until [DONE] or the end
        of the body (True), or until one arrives past ``deadline_ns`` (False). Transport errors
        propagate: the caller knows whether its timeout cut the connection."""
        for data in chunks:
            t = clock()
            if self.feed(data, t):
                return True
            if deadline_ns is not None and t > deadline_ns:
                return False
        self.end()
        return True

    def feed(self, data: bytes, t_ns: int) -> bool:
        """Bytes that arrived at ``t_ns`` (perf_counter_ns); True once the server said [DONE]."""
        if self.done:
            return True
        self.bytes_read += len(data)
        if len(self._head) < EXCERPT:
            self._head += data[: EXCERPT - len(self._head)]
        if self.bytes_read > self.limits.max_response_bytes:
            raise ResponseError("runaway", f"a response larger than {self.limits.max_response_bytes} bytes: cut")
        for name, payload in self._parser.feed(data):
            self._event(name, payload, t_ns)
            if self.done:
                break
        return self.done

    def end(self) -> None:
        """The body ended. A body with bytes but no event at all was not an event stream."""
        if not self.done and self.events == 0 and self.bytes_read > 0:
            raise ResponseError("protocol", f"not an event stream: {excerpt(bytes(self._head))}")

    def _event(self, name: str, payload: str, t_ns: int) -> None:
        if name == "error":
            raise ResponseError("server_error", f"error event in the stream: {excerpt(payload)}")
        if name != "message":
            return  # other named events (pings) carry no chunk
        self.events += 1
        if payload.strip() == "[DONE]":
            self.done = True
            return
        self._take(parse_chunk(payload), t_ns)

    def _take(self, chunk: Chunk, t_ns: int) -> None:
        self.resolved_model = chunk.model or self.resolved_model
        self.timings = chunk.timings or self.timings
        if chunk.usage is not None:
            check_usage(chunk.usage, self.limits)
            self.usage = chunk.usage
        if chunk.content or chunk.reasoning:
            self.text_chars += len(chunk.content) + len(chunk.reasoning)
            if len(self.chunk_times) >= self.limits.token_cap:
                raise ResponseError("runaway", f"more than {self.limits.token_cap} content chunks "
                                               f"({RUNAWAY_FACTOR} x max_tokens {self.limits.max_tokens}): cut")
            if self.text_chars > self.limits.max_text_chars:
                raise ResponseError("runaway", f"more than {self.limits.max_text_chars} characters of output: cut")
            self.chunk_times.append(t_ns)
            self._parts.append(chunk.content)
            self._reasoning.append(chunk.reasoning)
        self.finish_reason = chunk.finish_reason or self.finish_reason
