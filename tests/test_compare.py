"""bench diff: runs, files and git revisions; A/A gives no false regression; 20% slower is flagged."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.analysis import compare
from bench.report import diff as diff_text
from tests.conftest import Script, cli, collect

TTFT, ITL = 0.10, 0.005
PROMPTS = [{"id": "a", "text": "First prompt."}, {"id": "b", "text": "Second prompt."}]


@pytest.fixture
def prompts_file(tmp_path):
    p = tmp_path / "prompts.json"
    p.write_text(json.dumps(PROMPTS))
    return p


def run_once(server, prompts_file, results="results", **kw):
    return collect(server, "m", rounds=3, warmup=1, prompts=prompts_file, results_dir=Path(results), **kw)


def test_a_a_pairs_never_report_a_regression(server, prompts_file):
    server.set_model("m", Script(ttft_s=TTFT, itl_s=ITL))
    statuses = set()
    for i in range(20):
        a = run_once(server, prompts_file, f"aa{i}").path
        b = run_once(server, prompts_file, f"aa{i}").path
        d = compare.diff(compare.resolve_side(str(a), Path(".")), compare.resolve_side(str(b), Path(".")))
        assert {r.metric for r in d.rows} == {"ttft", "itl", "e2e", "decode_tps"}
        statuses |= {r.status for r in d.rows}
        assert not d.regressions, [(r.metric, r.change, r.ci) for r in d.rows]
    assert statuses <= {"same", "not significant", "too few runs"}  # each pair alone: the prior decides


def test_a_server_20_percent_slower_is_flagged(server, prompts_file):
    server.set_model("m", Script(ttft_s=TTFT, itl_s=ITL))
    a = run_once(server, prompts_file).path
    server.set_model("m", Script(ttft_s=TTFT * 1.2, itl_s=ITL * 1.2))
    b = run_once(server, prompts_file).path
    d = compare.diff(compare.resolve_side(a.stem, Path("results")), compare.resolve_side(b.stem, Path("results")))
    by = {r.metric: r for r in d.rows}
    assert by["ttft"].status == "worsened" and by["itl"].status == "worsened"
    assert by["decode_tps"].status == "worsened" and by["e2e"].status == "worsened"
    assert 0.15 < by["ttft"].change < 0.25 and by["ttft"].ci[0] > 0
    r = cli("diff", a.stem, b.stem, "--fail-on-regression")
    assert r.exit_code == 1 and "significant regression" in r.stderr
    r = cli("diff", b.stem, a.stem, "--fail-on-regression", "--format", "json")
    assert r.exit_code == 0
    assert {row["status"] for row in json.loads(r.stdout)["rows"]} == {"improved"}
    # No arguments: the two latest comparable runs.
    r = cli("diff", "--format", "md")
    assert r.exit_code == 0 and "❌ worsened" in r.stdout and "| m | TTFT |" in r.stdout


def test_by_prompt_rows(server, prompts_file):
    server.set_model("m", Script(ttft_s=0.02, itl_s=0.002))
    a = run_once(server, prompts_file).path
    b = run_once(server, prompts_file).path
    d = compare.diff(compare.resolve_side(str(a), Path(".")), compare.resolve_side(str(b), Path(".")), by_prompt=True)
    assert {(r.metric, r.prompt) for r in d.rows} == {
        (m, p) for m in compare.METRICS for p in [None] + [q["id"] for q in PROMPTS]}


def test_one_request_per_prompt_is_never_significant(server, prompts_file):
    server.set_model("m", Script(ttft_s=TTFT, itl_s=ITL))
    a = collect(server, "m", rounds=1, warmup=0, prompts=prompts_file, results_dir=Path("r")).path
    server.set_model("m", Script(ttft_s=TTFT * 1.5, itl_s=ITL * 1.5))
    b = collect(server, "m", rounds=1, warmup=0, prompts=prompts_file, results_dir=Path("r")).path
    d = compare.diff(compare.resolve_side(str(a), Path(".")), compare.resolve_side(str(b), Path(".")))
    assert {r.status for r in d.rows} == {"not significant"} and not d.regressions
    assert "too few requests" in diff_text.fmt_change(d.rows[0])


def test_different_workloads_are_never_diffed(server, prompts_file):
    server.set_model("m", Script(ttft_s=0.02, itl_s=0.002))
    a = run_once(server, prompts_file).path
    b = run_once(server, prompts_file, max_tokens=10).path
    d = compare.diff(compare.resolve_side(str(a), Path(".")), compare.resolve_side(str(b), Path(".")))
    assert [r.status for r in d.rows] == ["not comparable"] and "different workloads" in d.rows[0].reason
    r = cli("diff", str(a), str(b))
    assert r.exit_code == 2 and "nothing comparable" in r.stderr and "different workloads" in r.stderr


def test_other_machine_needs_cross_machine(server, prompts_file):
    server.set_model("m", Script(ttft_s=0.02, itl_s=0.002))
    a = run_once(server, prompts_file).path
    b = run_once(server, prompts_file).path
    data = json.loads(b.read_text())
    data["machine"]["hostname_hash"] = "elsewhere"  # another hostname alone: the same machine
    b.write_text(json.dumps(data))
    assert cli("diff", str(a), str(b)).exit_code == 0
    data["machine"]["cpu"], data["machine"]["ram_gib"] = "Other CPU 9000", 512
    b.write_text(json.dumps(data))
    r = cli("diff", str(a), str(b))
    assert r.exit_code == 2 and "different machines: CPU" in r.stderr and "RAM GiB" in r.stderr
    assert cli("diff", str(a), str(b), "--cross-machine").exit_code == 0


def test_failed_and_fixed(server, prompts_file):
    server.set_model("m", Script(ttft_s=0.02, itl_s=0.002))
    a = run_once(server, prompts_file).path
    server.set_model("m", Script(status=500))
    b = run_once(server, prompts_file).path
    d = compare.diff(compare.resolve_side(str(a), Path(".")), compare.resolve_side(str(b), Path(".")))
    assert [r.status for r in d.rows] == ["failed"] and d.regressions
    d = compare.diff(compare.resolve_side(str(b), Path(".")), compare.resolve_side(str(a), Path(".")))
    assert [r.status for r in d.rows] == ["fixed"]


def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_git_revisions_read_from_history_without_checkout(server, prompts_file, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    _git("init", "-q", cwd=repo)
    commit = lambda msg: _git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "-m", msg, cwd=repo)
    (repo / "README").write_text("x")
    _git("add", "README", cwd=repo)
    commit("no results yet")
    server.set_model("m", Script(ttft_s=TTFT, itl_s=ITL))
    server.set_model("other", Script(ttft_s=0.02, itl_s=0.002))
    collect(server, "m,other", rounds=3, warmup=0, prompts=prompts_file, results_dir=repo / "results")
    _git("add", "results", cwd=repo)
    commit("baseline")
    server.set_model("m", Script(ttft_s=TTFT * 1.2, itl_s=ITL * 1.2))
    collect(server, "m", rounds=3, warmup=0, prompts=prompts_file, results_dir=repo / "results")
    _git("add", "results", cwd=repo)
    commit("slower m; 'other' not re-run")
    (repo / "README").write_text("y")
    _git("add", "README", cwd=repo)
    commit("unrelated change")
    # Work tree moves on: results files removed (never checked out for the diff).
    shutil.rmtree(repo / "results")
    (repo / "results").mkdir()
    import os
    os.chdir(repo)
    r = cli("diff", "HEAD~2", "HEAD", "--format", "json", "--fail-on-regression")
    assert r.exit_code == 1, r.stderr
    rows = json.loads(r.stdout)["rows"]
    m_rows = {row["metric"]: row["status"] for row in rows if row["model"] == "m"}
    assert m_rows["ttft"] == "worsened" and m_rows["itl"] == "worsened"
    # 'other' exists only in the baseline run; at HEAD its latest run is still that one: same data.
    other = {row["status"] for row in rows if row["model"] == "other"}
    assert other <= {"same"}
    r = cli("diff", "HEAD~3", "HEAD")
    assert r.exit_code == 2 and "has no results under results/" in r.stderr
    r = cli("diff", "nosuchrev", "HEAD")
    assert r.exit_code == 2 and "neither a results file, a run id" in r.stderr


def test_without_git_a_revision_diff_says_so_and_a_run_records_no_commit(server, tmp_path, monkeypatch):
    server.set_model("m", Script())
    out = collect(server, "m", rounds=1, warmup=0)
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))  # git cannot be found
    r = cli("diff", "HEAD~1", "HEAD", "--results-dir", str(out.path.parent))
    assert r.exit_code == 2 and "git is not installed" in r.output and "Traceback" not in r.output
    from bench.measure.machine import git_info

    assert git_info(tmp_path) is None
