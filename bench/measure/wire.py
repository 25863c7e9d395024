"""bench's own HTTP/1.1 client for timed requests: every request in flight on one event-loop thread.

Why not httpx here: under load, its per-chunk work (h11 events, httpcore's layers, a read
timeout set per read) and the watchdog thread each request needs cost ~10 ms of CPU per
40-token answer, and with 64 streams the GIL queue delayed when bytes were seen
(``benchmarks/load_overhead.py``). Here one thread waits on all sockets at once (``selectors``),
and for each wake-up first receives from every ready socket, stamping each with
``perf_counter_ns()`` as its bytes arrive, then decodes (chunked framing, the caller's sink:
``ChatStreamReader``): a slow parse never delays another stream's timestamp.

Callers (one thread per load stream, not per request) build a :class:`Job`, ``submit`` it and
wait for it. The job's answer is delivered the moment it is complete (at ``[DONE]`` for a stream);
the rest of the body is drained on the loop and the connection kept for the next request.

What the server sends is bounded (header block, chunk-size lines, trailers, error bodies; the
sink bounds the body), and every failure is a ``Job.error`` kind, never an exception:
``connection`` (nothing answered), ``broken`` (the connection broke after the answer began),
``stall`` (silent longer than the stall timeout), ``timeout`` (no complete answer in time), or a
``ResponseError`` kind from the framing or the sink ("protocol", "runaway", ...).

Plain ``http://`` only, with no proxy: ``https://`` and proxies go through httpx (see
``bench.measure.client``). Redirects are never followed (the caller records them).
"""

from __future__ import annotations

import errno
import selectors
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.errors import ResponseError
from bench.measure.http1 import Body, BodySink, parse_head
from bench.util.bounded import excerpt

MAX_HEAD_BYTES = 64 * 1024  # status line + headers
MAX_ERROR_BYTES = 64 * 1024  # what is kept of an error answer's body
DRAIN_BYTES, DRAIN_S = 64 * 1024, 1.0  # after the answer: what may follow before the connection is dropped
SWEEP_NS = 20_000_000  # deadlines are checked every 20 ms
IDLE_S = 60.0  # a pooled connection unused this long is closed
RECV_BYTES = 256 * 1024


class Sink(Protocol):
    def feed(self, data: bytes, t_ns: int) -> bool: ...  # True: the answer is complete

    def end(self) -> None: ...  # the body ended (may raise ResponseError)


@dataclass(eq=False)
class Job:
    """One request. Set by the caller: where, what, the 2xx body's ``sink``, timeouts. Set by the
    loop: the rest. ``stall_s`` None: one timeout for the whole exchange (not a stream)."""

    addresses: list[tuple[int, Any]]  # (family, sockaddr) pairs from getaddrinfo, tried in order
    origin: tuple[str, int]
    request: bytes
    sink: Any
    timeout_s: float
    stall_s: float | None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    t0_ns: int = 0  # when the request went out (connect included for a new connection)
    t_end_ns: int | None = None  # arrival of the bytes that completed the answer
    error: tuple[str, str] | None = None  # (kind, detail)
    error_body: BodySink | None = None
    tried: int = 0  # index of the address in use
    done: threading.Event = field(default_factory=threading.Event)


class _Conn:
    def __init__(self, sock: socket.socket, origin: tuple[str, int], reused: bool):
        self.sock, self.origin, self.reused = sock, origin, reused
        self.job: Job | None = None
        self.out = b""
        self.head = bytearray()
        self.body: Body | None = None
        self.last_ns = 0  # last bytes received (stall timer)
        self.drain_until = 0  # draining after the answer: drop the connection past this
        self.drained = 0
        self.keep = True
        self.idle_since = 0.0


