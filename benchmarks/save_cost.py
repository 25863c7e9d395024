"""Does saving a request cost the same in a long run as in a short one?

Runs `bench collect` against a fast scripted server (a separate process: its CPU is not bench's)
twice in one go: 300 and 3,000 requests (10 prompts x 30 and x 300 rounds, 3 tokens each, no
warmup), and prints the wall time per request of each and their ratio. Each finished request is
appended to the run's journal (fsync'd); the run file is written once, at the end. Before the
journal, the whole run file was rewritten after every request: 5 ms per save at 100 samples,
0.5 s at 10,000.

Target: ratio (3,000 / 300) <= 1.2. Usage: python benchmarks/save_cost.py [--small 300 --large 3000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = 10


def start_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    script = tmp / "script.json"
    script.write_text(json.dumps({"models": {"fast": {"tokens": ["a ", "b ", "c "]}}, "tokenize": False}))
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port", "0",
                             "--config", str(script)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"the scripted server did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


def per_request(url: str, tmp: Path, requests: int) -> float:
    prompts = tmp / "prompts.json"
    prompts.write_text(json.dumps([f"Prompt {i}: say something." for i in range(PROMPTS)]))
    results = tmp / f"results-{requests}"
    cmd = [sys.executable, "-m", "bench", "collect", "--endpoint", url, "--models", "fast", "--prompts",
           str(prompts), "--rounds", str(requests // PROMPTS), "--warmup", "0", "--results-dir", str(results), "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(cmd, check=True, env=env, cwd=tmp, stdout=subprocess.DEVNULL)
    end = time.time()
    [path] = results.glob("*.json")
    samples = json.loads(path.read_text())["samples"]
    if sum(1 for s in samples if s["ok"]) != requests:
        raise SystemExit(f"expected {requests} successful requests, got {sum(1 for s in samples if s['ok'])}")
    # From the first request to the process's exit: every save and the final fold, start-up excluded.
    first = datetime.fromisoformat(samples[0]["started_at"].replace("Z", "+00:00")).timestamp()
    return (end - first) / requests


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=300)
    ap.add_argument("--large", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        server, url = start_server(tmp)
        try:
            small = per_request(url, tmp, args.small)
            large = per_request(url, tmp, args.large)
        finally:
            server.terminate()
            server.wait(timeout=10)
    ratio = large / small
    print(f"{args.small:>6} requests: {small * 1000:7.2f} ms per request (first request to exit: saves and final fold included)")
    print(f"{args.large:>6} requests: {large * 1000:7.2f} ms per request")
    print(f"ratio {args.large} / {args.small}: {ratio:.3f}   (target <= 1.20: {'met' if ratio <= 1.2 else 'NOT met'})")
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
