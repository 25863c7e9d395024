"""How much does bench's load client add under concurrency? bench beside a raw-socket reference.

Starts a paced OpenAI-compatible server in its own process (benchmarks/paced_server.py: a 50 ms
time to first token, then 40 tokens 5 ms apart, one thread writing every chunk on schedule, so
its own time is known at every level),
then at each concurrency level runs, one after the other against the same server:

* a raw-socket reference client: one thread and one selector over every stream's plain socket,
  taking the time to first token when the first token's bytes arrive (no HTTP library, no JSON
  parsing), and
* bench: `bench collect --concurrency C` run in this process (imports excluded from its CPU).

It prints, per level, the median TTFT of each and bench's added median TTFT, the most streams
each had in flight at once (from its own request intervals), and CPU time per request (process
CPU over the requests sent, warmup and cool-down included).

    python benchmarks/load_overhead.py [--levels 1,16,64] [--per-stream 4]
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TOKENS = [f"tok{i} " for i in range(40)]
SCRIPT = {"models": {"m": {"ttft_s": 0.05, "itl_s": 0.005, "tokens": TOKENS}}}


def _server(workdir: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "paced_server.py"), "--ttft", "0.05", "--itl",
                             "0.005", "--tokens", "40"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise SystemExit("the paced server did not start")
    return proc, line[1]


def raw_level(url: str, streams: int, per_stream: int) -> dict:
    """The reference: one thread, one selector over all streams' plain sockets, a new connection
    per request (the scripted server closes each), the time to first token taken when the first
    token's bytes arrive: no HTTP library, no JSON parsing."""
    parts = urlsplit(url)
    body = json.dumps({"model": "m", "stream": True, "max_tokens": 150,
                       "messages": [{"role": "user", "content": "hello"}]}).encode()
    request = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    sel = selectors.DefaultSelector()
    results: list[tuple[float, float, float]] = []
    left = {i: per_stream for i in range(streams)}

    def start(i: int) -> None:
        sock = socket.create_connection((parts.hostname, parts.port))
        t0 = time.perf_counter()
        sock.sendall(request)
        sel.register(sock, selectors.EVENT_READ, [i, t0, None, b""])

    cpu0 = time.process_time()
    for i in range(streams):
        start(i)
    while left:
        for key, _ in sel.select():
            state, data = key.data, key.fileobj.recv(65536)
            now = time.perf_counter()
            if state[2] is None:
                state[3] = (state[3] + data)[-4096:]
                if b'"content": "tok' in state[3]:
                    state[2] = now - state[1]
            if data:
                continue
            sel.unregister(key.fileobj)
            key.fileobj.close()
            results.append((state[1], state[2] if state[2] is not None else float("nan"), now))
            left[state[0]] -= 1
            if left[state[0]]:
                start(state[0])
            else:
                del left[state[0]]
    cpu = time.process_time() - cpu0
    steady = results[streams:]  # the first request of each stream is its ramp-up, as in bench
    return {"ttft_p50": statistics.median(r[1] for r in steady), "in_flight": _max_overlap([(r[0], r[2]) for r in results]),
            "cpu_per_request_ms": cpu / len(results) * 1000}


def _bench_run(url: str, streams: int, measured: int, workdir: Path) -> tuple[float, object]:
    from bench.config import resolve
    from bench.measure import runner
    from bench.results import store

    plan, writer = runner.prepare(resolve(None, env={}, endpoint=url, models="m", warmup=0, concurrency=[streams],
                                          requests_per_level=measured, results_dir=workdir / f"r-{streams}-{measured}"))
    cpu0 = time.process_time()
    out = runner.collect(plan, writer, env={}, sleep=lambda s: None)
    return time.process_time() - cpu0, store.load_run(out.path)


def bench_level(url: str, streams: int, per_stream: int, workdir: Path) -> dict:
    """CPU per request with start-up excluded: two runs of different sizes, the difference of
    their CPU over the difference of their requests (probing, opening the run, folding it cancel)."""
    cpu_small, small = _bench_run(url, streams, streams * (per_stream - 1), workdir)
    cpu, run = _bench_run(url, streams, 2 * streams * (per_stream - 1), workdir)
    measured = [s for s in run.samples if not s.warmup and s.ok]
    intervals = [(_t(s), _t(s) + s.e2e_s) for s in run.samples if s.e2e_s is not None]
    extra = len(run.samples) - len(small.samples)
    return {"ttft_p50": statistics.median(s.ttft_s for s in measured), "in_flight": _max_overlap(intervals),
            "cpu_per_request_ms": (cpu - cpu_small) / extra * 1000 if extra > 0 else float("nan"),
            "errors": sum(not s.ok for s in run.samples)}


def _t(s) -> float:
    return datetime.fromisoformat(s.started_at.replace("Z", "+00:00")).timestamp()


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1]))
    now = best = 0
    for _, d in events:
        now += d
        best = max(best, now)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1,16,64")
    ap.add_argument("--per-stream", type=int, default=4, help="requests per stream (the first is ramp-up)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _server(Path(tmp))
        try:
            print(f"paced server: TTFT 50 ms, 40 tokens 5 ms apart; {args.per_stream} requests per stream")
            print(f"{'streams':>7} | {'TTFT p50 raw':>12} {'bench':>8} {'added':>8} | {'in flight raw':>13} {'bench':>6} |"
                  f" {'CPU/request raw':>15} {'bench':>8}")
            for level in [int(x) for x in args.levels.split(",")]:
                raw = raw_level(url, level, args.per_stream)
                ours = bench_level(url, level, args.per_stream, Path(tmp))
                print(f"{level:>7} | {raw['ttft_p50'] * 1000:>9.1f} ms {ours['ttft_p50'] * 1000:>5.1f} ms "
                      f"{(ours['ttft_p50'] - raw['ttft_p50']) * 1000:>+5.1f} ms | {raw['in_flight']:>9} of {level:<2}"
                      f" {ours['in_flight']:>6} | {raw['cpu_per_request_ms']:>12.2f} ms {ours['cpu_per_request_ms']:>5.2f} ms"
                      + (f"  ({ours['errors']} errors)" if ours["errors"] else ""))
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
