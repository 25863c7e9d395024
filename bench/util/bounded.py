"""Reading what an untrusted server sends: never more than a bound, never past a deadline.

Used by the timed client (``bench.measure``) and by runtimes (``bench.runtimes``) alike.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from bench.errors import ResponseError

EXCERPT = 200  # characters of a server's text quoted in an error detail
MAX_ERROR_BYTES = 64 * 1024  # what is read of an HTTP error body


def excerpt(data: Any, limit: int = EXCERPT) -> str:
    """A short, printable, quoted piece of what a server sent (for error details)."""
    if isinstance(data, (bytes, bytearray)):
        text = bytes(data[: 4 * limit + 4]).decode("utf-8", "replace")
    else:
        text = data if isinstance(data, str) else _short_json(data, limit)
    cut = text[: limit + 1]
    return repr(cut[:limit] + ("…" if len(cut) > limit else ""))


def _short_json(value: Any, limit: int) -> str:
    try:
        return json.dumps(value)[: limit + 1]
    except (ValueError, TypeError, RecursionError):
        return str(type(value).__name__)


def check_encoding(response: Any) -> None:
    """bench asks for uncompressed bodies (Accept-Encoding: identity) and reads raw bytes: a
    compressed one could be a decompression bomb, so it is refused."""
    encoding = str(response.headers.get("content-encoding", "")).strip().lower()
    if encoding not in ("", "identity"):
        raise ResponseError("protocol", f"compressed response (Content-Encoding: {excerpt(encoding, 40)}) "
                                        "although bench asked for none")


def read_bounded(
    response: Any, limit: int, deadline_ns: int | None = None, clock: Callable[[], int] = time.perf_counter_ns
) -> bytes:
    """The body of an httpx response opened with ``stream=True``: at most ``limit`` bytes, read
    before ``deadline_ns`` (perf_counter_ns), or a ResponseError ("runaway" / "timeout")."""
    check_encoding(response)
    buf = bytearray()
    for data in response.iter_raw():
        buf += data
        if len(buf) > limit:
            raise ResponseError("runaway", f"the response is larger than {limit} bytes: cut")
        if deadline_ns is not None and clock() > deadline_ns:
            raise ResponseError("timeout", "the response did not end in time")
    return bytes(buf)


def read_prefix(
    response: Any, limit: int = MAX_ERROR_BYTES, deadline_ns: int | None = None,
    clock: Callable[[], int] = time.perf_counter_ns,
) -> bytes:
    """The first ``limit`` bytes of a body (an error answer), never more, never past the deadline."""
    buf = bytearray()
    for data in response.iter_raw():
        buf += data[: limit - len(buf)]
        if len(buf) >= limit or (deadline_ns is not None and clock() > deadline_ns):
            break
    return bytes(buf)
