"""How does rendering and building the site grow with the number of runs?

Writes 100 and then 1,000 synthetic results files (10 models x 20 prompts x 3 rounds each), times
`bench render` once and a cold build of the rendered pages with each engine (`mkdocs build --strict`
and `zensical build`) in the same session, and prints render, build and total per engine, the ratio
1,000/100 (linear growth is about 10) and the cost of each added run. Targets: no worse than linear,
and render + build of 1,000 files within 60 s on a 2-core VM. Exit status 1 when a target is missed.

Usage: python benchmarks/site_scale.py [--small 100] [--large 1000] [--engine both|mkdocs|zensical]
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


def measure(n: int, engines: list[str], workdir: Path) -> tuple[float, dict[str, float]]:
    """Write n results files, time `bench render` once, then a cold build of the rendered pages with
    each engine (each its own output folder; MkDocs' hook finds the pages current and skips)."""
    proj = workdir / f"site-{n}"
    shutil.copytree(ROOT / "site_src", proj / "site_src", ignore=shutil.ignore_patterns("report", "index.md"))
    shutil.copytree(ROOT / "overrides", proj / "overrides")
    (proj / "bench" / "report").mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "report" / "mkdocs_hook.py", proj / "bench" / "report")
    text = (ROOT / "mkdocs.yml").read_text()
    (proj / "mkdocs.yml").write_text(text)
    # The hook is MkDocs-only; Zensical builds the pages `bench render` wrote.
    (proj / "zensical.yml").write_text(text.replace("hooks:\n  - bench/report/mkdocs_hook.py\n", ""))
    (proj / "results").mkdir()
    rng = random.Random(n)
    for k in range(n):
        run = synthetic_run(k, rng)
        (proj / "results" / f"{run['run_id']}.json").write_text(json.dumps(run))
    render_s = timed([sys.executable, "-m", "bench", "render"], proj)
    builds = {}
    for engine in engines:
        if engine == "mkdocs":
            cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", "site-mkdocs"]
        else:
            (proj / "zensical.yml").write_text((proj / "zensical.yml").read_text().replace(
                "docs_dir: site_src\n", "docs_dir: site_src\nsite_dir: site-zensical\n"))
            cmd = [str(Path(sys.executable).parent / "zensical"), "build", "--clean", "-f", "zensical.yml"]
        builds[engine] = timed(cmd, proj)
    return render_s, builds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=100)
    ap.add_argument("--large", type=int, default=1000)
    ap.add_argument("--engine", choices=["both", "mkdocs", "zensical"], default="both")
    ap.add_argument("--target", type=float, default=60.0, help="seconds allowed for render + build at --large")
    args = ap.parse_args()
    engines = ["mkdocs", "zensical"] if args.engine == "both" else [args.engine]
    with tempfile.TemporaryDirectory() as tmp:
        figures = {n: measure(n, engines, Path(tmp)) for n in (args.small, args.large)}
    growth = args.large / args.small
    print(f"{'files':>6} {'render s':>9}" + "".join(f" {e + ' build s':>17} {'total s':>8}" for e in engines))
    for n, (r, builds) in figures.items():
        print(f"{n:>6} {r:>9.1f}" + "".join(f" {builds[e]:>17.1f} {r + builds[e]:>8.1f}" for e in engines))
    ok = True
    for e in engines:
        (rs, bs), (rl, bl) = figures[args.small], figures[args.large]
        small, large = rs + bs[e], rl + bl[e]
        per_run = (large - small) / (args.large - args.small) * 1000
        linear = large / small <= growth * 1.1
        within = large <= args.target
        ok = ok and linear and within
        print(f"{e}: ratio {args.large}/{args.small} files {large / small:.2f} (linear = {growth:.0f}), "
              f"{per_run:.0f} ms per added run; {args.large} files in {large:.1f} s "
              f"({'within' if within else 'OVER'} the {args.target:.0f} s target; "
              f"{'no worse than linear' if linear else 'WORSE than linear'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