class Loop:
    """The event loop thread. ``submit`` from any thread; everything else runs on the loop."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._queue: deque[Job] = deque()
        self._lock = threading.Lock()
        self._pool: dict[tuple[str, int], list[_Conn]] = {}
        self._active: set[_Conn] = set()
        self._next_sweep = 0
        self._buffer = bytearray(RECV_BYTES)
        self._view = memoryview(self._buffer)
        self.thread = threading.Thread(target=self._run, name="bench-wire", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        with self._lock:
            self._queue.append(job)
        try:
            self._wake_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the wake-up pipe is full: the loop is awake anyway

    def _run(self) -> None:
        while True:
            ready = self._sel.select(timeout=SWEEP_NS / 1e9)
            arrived = []
            for key, events in ready:  # receive and stamp first, decode after
                conn = key.data
                if conn is None:
                    self._take_jobs()
                elif events & selectors.EVENT_WRITE:
                    self._guard(conn, self._writable)
                else:
                    arrived.append((conn, *self._recv(conn)))
            for conn, data, t_ns, exc in arrived:
                if conn.job is not None or conn.drain_until:
                    self._guard(conn, lambda c: self._readable(c, data, t_ns, exc))
            now = time.perf_counter_ns()
            if now >= self._next_sweep:
                self._sweep(now)
                self._next_sweep = now + SWEEP_NS

    # -- starting requests
    def _take_jobs(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass
        with self._lock:
            jobs, self._queue = list(self._queue), deque()
        for job in jobs:
            self._start(job)

    def _start(self, job: Job, fresh: bool = False) -> None:
        conn = None if fresh else self._pooled(job.origin)
        job.t0_ns = time.perf_counter_ns()
        if conn is None:
            try:
                conn = _Conn(self._connect(job.addresses[job.tried]), job.origin, reused=False)
            except OSError as e:
                return self._retry(job) or self._finish(job, ("connection", f"ConnectError: {e}"))
        conn.job, conn.out, conn.head, conn.body, conn.last_ns = job, job.request, bytearray(), None, job.t0_ns
        conn.drain_until = conn.drained = 0
        self._active.add(conn)
        self._sel.register(conn.sock, selectors.EVENT_WRITE, conn)

    @staticmethod
    def _connect(address: tuple[int, Any]) -> socket.socket:
        family, addr = address
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = sock.connect_ex(addr)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                raise ConnectionError(code, _strerror(code))
        except OSError:
            sock.close()
            raise
        return sock

    def _retry(self, job: Job, conn: _Conn | None = None) -> bool:
        """Nothing of an answer came: send again on a fresh connection when the connection was a
        kept-alive one the server had closed, or to the next address of the host (IPv6, then IPv4)."""
        if conn is not None and conn.reused:
            job.tried -= 1  # the same address again, on a new connection
        elif job.tried + 1 >= len(job.addresses):
            return False
        job.tried += 1
        self._start(job, fresh=True)
        return True

    def _pooled(self, origin: tuple[str, int]) -> _Conn | None:
        idle = self._pool.get(origin, [])
        while idle:
            conn = idle.pop()
            try:
                conn.sock.recv(1, socket.MSG_PEEK)
                alive = False  # closed by the server (b""), or bytes nobody asked for
            except (BlockingIOError, InterruptedError):
                alive = True  # nothing to read: still open
            except OSError:
                alive = False
            if alive:
                conn.reused = True
                return conn
            conn.sock.close()
        return None

    def _writable(self, conn: _Conn) -> None:
        if conn.out is conn.job.request and not conn.reused:
            code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise ConnectionError(code, f"[Errno {code}] {_strerror(code)}")
        sent = conn.sock.send(conn.out)
        conn.out = conn.out[sent:]
        if not conn.out:
            self._sel.modify(conn.sock, selectors.EVENT_READ, conn)

    # -- reading answers
    def _recv(self, conn: _Conn) -> tuple[bytes, int, BaseException | None]:
        try:  # into one buffer: a fresh 256 KiB bytes per recv costs an mmap and munmap each time
            n = conn.sock.recv_into(self._buffer)
            return self._view[:n].tobytes(), time.perf_counter_ns(), None
        except (BlockingIOError, InterruptedError):
            return b"", 0, BlockingIOError()
        except OSError as e:
            return b"", time.perf_counter_ns(), e

    def _readable(self, conn: _Conn, data: bytes, t_ns: int, exc: BaseException | None) -> None:
        if isinstance(exc, BlockingIOError):
            return
        if exc is not None:
            raise exc
        conn.last_ns = t_ns
        if conn.job is None:  # draining the end of an answer already delivered
            return self._drain(conn, data)
        if not data:
            return self._eof(conn, t_ns)
        if conn.body is None:
            conn.head += data
            end = conn.head.find(b"\r\n\r\n")
            if end < 0:
                if len(conn.head) > MAX_HEAD_BYTES:
                    raise ResponseError("protocol", f"response headers longer than {MAX_HEAD_BYTES} bytes")
                return
            data = self._begin(conn, bytes(conn.head[:end]), bytes(conn.head[end + 4:]))
            if data is None:
                return
        self._payload(conn, conn.body.feed(data), t_ns)
        if conn.job is not None and conn.body.complete:
            self._ended(conn, t_ns)

    def _begin(self, conn: _Conn, head: bytes, rest: bytes) -> bytes | None:
        """The header block is in: the answer begins. The bytes after it, or None (interim 1xx)."""
        status, headers, keep = parse_head(head)
        if 100 <= status < 200:  # 100 Continue and the like: the real answer follows
            conn.head = bytearray(rest)
            return None if b"\r\n\r\n" not in rest else self._begin_again(conn)
        job = conn.job
        job.status, job.headers, conn.keep = status, headers, keep
        conn.body = Body(headers)
        if 300 <= status < 400:  # a redirect: never followed, its body is not read
            conn.keep = False
            self._finish(job, None, conn)
            return None
        if status >= 300:
            job.error_body = BodySink(MAX_ERROR_BYTES, cut=True)
        else:
            encoding = headers.get("content-encoding", "").strip().lower()
            if encoding not in ("", "identity"):
                raise ResponseError("protocol", f"compressed response (Content-Encoding: {excerpt(encoding, 40)}) "
                                                "although bench asked for none")
        return rest

    def _begin_again(self, conn: _Conn) -> bytes | None:
        end = conn.head.find(b"\r\n\r\n")
        return self._begin(conn, bytes(conn.head[:end]), bytes(conn.head[end + 4:]))

    def _payload(self, conn: _Conn, payload: bytes, t_ns: int) -> None:
        job = conn.job
        sink = job.error_body or job.sink
        if payload and sink.feed(payload, t_ns):
            self._answered(conn, t_ns)

    def _answered(self, conn: _Conn, t_ns: int) -> None:
        """The answer is complete before its body ended ([DONE], or an error body's first bytes):
        deliver it, drain the rest on the loop."""
        job = conn.job
        if job.error_body is None:
            job.t_end_ns = t_ns
        conn.job = None
        self._finish(job, None)
        if conn.body.complete:
            return self._release(conn)
        conn.drain_until, conn.drained = time.perf_counter_ns() + int(DRAIN_S * 1e9), 0

    def _drain(self, conn: _Conn, data: bytes) -> None:
        conn.drained += len(data)
        conn.body.feed(data)
        if conn.body.complete or not data or conn.drained > DRAIN_BYTES:
            conn.keep = conn.keep and conn.body.complete and not conn.body.extra
            self._release(conn)

    def _ended(self, conn: _Conn, t_ns: int) -> None:
        """The body ended (its framing said so, or the connection closed)."""
        job = conn.job
        if job.error_body is None:
            job.sink.end()
            job.t_end_ns = t_ns
        conn.job = None
        conn.keep = conn.keep and conn.body.complete and not conn.body.extra and not conn.body.until_close
        self._finish(job, None)
        self._release(conn)

    def _eof(self, conn: _Conn, t_ns: int) -> None:
        if conn.body is not None and conn.body.until_close:
            conn.body.complete = True
            return self._ended(conn, t_ns)
        raise ConnectionResetError("the server closed the connection" + (
            " before the answer was complete" if conn.body is not None else " without answering"))

    # -- endings
    def _guard(self, conn: _Conn, step: Any) -> None:
        """Run one step of a connection; whatever it raises ends that connection's request only."""
        try:
            step(conn)
        except ResponseError as e:
            self._fail(conn, (e.kind, e.detail))
        except OSError as e:
            job = conn.job
            unsent = conn.out is job.request if job is not None else False
            if job is not None and conn.body is None and not conn.head and (conn.reused or unsent):
                self._drop(conn)  # nothing of an answer came (and, on a new connection, nothing was sent)
                if not self._retry(job, conn):
                    self._finish(job, ("connection", f"{type(e).__name__}: {e}"))
                return
            self._fail(conn, ("broken" if conn.body is not None else "connection", f"{type(e).__name__}: {e}"))
        except Exception as e:  # noqa: BLE001 - a server's bytes must never stop the loop
            self._fail(conn, ("protocol", f"unreadable answer ({type(e).__name__}: {excerpt(str(e))})"))

    def _fail(self, conn: _Conn, error: tuple[str, str]) -> None:
        job = conn.job
        self._drop(conn)
        if job is not None:
            self._finish(job, error)

    def _sweep(self, now: int) -> None:
        for conn in list(self._active):
            job = conn.job
            if job is None:
                if conn.drain_until and now > conn.drain_until:
                    conn.keep = False
                    self._release(conn)
                continue
            if now >= job.t0_ns + job.timeout_s * 1e9:
                self._fail(conn, ("timeout", f"no complete answer within {job.timeout_s:g} s"))
            elif job.stall_s is not None and now - conn.last_ns >= job.stall_s * 1e9:
                self._fail(conn, ("stall", f"silent for more than {job.stall_s:g} s"))
        cutoff = time.monotonic() - IDLE_S
        for idle in self._pool.values():
            for conn in [c for c in idle if c.idle_since < cutoff]:
                idle.remove(conn)
                conn.sock.close()

    def _finish(self, job: Job, error: tuple[str, str] | None, conn: _Conn | None = None) -> None:
        if error is not None and job.error is None:
            job.error = error
        if conn is not None:
            conn.job = None
            self._release(conn)
        job.done.set()

    def _release(self, conn: _Conn) -> None:
        """The connection's answer is over: back to the pool, or closed."""
        if not conn.keep:
            return self._drop(conn)
        self._unwatch(conn)
        conn.drain_until, conn.job, conn.body, conn.idle_since = 0, None, None, time.monotonic()
        self._pool.setdefault(conn.origin, []).append(conn)

    def _drop(self, conn: _Conn) -> None:
        self._unwatch(conn)
        conn.sock.close()

    def _unwatch(self, conn: _Conn) -> None:
        self._active.discard(conn)
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass


def _strerror(code: int) -> str:
    try:
        import os

        return os.strerror(code)
    except ValueError:
        return "error"


_loop: Loop | None = None
_loop_lock = threading.Lock()


def loop() -> Loop:
    """The process's loop, started on first use."""
    global _loop
    with _loop_lock:
        if _loop is None or not _loop.thread.is_alive():
            _loop = Loop()
        return _loop


def run(job: Job) -> Job:
    """Submit ``job`` and wait for it (a little past its timeout at most: the loop ends it then)."""
    runner = loop()
    runner.submit(job)
    while not job.done.wait(0.5):
        if not runner.thread.is_alive():
            job.error = job.error or ("connection", "bench's network loop stopped")
            break
    return job
