"""How much time does bench add around the requests it measures?

Runs the default embedded matrix (2 models x 4 prompts x 3 rounds + 1 warmup, 150 max tokens)
and compares, in the same run:

    wall time of `bench collect`            (process start to exit)
    sum of request end-to-end times + model load times   (what the models themselves need)

Target: ratio <= 1.3. Usage: python benchmarks/harness_overhead.py [--rounds N] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default=None, help="default: the built-in embedded models")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "bench", "collect", "--rounds", str(args.rounds), "--results-dir", tmp, "-q"]
        if args.models:
            cmd += ["--models", args.models]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)})
        wall = time.perf_counter() - t0
        [path] = Path(tmp).glob("*.json")
        run = json.loads(path.read_text())
    e2e = sum(a["elapsed_s"] for s in run["samples"] for a in s["attempts"])
    load = sum(m["extra"].get("load_s", 0) for m in run["models"].values())
    requests = sum(len(s["attempts"]) for s in run["samples"])
    need = e2e + load
    print(f"models: {', '.join(run['models'])}; requests (all attempts, warmup included): {requests}")
    print(f"sum of request e2e times : {e2e:8.2f} s")
    print(f"sum of model load times  : {load:8.2f} s")
    print(f"bench collect wall time  : {wall:8.2f} s")
    ratio = wall / need
    print(f"ratio wall / (e2e + load): {ratio:8.3f}   (target <= 1.30: {'met' if ratio <= 1.3 else 'NOT met'})")
    return 0 if ratio <= 1.3 else 1


if __name__ == "__main__":
    sys.exit(main())
