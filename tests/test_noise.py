"""bench diff against run-to-run noise: a scripted server whose every start draws its own speed.

Each run gets a fresh server (a per-start log-normal factor, sd 4%, and a per-request one, sd
2%), default collect settings and fixed seeds, as on a real machine between two runs. Over 20
A/A pairs of consecutive runs --fail-on-regression may fire at most twice; with every timing 25%
slower it must fire in at least 8 of 10 pairs. (The earlier diff, which took only the requests'
own spread into account, flagged about a third of A/A pairs.)
"""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from bench.analysis import compare, noise
from tests.conftest import Script, cli, collect
from tests.fake_server import FakeServer

TOKENS = [f"t{i} " for i in range(16)]
SEED = 500  # the A/A pairs' server seeds: SEED, SEED + 1, ...


def one_run(seed: int, results: str, slower: float = 1.0) -> Path:
    with FakeServer(seed=seed) as srv:
        srv.set_model("m", Script(ttft_s=0.03 * slower, itl_s=0.003 * slower, tokens=TOKENS, noise_run=0.04,
                                  noise_request=0.02))
        return collect(srv, "m", results_dir=Path(results)).path


def fires(a: Path, b: Path, results: str) -> bool:
    r = cli("diff", a.stem, b.stem, "--results-dir", results, "--fail-on-regression", "--format", "json")
    assert r.exit_code in (0, 1), r.output
    return r.exit_code == 1


def test_a_a_pairs_of_noisy_runs_rarely_fire():
    alarms = []
    for i in range(20):  # one results folder: later pairs see the earlier runs as history
        a, b = one_run(SEED + 2 * i, "aa"), one_run(SEED + 2 * i + 1, "aa")
        alarms.append(fires(a, b, "aa"))
    assert sum(alarms) <= 2, alarms


def test_every_timing_25_percent_slower_fires_in_most_pairs():
    detected = []
    for i in range(10):  # a folder per pair: no history, the prior and the requests decide
        a, b = one_run(1000 + 2 * i, f"det{i}"), one_run(1001 + 2 * i, f"det{i}", slower=1.25)
        detected.append(fires(a, b, f"det{i}"))
    assert sum(detected) >= 8, detected


def test_the_shown_values_and_the_change_agree():
    a, b = one_run(1, "r"), one_run(2, "r", slower=1.1)
    d = compare.diff(compare.resolve_side(a.stem, Path("r")), compare.resolve_side(b.stem, Path("r")))
    for row in [r for r in d.rows if r.metric != "rubric_pass"]:  # that one is in points of pass rate
        assert math.isclose(row.b / row.a - 1, row.change, rel_tol=1e-9), row
        assert row.ci[0] <= row.change <= row.ci[1]
    assert "geometric mean over the prompts" in compare.METHOD


def test_history_narrows_the_noise_and_says_where_it_came_from():
    runs = [one_run(i, "h") for i in range(6)]
    side = lambda p: compare.resolve_side(p.stem, Path("h"))
    first = compare.diff(side(runs[0]), side(runs[1]), history=side(runs[1]).pool)
    last = compare.diff(side(runs[4]), side(runs[5]), history=side(runs[5]).pool)
    timed = lambda d: [r for r in d.rows if r.metric != "rubric_pass"]
    # One earlier run gives no spread yet (A itself is the only earlier run): the prior decides.
    assert {r.basis for r in timed(first)} == {"the prior (5% between runs) + requests"}
    assert {r.basis for r in timed(last)} == {"5 earlier runs"}
    assert {r.status for r in first.rows} <= {"too few runs", "same", "not significant"}
    assert [r.basis for r in first.rows if r.metric == "rubric_pass"] == [
        "McNemar, 12 paired answers (0 passed only in A, 0 only in B)"]
    assert last.hints and last.hints[0].startswith("m: noise ±") and "--sessions" in last.hints[0]


def test_holm_and_the_normal_quantile():
    assert noise.holm([0.01, 0.04, 0.03]) == [True, False, False]
    assert noise.holm([0.01, 0.02, 0.03]) == [True, True, True]
    assert abs(noise._z(0.975) - 1.959964) < 1e-5 and abs(noise._z(0.01) + 2.326348) < 1e-5
    assert noise.p_value(0.0, 0.01) == 1.0 and abs(noise.p_value(0.196, 0.01) - 0.05) < 1e-3


def test_sessions_needed_grows_with_noise_and_shrinks_with_the_change():
    quiet, loud = noise.Noise(0.02**2, 10, "x"), noise.Noise(0.08**2, 10, "x")
    assert noise.sessions_needed(quiet, 0.05) < noise.sessions_needed(loud, 0.05)
    assert noise.sessions_needed(loud, 0.20) < noise.sessions_needed(loud, 0.05)


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("how", ["runs", "commits"])
def test_a_model_failing_in_the_newer_run_fails_the_gate(tmp_path, monkeypatch, how):
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    _git("init", "-q", cwd=repo)
    commit = lambda msg: _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", msg, cwd=repo)
    with FakeServer() as srv:
        srv.set_model("m", Script(ttft_s=0.01, itl_s=0.001))
        good = collect(srv, "m").path
        _git("add", "results", cwd=repo)
        commit("good")
        srv.set_model("m", Script(status=500))
        bad = collect(srv, "m").path
        _git("add", "results", cwd=repo)
        commit("m fails")
    args = [good.stem, bad.stem] if how == "runs" else ["HEAD~1", "HEAD"]
    r = cli("diff", *args, "--fail-on-regression", "--format", "json")
    assert r.exit_code == 1, r.output
    rows = json.loads(r.stdout)["rows"]
    assert [row["status"] for row in rows] == ["failed"]


def test_rubric_pass_rates_are_compared_pair_by_pair_with_mcnemar():
    from types import SimpleNamespace as NS

    from bench.analysis import quality_diff

    assert quality_diff.mcnemar(8, 0) == 2 / 256 and quality_diff.mcnemar(3, 3) == 1.0
    assert quality_diff.mcnemar(0, 0) == 1.0

    def side(passes: list[bool]):
        samples = [NS(ok=True, warmup=False, prompt_id=f"p{i % 4}", round=i // 4, session=0,
                      rubric=NS(passed=2 if ok else 1, total=2)) for i, ok in enumerate(passes)]
        return NS(samples=lambda model: samples)

    a = side([True] * 20)
    worse = quality_diff.rows(["m"], a, side([True] * 8 + [False] * 12), compare.Row)
    assert len(worse) == 1 and worse[0].status == "worsened" and math.isclose(worse[0].change, -0.6)
    assert worse[0].p == quality_diff.mcnemar(12, 0) and "12 passed only in A" in worse[0].basis
    slight = quality_diff.rows(["m"], a, side([True] * 19 + [False]), compare.Row)
    assert slight[0].status == "not significant" and math.isclose(slight[0].change, -0.05)
    same = quality_diff.rows(["m"], a, a, compare.Row)
    assert same[0].status == "same" and same[0].change == 0
