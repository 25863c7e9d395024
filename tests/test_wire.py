"""bench's own HTTP/1.1 client (bench.measure.wire, bench.measure.http1): framing read exactly
however the bytes are split, bounded, and the connection handling a load test depends on
(keep-alive, a kept-alive connection the server closed, a host's second address, interim
answers), against real sockets. The timed behaviour (TTFT, stalls, timeouts, hostile servers) is
tested in test_client.py and test_hostile_server.py, which run on both clients."""

from __future__ import annotations

import socket
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.config import Endpoint, Generation
from bench.errors import ResponseError
from bench.measure import client as bench_client
from bench.measure import wire
from bench.measure.client import make_client, measure_plain, measure_stream
from bench.measure.http1 import Body, BodySink, parse_head
from tests.fake_server import FakeServer, Script

CHUNKED = (b"7;ext=1\r\nhello, \r\n6\r\nworld!\r\n0\r\nX-Trailer: yes\r\n\r\n")


def _feed(body: Body, data: bytes, cuts: list[int]) -> bytes:
    out, last = b"", 0
    for cut in sorted(set(c % (len(data) + 1) for c in cuts)) + [len(data)]:
        out += body.feed(data[last:cut])
        last = cut
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=200), max_size=8))
def test_chunked_framing_reads_the_same_payload_however_the_bytes_are_split(cuts):
    body = Body({"transfer-encoding": "chunked"})
    assert _feed(body, CHUNKED, cuts) == b"hello, world!" and body.complete and not body.extra


def test_bytes_after_the_last_chunk_mean_the_connection_is_not_reused():
    body = Body({"transfer-encoding": "chunked"})
    assert body.feed(CHUNKED + b"HTTP/1.1 200 OK\r\n") == b"hello, world!" and body.complete and body.extra


@pytest.mark.parametrize("data,kind", [
    (b"zz\r\nhello\r\n", "protocol"),  # not hex
    (b"-5\r\nhello\r\n", "protocol"),
    (b"5\r\nhelloXX0\r\n\r\n", "protocol"),  # a chunk not followed by CRLF
    (b"1" * 5000, "protocol"),  # an endless chunk-size line
    (b"1000000000000000\r\n", "protocol"),  # a size past any sane bound
    (b"0\r\n" + b"X: y\r\n" * 100 + b"\r\n", "runaway"),  # endless trailers
])
def test_broken_chunked_framing_fails_with_a_kind(data, kind):
    with pytest.raises(ResponseError) as e:
        Body({"transfer-encoding": "chunked"}).feed(data)
    assert e.value.kind == kind


def test_content_length_framing_and_what_follows_it():
    body = Body({"content-length": "5"})
    assert body.feed(b"hel") == b"hel" and not body.complete
    assert body.feed(b"loEXTRA") == b"lo" and body.complete and body.extra
    assert Body({"content-length": "0"}).complete
    until_close = Body({})
    assert until_close.until_close and until_close.feed(b"abc") == b"abc" and not until_close.complete


@pytest.mark.parametrize("headers", [{"content-length": "-1"}, {"content-length": "5, 6"}, {"content-length": "9" * 20},
                                     {"transfer-encoding": "gzip"}])
def test_bad_framing_headers_are_protocol_errors(headers):
    with pytest.raises(ResponseError) as e:
        Body(headers)
    assert e.value.kind == "protocol"


