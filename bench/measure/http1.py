"""HTTP/1.1 answers, read from raw bytes for ``bench.measure.wire``: the header block and the
body's framing (chunked, Content-Length, or until the connection closes), each bounded, each
surprise a ``ResponseError`` ("protocol", "runaway") with a short excerpt of what came."""

from __future__ import annotations

from bench.errors import ResponseError
from bench.util.bounded import excerpt

MAX_LINE_BYTES = 4096  # one chunk-size or trailer line
MAX_TRAILERS = 64


class BodySink:
    """A whole (non-streamed or error) body, at most ``limit`` bytes; past it: "runaway", or with
    ``cut=True`` just the first ``limit`` bytes (an error answer's start)."""

    def __init__(self, limit: int, cut: bool = False):
        self.limit, self.cut, self.data = limit, cut, bytearray()

    def feed(self, data: bytes, t_ns: int) -> bool:
        self.data += data
        if len(self.data) > self.limit:
            if not self.cut:
                raise ResponseError("runaway", f"the response is larger than {self.limit} bytes: cut")
            del self.data[self.limit:]
            return True
        return False

    def end(self) -> None:
        pass


class Body:
    """HTTP/1.1 body framing: chunked, Content-Length, or until the connection closes."""

    def __init__(self, headers: dict[str, str]):
        te = headers.get("transfer-encoding", "").lower()
        self.chunked = te.rsplit(",", 1)[-1].strip() == "chunked"
        self.left: int | None = None
        self.until_close = False
        if te and not self.chunked:
            raise ResponseError("protocol", f"unsupported Transfer-Encoding {excerpt(te, 40)}")
        if not self.chunked:
            length = headers.get("content-length")
            if length is None:
                self.until_close = True
            elif length.strip().isdigit() and len(length.strip()) <= 15:
                self.left = int(length)
            else:
                raise ResponseError("protocol", f"a bad Content-Length {excerpt(length, 40)}")
        self.complete = self.left == 0
        self.extra = False  # bytes after the end of the body: the connection cannot be reused
        self._buf = bytearray()
        self._state = "size"
        self._trailers = 0

    def feed(self, data: bytes) -> bytes:
        """The payload bytes carried by ``data``."""
        if self.complete:
            self.extra = self.extra or bool(data)
            return b""
        if self.until_close:
            return data
        if not self.chunked:
            take = data[: self.left]
            self.left -= len(take)
            self.complete = self.left == 0
            self.extra = len(take) < len(data)
            return take
        self._buf += data
        return self._chunks()

    def _chunks(self) -> bytes:
        out = bytearray()
        buf = self._buf
        while buf and not self.complete:
            if self._state == "data":
                n = min(self.left, len(buf))
                out += buf[:n]
                del buf[:n]
                self.left -= n
                if self.left:
                    break
                self._state = "crlf"
            elif self._state == "crlf":
                if len(buf) < 2:
                    break
                if buf[:2] != b"\r\n":
                    raise ResponseError("protocol", "a chunk of the chunked body does not end with CRLF")
                del buf[:2]
                self._state = "size"
            else:
                line = self._line(buf)
                if line is None:
                    break
                if self._state == "size":
                    self._size(line)
                elif not line:
                    self.complete = True
                else:
                    self._trailers += 1
                    if self._trailers > MAX_TRAILERS:
                        raise ResponseError("runaway", f"more than {MAX_TRAILERS} trailer lines: cut")
        self.extra = self.complete and bool(buf)
        return bytes(out)

    @staticmethod
    def _line(buf: bytearray) -> bytes | None:
        i = buf.find(b"\n", 0, MAX_LINE_BYTES + 2)
        if i < 0:
            if len(buf) > MAX_LINE_BYTES:
                raise ResponseError("protocol", f"a chunk-size or trailer line longer than {MAX_LINE_BYTES} bytes")
            return None
        line = bytes(buf[:i]).rstrip(b"\r")
        del buf[: i + 1]
        return line

    def _size(self, line: bytes) -> None:
        size = line.split(b";", 1)[0].strip()
        if not size or len(size) > 15 or size.strip(b"0123456789abcdefABCDEF"):
            raise ResponseError("protocol", f"a bad chunk size {excerpt(line, 40)}")
        self.left = int(size, 16)
        self._state = "data" if self.left else "trailer"


def parse_head(head: bytes) -> tuple[int, dict[str, str], bool]:
    """(status, headers with lower-case names, keep-alive) of a response's header block."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise ResponseError("protocol", f"not an HTTP/1.x answer: {excerpt(lines[0])}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ResponseError("protocol", f"a malformed header line {excerpt(line)}")
        key, value = name.lower(), value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    keep = parts[0] == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    return int(parts[1]), headers, keep
