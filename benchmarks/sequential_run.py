"""Does a change to bench make a sequential run slower? Two trees, one server, side by side.

Starts the scripted OpenAI-compatible server (tests/fake_server.py: fixed TTFT and token gaps,
so the server's own time is known) and runs `bench collect` of the same small matrix with each
tree in turn, A B A B ..., then prints per tree the median wall time of the whole command, the
sum of the requests' end-to-end times, and bench's own time per request
((wall - sum of e2e) / requests), with the B/A ratio of each pair.

    python benchmarks/sequential_run.py --a REV [--b REV] [--pairs 5] [--rounds 5]

A and B are git revisions (checked out into temporary worktrees); B defaults to the working tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = {"models": {"m": {"ttft_s": 0.05, "itl_s": 0.005, "tokens": [f"tok{i} " for i in range(40)]}}}


def _server(workdir: Path) -> tuple[subprocess.Popen, str]:
    config = workdir / "script.json"
    config.write_text(json.dumps(SCRIPT))
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "fake_server.py"), "--port", "0", "--config",
                             str(config)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if not line or line[0] != "READY":
        proc.kill()
        raise SystemExit("the scripted server did not start")
    return proc, line[1]


def _tree(rev: str | None, workdir: Path, name: str) -> Path:
    if rev is None:
        return ROOT
    path = workdir / name
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
    return path


def _once(tree: Path, url: str, rounds: int, out: Path) -> tuple[float, float, int]:
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "bench", "collect", "--endpoint", url, "--models", "m", "--rounds", str(rounds),
           "--results-dir", str(out), "-q"]
    env = {**os.environ, "PYTHONPATH": str(tree), "OPENAI_API_KEY": "x"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=out, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"bench collect failed in {tree}:\n{done.stderr}")
    [path] = out.glob("*.json")
    run = json.loads(path.read_text())
    e2e = sum(a["elapsed_s"] for s in run["samples"] for a in s["attempts"])
    return wall, e2e, sum(len(s["attempts"]) for s in run["samples"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="git revision of tree A")
    ap.add_argument("--b", default=None, help="git revision of tree B (default: the working tree)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        trees = {"A": _tree(args.a, work, "a"), "B": _tree(args.b, work, "b")}
        proc, url = _server(work)
        rows: dict[str, list[tuple[float, float, int]]] = {"A": [], "B": []}
        try:
            for i in range(args.pairs + 1):  # the first pair warms caches and is not counted
                for name, tree in trees.items():
                    r = _once(tree, url, args.rounds, work / f"{name}{i}")
                    if i:
                        rows[name].append(r)
        finally:
            proc.terminate()
            for name in ("a", "b"):
                if (work / name).exists():
                    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(work / name)])
    print(f"A = {args.a}, B = {args.b or 'working tree'}; {args.pairs} pairs; "
          f"each run: 4 prompts x {args.rounds} rounds + warmup against the scripted server")
    for name in ("A", "B"):
        walls = [w for w, _, _ in rows[name]]
        own = [(w - e) / n * 1000 for w, e, n in rows[name]]
        e2e = [e for _, e, _ in rows[name]]
        print(f"{name}: wall {statistics.median(walls):6.2f} s   sum of e2e {statistics.median(e2e):6.2f} s   "
              f"bench's own time {statistics.median(own):6.1f} ms/request")
    wall_ratio = [b[0] / a[0] for a, b in zip(rows["A"], rows["B"])]
    own_ratio = [((b[0] - b[1]) / b[2]) / ((a[0] - a[1]) / a[2]) for a, b in zip(rows["A"], rows["B"])]
    print(f"B/A wall: median {statistics.median(wall_ratio):.3f} (min {min(wall_ratio):.3f}, max {max(wall_ratio):.3f})")
    print(f"B/A own time per request: median {statistics.median(own_ratio):.3f} "
          f"(min {min(own_ratio):.3f}, max {max(own_ratio):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