def test_the_header_block_is_parsed_strictly():
    status, headers, keep = parse_head(b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Type: text/plain")
    assert (status, headers, keep) == (200, {"x-a": "1, 2", "content-type": "text/plain"}, True)
    assert parse_head(b"HTTP/1.1 200 OK\r\nConnection: close")[2] is False
    assert parse_head(b"HTTP/1.0 200 OK")[2] is False
    for bad in (b"SSH-2.0-OpenSSH", b"HTTP/1.1 2000 OK", b"HTTP/1.1 200 OK\r\nno colon here", b"HTTP/1.1 200 OK\r\n X: y"):
        with pytest.raises(ResponseError) as e:
            parse_head(bad)
        assert e.value.kind == "protocol"


def test_an_error_body_is_kept_only_in_part_and_a_plain_body_is_bounded():
    part = BodySink(4, cut=True)
    assert part.feed(b"abcdef", 0) is True and bytes(part.data) == b"abcd"
    with pytest.raises(ResponseError) as e:
        BodySink(4).feed(b"abcdef", 0)
    assert e.value.kind == "runaway"


# ----------------------------------------------------------------------------- against sockets


class RawServer:
    """A TCP server answering each request with ``answer(n)`` (the n-th request), then keeping
    the connection or closing it (``close(n)``). Counts connections."""

    def __init__(self, answer, close=lambda n: False, family=socket.AF_INET, host="127.0.0.1"):
        self.answer, self.close, self.connections, self.requests = answer, close, 0, []
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, rest = buf.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
                while len(rest) < length:
                    rest += conn.recv(65536)
                buf = rest[length:]
                n = len(self.requests)
                self.requests.append(head)
                conn.sendall(self.answer(n))
                if self.close(n):
                    return


def _json_answer(text: str, extra: str = "") -> bytes:
    body = ('{"id": "x", "object": "chat.completion", "model": "m", "choices": [{"index": 0, "message": '
            f'{{"role": "assistant", "content": "{text}"}}, "finish_reason": "stop"}}]}}').encode()
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _plain(port: int, **kw):
    client = make_client(Endpoint(name="e", base_url=f"http://127.0.0.1:{port}/v1"), {})
    return measure_plain(client, "m", [{"role": "user", "content": "hi"}], Generation(max_tokens=8, stream=False), 5.0, **kw)


def test_kept_alive_connections_are_reused():
    srv = RawServer(lambda n: _json_answer(f"answer {n}"))
    outputs = [_plain(srv.port).output for _ in range(5)]
    assert outputs == [f"answer {n}" for n in range(5)] and srv.connections == 1


def test_a_kept_alive_connection_the_server_closed_is_replaced_without_a_failure():
    # The server says nothing about closing, then closes after each answer (as an idle timeout does).
    srv = RawServer(lambda n: _json_answer(f"answer {n}"), close=lambda n: True)
    outputs = []
    for _ in range(3):
        m = _plain(srv.port)
        assert m.error is None, m.detail
        outputs.append(m.output)
    assert outputs == ["answer 0", "answer 1", "answer 2"] and srv.connections == 3 and len(srv.requests) == 3


def test_connection_close_is_honoured():
    srv = RawServer(lambda n: _json_answer(f"answer {n}", "Connection: close\r\n"), close=lambda n: True)
    assert [_plain(srv.port).output for _ in range(2)] == ["answer 0", "answer 1"] and srv.connections == 2


def test_an_interim_100_continue_is_skipped():
    srv = RawServer(lambda n: b"HTTP/1.1 100 Continue\r\n\r\n" + _json_answer("after continue"))
    m = _plain(srv.port)
    assert m.error is None and m.output == "after continue"


def test_a_host_whose_first_address_refuses_is_reached_on_the_next():
    srv = RawServer(lambda n: _json_answer("on the second address"))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    job = wire.run(wire.Job([(socket.AF_INET, ("127.0.0.1", dead)), (socket.AF_INET, ("127.0.0.1", srv.port))],
                            ("test-host", 1), b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                            BodySink(1 << 20), 5.0, None))
    assert job.error is None and job.status == 200 and b"on the second address" in bytes(job.sink.data)
    refused = wire.run(wire.Job([(socket.AF_INET, ("127.0.0.1", dead))], ("test-host", 2), b"x", BodySink(10), 5.0, None))
    assert refused.error[0] == "connection" and "Connection refused" in refused.error[1]


def test_a_key_with_a_line_break_is_refused_before_anything_is_sent():
    srv = RawServer(lambda n: _json_answer("never"))
    client = make_client(Endpoint(name="e", base_url=f"http://127.0.0.1:{srv.port}/v1", api_key_env="K"),
                         {"K": "sk-x\r\nX-Injected: 1"})
    m = measure_plain(client, "m", [{"role": "user", "content": "hi"}], Generation(max_tokens=8, stream=False), 5.0)
    assert m.error == "client_error" and "line break" in m.detail and srv.requests == []


def test_many_streams_share_one_loop_thread():
    with FakeServer() as srv:
        srv.set_model("m", Script(ttft_s=0.05, itl_s=0.005))
        client = make_client(Endpoint(name="e", base_url=srv.url), {})
        before = set(threading.enumerate())
        results, seen = [], set()

        def one():
            results.append(measure_stream(client, "m", [{"role": "user", "content": "hi"}], Generation(max_tokens=30),
                                          10.0, 5.0))

        threads = [threading.Thread(target=one) for _ in range(32)]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            seen.update(threading.enumerate())
            threads[0].join(0.01)
    assert all(m.error is None and len(m.chunk_times) == 20 for m in results)
    # Besides the callers' own threads and the scripted server's: at most the loop, no thread per request.
    extra = {t.name for t in seen - before - set(threads) if "process_request" not in t.name}
    assert extra <= {"bench-wire"}, extra
    assert all(0.045 < (m.ttft_ns / 1e9) < 0.5 for m in results)


def test_the_httpx_client_is_used_for_https_and_when_asked(monkeypatch):
    http = make_client(Endpoint(name="e", base_url="http://127.0.0.1:9/v1?api-version=2"), {})
    assert bench_client._wire_target(http) == ("127.0.0.1", 9, "/v1/chat/completions?api-version=2")
    assert bench_client._wire_target(make_client(Endpoint(name="e", base_url="https://example.com/v1"), {})) is None
    monkeypatch.setenv("BENCH_HTTP_CLIENT", "httpx")
    assert bench_client._wire_target(http) is None
    monkeypatch.delenv("BENCH_HTTP_CLIENT")
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("no_proxy", "")
    assert bench_client._wire_target(make_client(Endpoint(name="e", base_url="http://example.com/v1"), {})) is None
