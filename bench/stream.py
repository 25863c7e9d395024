"""Reading answers from servers, which are untrusted: bounded in bytes and time.

Nothing here keeps more than a fixed number of bytes, whatever a server sends, and every
surprise becomes a ``bench.errors.ResponseError`` with the kind of failure and a short excerpt.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from bench.errors import ResponseError

EXCERPT = 200  # characters of a server's text quoted in an error detail


def excerpt(data: bytes | str, limit: int = EXCERPT) -> str:
    """A short, printable quote of what a server sent (for error details)."""
    text = data.decode("utf-8", "replace") if isinstance(data, (bytes, bytearray)) else str(data)
    text = text[: limit + 1]
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


def check_encoding(response: Any) -> None:
    """bench asks for uncompressed bodies (Accept-Encoding: identity) and reads raw bytes: a
    compressed one would be a decompression bomb waiting to happen, so it is refused."""
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
