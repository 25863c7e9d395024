"""What does watching a server's memory cost? The sampler's CPU per sample, side by side.

bench samples the resident memory of a server's process tree 20 times a second while a model
runs. Finding the tree (psutil's children()) reads every process on the machine; this prints
the CPU per sample when the tree is found on every sample (as bench did) and when it is found
once a second and each sample reads only the tree's processes (as bench does), and the ratio.

    python benchmarks/memory_sampler.py [--seconds 3] [--children 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.runtimes.process import MemorySampler  # noqa: E402


def cost(refresh_s: float, seconds: float) -> float:
    sampler = MemorySampler(os.getpid(), tree_refresh_s=refresh_s)
    c0, t0, n = time.process_time(), time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        sampler.rss()
        n += 1
    return (time.process_time() - c0) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--children", type=int, default=3)
    args = ap.parse_args()
    kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"]) for _ in range(args.children)]
    try:
        before, now = cost(0.0, args.seconds), cost(1.0, args.seconds)
    finally:
        for k in kids:
            k.kill()
    print(f"processes on this machine: {len(os.listdir('/proc')) if os.path.isdir('/proc') else '?'} /proc entries")
    print(f"tree found on every sample: {before * 1000:.3f} ms CPU per sample")
    print(f"tree found once a second:   {now * 1000:.3f} ms CPU per sample  ({before / now:.1f}x less)")
    print(f"at 20 samples/s: {before * 20 * 1000:.1f} -> {now * 20 * 1000:.1f} ms CPU per second of a run")


if __name__ == "__main__":
    main()
