"""How often does `bench diff --fail-on-regression` fire by mistake, and how often does it catch a
real slowdown? Measured through the real path: the scripted server with run-to-run noise (a
log-normal factor per server start, sd 4%, and per request, sd 2%), a fresh server per run,
default collect settings, then `bench diff A B --fail-on-regression`.

* A/A: N pairs of consecutive runs in one results folder (later pairs have earlier runs as
  history, as a real results/ does), and N pairs each alone in a folder (the prior decides);
* 25% slower: N pairs, B with every timing 25% slower, each alone, and N in one folder after 6
  A runs of history.

    python benchmarks/diff_error_rates.py [--pairs 100]      # about 5 s per pair on 2 cores
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import cli, collect  # noqa: E402
from tests.fake_server import FakeServer, Script  # noqa: E402

TOKENS = [f"t{i} " for i in range(16)]


def one_run(seed: int, results: Path, slower: float = 1.0) -> Path:
    with FakeServer(seed=seed) as srv:
        srv.set_model("m", Script(ttft_s=0.03 * slower, itl_s=0.003 * slower, tokens=TOKENS, noise_run=0.04,
                                  noise_request=0.02))
        return collect(srv, "m", results_dir=results).path


def fires(a: Path, b: Path, results: Path) -> bool:
    r = cli("diff", a.stem, b.stem, "--results-dir", str(results), "--fail-on-regression", "--format", "json")
    if r.exit_code not in (0, 1):
        raise SystemExit(r.output)
    return r.exit_code == 1


def rate(name: str, hits: list[bool]) -> None:
    print(f"{name:<44} {sum(hits):>4} of {len(hits):<4} = {100 * sum(hits) / len(hits):5.1f}%", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=100)
    n = ap.parse_args().pairs
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        shared = Path("aa")
        rate("A/A, one folder (history grows)", [fires(one_run(10_000 + 2 * i, shared), one_run(10_001 + 2 * i, shared),
                                                       shared) for i in range(n)])
        rate("A/A, each pair alone (the prior decides)",
             [fires(one_run(20_000 + 2 * i, Path(f"a{i}")), one_run(20_001 + 2 * i, Path(f"a{i}")), Path(f"a{i}"))
              for i in range(n)])
        rate("25% slower, each pair alone",
             [fires(one_run(30_000 + 2 * i, Path(f"d{i}")), one_run(30_001 + 2 * i, Path(f"d{i}"), 1.25), Path(f"d{i}"))
              for i in range(n)])
        hist = Path("h")
        base = [one_run(40_000 + i, hist) for i in range(6)]
        rate("25% slower, after 6 runs of history", [fires(base[-1], one_run(40_100 + i, hist, 1.25), hist)
                                                     for i in range(n)])


if __name__ == "__main__":
    main()
