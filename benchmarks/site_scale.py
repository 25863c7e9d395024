"""How does rendering and building the site grow with the number of runs?

Writes 100 and then 1,000 synthetic results files (10 models x 20 prompts x 3 rounds each),
times `bench render` and `mkdocs build --strict` on each in the same session, and prints both
times and their ratio. Linear growth means a ratio of about 10; the target is "no worse than linear".

Usage: python benchmarks/site_scale.py [--small 100] [--large 1000] [--engine mkdocs|zensical]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results.schema import SCHEMA_VERSION  # noqa: E402
from bench.results.store import workload  # noqa: E402

MODELS = [f"model-{i:02d}" for i in range(10)]
PROMPTS = [{"id": f"prompt-{i:02d}", "text": f"Synthetic prompt number {i}: summarize the notes."} for i in range(20)]
GEN = {"max_tokens": 150, "temperature": 0.0, "seed": 42, "stream": True}


def synthetic_run(k: int, rng: random.Random) -> dict:
    start = datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(hours=k)
    run_id = start.strftime("%Y%m%dT%H%M%S.000Z-") + f"{k:06x}"
    samples = []
    for mi, m in enumerate(MODELS):
        for r in range(3):
            for p in PROMPTS:
                ttft = 0.05 + 0.01 * mi + rng.random() * 0.01
                itl = [0.01 + 0.002 * mi + rng.random() * 0.001 for _ in range(20)]
                samples.append({
                    "model": m, "prompt_id": p["id"], "round": r, "warmup": False, "ok": True,
                    "started_at": start.isoformat(), "stream": True, "ttft_s": ttft,
                    "e2e_s": ttft + sum(itl), "itl_s": itl, "chunks": 21, "completion_tokens": 21,
                    "prompt_tokens": 30, "tokens_source": "usage", "finish_reason": "stop",
                    "resolved_model": m, "output": f"Answer of {m} to {p['id']} in round {r}.",
                    "attempts": [{"elapsed_s": ttft + sum(itl)}],
                })
    return {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "status": "complete",
        "started_at": start.isoformat().replace("+00:00", "Z"), "ended_at": None, "bench_version": "0.1.0",
        "git": {"commit": hashlib.sha1(str(k).encode()).hexdigest(), "branch": "main", "dirty": False},
        "machine": {"os": "Linux", "python": "3.11", "cpu": "synthetic", "cores_logical": 2, "ram_bytes": 2**34},
        "endpoints": [{"name": "default", "base_url": "http://127.0.0.1:8080/v1", "reachable": True, "models": MODELS}],
        "models": {m: {"name": m, "endpoint": "default", "status": "ok", "license": "Apache-2.0",
                       "extra": {"peak_rss_bytes": (i + 1) * 2**28, "disk_bytes": (i + 1) * 2**27}}
                   for i, m in enumerate(MODELS)},
        "workload": workload(PROMPTS, GEN).model_dump(), "config": {"rounds": 3, "warmup": 0}, "samples": samples,
    }


def timed(cmd: list[str], cwd: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def measure(n: int, engine: str, workdir: Path) -> tuple[float, float]:
    proj = workdir / f"site-{n}"
    shutil.copytree(ROOT / "site_src", proj / "site_src", ignore=shutil.ignore_patterns("report", "index.md"))
    shutil.copytree(ROOT / "overrides", proj / "overrides")
    (proj / "bench" / "report").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "report" / "mkdocs_hook.py", proj / "bench" / "report")
    text = (ROOT / "mkdocs.yml").read_text()
    if engine == "zensical":  # the hook is MkDocs-only; pages come from `bench render`
        text = text.replace("hooks:\n  - bench/report/mkdocs_hook.py\n", "")
    (proj / "mkdocs.yml").write_text(text)
    (proj / "results").mkdir()
    rng = random.Random(n)
    for k in range(n):
        run = synthetic_run(k, rng)
        (proj / "results" / f"{run['run_id']}.json").write_text(json.dumps(run))
    render_s = timed([sys.executable, "-m", "bench", "render"], proj)
    if engine == "mkdocs":
        build = [sys.executable, "-m", "mkdocs", "build", "--strict"]
    else:
        build = [str(Path(sys.executable).parent / "zensical"), "build"]
    build_s = timed(build, proj)
    return render_s, build_s


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--engine", choices=["mkdocs", "zensical"], default="mkdocs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        small = measure(args.small, args.engine, Path(tmp))
        large = measure(args.large, args.engine, Path(tmp))
    growth = args.large / args.small
    print(f"{'files':>6} {'render s':>9} {'build s':>9} {'total s':>9}")
    for n, (r, b) in ((args.small, small), (args.large, large)):
        print(f"{n:>6} {r:>9.1f} {b:>9.1f} {r + b:>9.1f}")
    ratio = sum(large) / sum(small)
    print(f"ratio {args.large}/{args.small} files: {ratio:.2f} (linear = {growth:.0f}); "
          f"{'no worse than linear' if ratio <= growth * 1.1 else 'WORSE than linear'}")
    return 0 if ratio <= growth * 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
