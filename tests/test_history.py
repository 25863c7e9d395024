"""Level shifts over a model's history: found where they are, never invented from noise."""

from __future__ import annotations

import math
import random
import subprocess

from bench.analysis import history
from bench.report import render as render_mod
from bench.report.render import slug
from tests.conftest import Script, collect
from tests.fake_server import FakeServer


def _noisy(levels: list[float], sd: float = 0.02, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [math.log(x) + rng.gauss(0, sd) for x in levels]


def test_a_step_is_found_where_it_starts():
    points = history.change_points(_noisy([1.0] * 6 + [1.15] * 5), 0.05)
    assert [k for k, _ in points] == [6] and 0.10 < math.expm1(points[0][1]) < 0.20


def test_two_steps_are_both_found():
    points = history.change_points(_noisy([1.0] * 5 + [1.2] * 5 + [1.0] * 5, seed=3), 0.05)
    assert [k for k, _ in points] == [5, 10]


def test_noise_one_outlier_or_a_small_shift_is_no_change_point():
    for seed in range(20):
        assert history.change_points(_noisy([1.0] * 12, sd=0.04, seed=seed), 0.05) == [], seed
    assert history.change_points(_noisy([1.0] * 6 + [1.3] + [1.0] * 5), 0.05) == []  # one odd run
    assert history.change_points(_noisy([1.0] * 6 + [1.02] * 6, sd=0.002), 0.05) == []  # clear but below 5%
    assert history.change_points(_noisy([1.0] * 3), 0.05) == []  # too short to tell


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_model_page_and_changes_page_say_since_which_commit(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    monkeypatch.chdir(repo)
    _git("init", "-q", cwd=repo)
    commits = []
    for i, slower in enumerate([1.0, 1.0, 1.0, 1.3, 1.3, 1.3]):
        (repo / "code.txt").write_text(str(i))
        _git("add", "code.txt", cwd=repo)
        _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", f"change {i}", cwd=repo)
        commits.append(_git("rev-parse", "HEAD", cwd=repo))
        with FakeServer(seed=i) as srv:
            srv.set_model("m", Script(ttft_s=0.03 * slower, itl_s=0.003 * slower, noise_run=0.01, noise_request=0.01))
            collect(srv, "m", results_dir=repo / "results")
    from bench.results import store

    runs, _ = store.load_all(repo / "results")
    steps = history.model_steps(runs, "m")
    assert {s.metric for s in steps} >= {"ttft", "itl"} and {s.commit for s in steps} == {commits[3]}
    ttft = next(s for s in steps if s.metric == "ttft")
    assert 0.2 < ttft.change < 0.4 and ttft.since == f"commit {commits[3][:7]}"
    pages = render_mod.build_pages(runs, [], {"p": render_mod.scoring.Profile(weights={"latency": 1})})
    model_page = pages[f"report/models/{slug('m')}.md"]
    assert f"since commit {commits[3][:7]}" in model_page and "TTFT +" in model_page
    assert "## Level shifts in history" in pages["report/changes.md"]
    assert f"commit {commits[3][:7]}" in pages["report/changes.md"]
