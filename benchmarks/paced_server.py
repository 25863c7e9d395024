"""A scripted OpenAI-compatible server that keeps its timing under load, for load benchmarks.

tests/fake_server.py runs one thread per connection; at 64 streams of 40 tokens 5 ms apart it
must write ~10,000 chunks a second and its own queueing shows up as time to first token (the
clients then measure the server, not themselves). This one is a single thread on one selector
with every chunk pre-encoded and a heap of due times: it writes each chunk when it is due, to
every stream alike, so the time a client measures beyond the script is the client's.

Answers POST /v1/chat/completions (streamed: a role chunk, one chunk per token, a final chunk
with finish_reason and usage, [DONE]; chunked, then the connection closes; or a plain JSON
answer), GET /v1/models; anything else 404.

    python benchmarks/paced_server.py [--ttft 0.05] [--itl 0.005] [--tokens 40]   # prints READY URL
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import selectors
import socket
import time

MODEL = "m"


def _chunk(delta: dict, finish: str | None = None, usage: dict | None = None) -> bytes:
    obj = {"id": "chatcmpl-paced", "object": "chat.completion.chunk", "created": 1, "model": MODEL,
           "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], "usage": usage}
    data = b"data: " + json.dumps(obj).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


class Paced:
    def __init__(self, ttft_s: float, itl_s: float, tokens: int):
        self.ttft_s, self.itl_s = ttft_s, itl_s
        usage = {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens}
        head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
                b"Connection: close\r\n\r\n")
        self.first = head + _chunk({"role": "assistant", "content": ""})
        self.tokens = [_chunk({"content": f"tok{i} "}) for i in range(tokens)]
        self.last = _chunk({}, "stop", usage) + b"%x\r\ndata: [DONE]\n\n\r\n0\r\n\r\n" % len(b"data: [DONE]\n\n")
        text = "".join(f"tok{i} " for i in range(tokens))
        body = json.dumps({"id": "chatcmpl-paced", "object": "chat.completion", "created": 1, "model": MODEL,
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"}], "usage": usage}).encode()
        self.plain = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body), body)
        models = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
        self.models = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            len(models), models)
        self.missing = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        self.sel = selectors.DefaultSelector()
        self.due: list[tuple[float, int, socket.socket, int, float]] = []
        self.order = itertools.count()

    def serve(self, listener: socket.socket) -> None:
        listener.setblocking(False)
        self.sel.register(listener, selectors.EVENT_READ, None)
        while True:
            timeout = max(0.0, self.due[0][0] - time.perf_counter()) if self.due else None
            for key, _ in self.sel.select(timeout):
                if key.data is None:
                    self._accept(listener)
                else:
                    self._read(key.fileobj, key.data)
            now = time.perf_counter()
            while self.due and self.due[0][0] <= now:
                _, _, sock, k, t0 = heapq.heappop(self.due)
                self._write(sock, k, t0)

    def _accept(self, listener: socket.socket) -> None:
        try:
            while True:
                sock, _ = listener.accept()
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sel.register(sock, selectors.EVENT_READ, bytearray())
        except BlockingIOError:
            pass

    def _read(self, sock: socket.socket, buf: bytearray) -> None:
        t0 = time.perf_counter()
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.sel.unregister(sock)
            sock.close()
            return
        buf += data
        head, sep, body = bytes(buf).partition(b"\r\n\r\n")
        if not sep:
            return
        lines = head.split(b"\r\n")
        length = next((int(x.split(b":", 1)[1]) for x in lines if x.lower().startswith(b"content-length:")), 0)
        if len(body) < length:
            return
        del buf[: len(head) + 4 + length]
        method, path = lines[0].split(b" ")[:2]
        if method == b"POST" and path.endswith(b"/chat/completions"):
            if b'"stream": true' in body or b'"stream":true' in body:
                self.sel.unregister(sock)  # nothing more is read: the answer is paced from the heap
                sock.setblocking(True)
                sock.sendall(self.first)
                heapq.heappush(self.due, (t0 + self.ttft_s, next(self.order), sock, 0, t0))
                return
            sock.sendall(self.plain)
        else:
            sock.sendall(self.models if path.endswith(b"/models") else self.missing)

    def _write(self, sock: socket.socket, k: int, t0: float) -> None:
        """Token k of the stream that began at t0 (the schedule is t0's, not the last write's)."""
        try:
            if k < len(self.tokens):
                sock.sendall(self.tokens[k])
                heapq.heappush(self.due, (t0 + self.ttft_s + (k + 1) * self.itl_s, next(self.order), sock, k + 1, t0))
                return
            sock.sendall(self.last)
        except OSError:
            pass
        sock.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ttft", type=float, default=0.05)
    ap.add_argument("--itl", type=float, default=0.005)
    ap.add_argument("--tokens", type=int, default=40)
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(1024)
    print(f"READY http://127.0.0.1:{listener.getsockname()[1]}/v1", flush=True)
    Paced(args.ttft, args.itl, args.tokens).serve(listener)


if __name__ == "__main__":
    main()
