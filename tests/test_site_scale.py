"""A long history stays fast to publish: only each machine's newest runs get a page of their own
(older ones are rows in tables), the run list is paginated, older runs are kept slim in memory,
and a render whose inputs did not change is skipped (mkdocs serve rebuilds on every edit)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.analysis import digest
from bench.analysis.history import model_steps
from bench.report import render as render_mod
from bench.report.render import render, slug
from bench.results.metrics import compared
from bench.results.store import load_all
from tests.conftest import Script, collect
from tests.site_helpers import mkdocs_build, project_copy


def _runs(server, results: Path, n: int) -> list[str]:
    server.set_model("alpha", Script(ttft_s=0.01, itl_s=0.001))
    server.set_model("beta", Script(ttft_s=0.02, itl_s=0.002))
    return [collect(server, "alpha,beta", rounds=1, warmup=0, results_dir=results).run.run_id for _ in range(n)]


def test_older_runs_are_rows_in_paginated_tables_not_pages(server, tmp_path, monkeypatch):
    ids = _runs(server, tmp_path / "results", 5)
    monkeypatch.setattr(render_mod, "RUNS_PER_PAGE", 2)
    docs = tmp_path / "docs"
    report, problems = render(tmp_path / "results", docs, full_run_pages=2)
    assert not problems
    runs = docs / "report" / "runs"
    assert sorted(p.name for p in runs.glob("*.md")) == sorted(
        [f"{slug(i)}.md" for i in ids[-2:]] + ["index.md", "_page-2.md", "_page-3.md"])
    first = (runs / "index.md").read_text()
    assert f"[{ids[-1]}]({slug(ids[-1])}.md)" in first and "Pages: **1** · [2](_page-2.md) · [3](_page-3.md)" in first
    third = (runs / "_page-3.md").read_text()
    assert ids[0] in third and f"({slug(ids[0])}.md)" not in third  # a row, not a link to a missing page
    model = (docs / "report" / "models" / "alpha.md").read_text()
    assert all(i in model for i in ids)
    assert f"(../runs/{slug(ids[0])}.md" not in model and f'(../runs/{slug(ids[-1])}.md "{ids[-1]}")' in model
    assert f'<span title="{ids[0]}">' in model  # no page: the id is the date's tooltip

    project = project_copy(tmp_path / "proj", tmp_path / "results")
    (project / "bench.yaml").write_text("site_run_pages: 2\n")
    r = mkdocs_build(project)
    assert r.returncode == 0, r.stderr[-3000:]  # --strict: no link to a page that is not there
    assert (project / "site" / "report" / "runs" / slug(ids[-1]) / "index.html").is_file()
    assert not (project / "site" / "report" / "runs" / slug(ids[0])).exists()


def test_a_render_is_skipped_only_while_nothing_it_reads_changed(server, tmp_path):
    results, docs = tmp_path / "results", tmp_path / "docs"
    _runs(server, results, 2)
    first, _ = render(results, docs)
    assert first.written
    again, problems = render(results, docs)
    assert (again.written, again.unchanged, problems) == ([], len(first.written), [])

    (results / "zz-planted.json").write_text("{oops")  # a new input: render, and name the bad file
    third, problems = render(results, docs)
    assert [p.path.name for p in problems] == ["zz-planted.json"]
    skipped, problems = render(results, docs)
    assert skipped.written == [] and [p.path.name for p in problems] == ["zz-planted.json"]  # told again

    home = docs / "index.md"
    text = home.read_text()
    home.write_text(text.replace("Which", "Edited"))  # a generated page changed by hand: render again
    redo, _ = render(results, docs)
    assert redo.written == ["index.md"] and home.read_text() == text

    (docs / "report" / ".bench-render-stamp").write_text('{"stamp": "planted", "pages": "x", "problems": []}')
    planted, _ = render(results, docs)
    assert planted.unchanged == len(first.written)  # rendered (compared every page), nothing to rewrite
    assert render(results, docs)[0].written == []


def test_slim_runs_answer_history_and_medians_as_whole_ones(server, tmp_path):
    _runs(server, tmp_path / "results", 3)
    whole, _ = load_all(tmp_path / "results")
    slim, _ = load_all(tmp_path / "results")
    for run in slim:
        digest.slim(run)
        assert run.samples == []
    for model in ("alpha", "beta"):
        for m in compared():
            assert [digest.prompt_medians(r, model, m) for r in slim] == [digest.prompt_medians(r, model, m) for r in whole]
            assert digest.prompt_medians(whole[0], model, m)  # there was something to compare
        assert model_steps(slim, model) == model_steps(whole, model)


def test_model_and_machine_pages_list_newest_runs_and_sum_up_older_months(server, tmp_path, monkeypatch):
    import json

    from bench.report import views
    from bench.report.format import fmt_any
    from bench.results.metrics import METRICS
    from bench.results.stats import run_stats

    results = tmp_path / "results"
    ids = _runs(server, results, 5)
    for i, when in ((0, "2025-01-15T10:00:00Z"), (1, "2025-01-20T10:00:00Z"), (2, "2025-02-03T10:00:00Z")):
        path = next(p for p in results.glob("*.json") if json.loads(p.read_text())["run_id"] == ids[i])
        data = json.loads(path.read_text())
        path.write_text(json.dumps({**data, "started_at": when}))
    monkeypatch.setattr(views, "HISTORY_ROWS", 2)
    render(results, tmp_path / "docs")
    model = (tmp_path / "docs" / "report" / "models" / "alpha.md").read_text()
    newest, older = model.split("## Every run")[1].split("## Outputs")[0].split("**Older runs by month**")
    table = "\n".join(line for line in (newest + older).splitlines() if line.startswith("|"))
    assert ids[4] in table and ids[3] in table and not any(i in table for i in ids[:3])
    rows = [line for line in older.splitlines() if line.startswith('| <span class="bench-nowrap">2025-')]
    assert [r.split(" | ")[:3] for r in rows] == [['| <span class="bench-nowrap">2025-02</span>', "1", "0"],
                                                  ['| <span class="bench-nowrap">2025-01</span>', "2", "0"]]
    runs = {r.run_id: r for r in load_all(results)[0]}
    p50s = sorted(next(s for s in run_stats(runs[i]) if s.model == "alpha").ttft.p50 for i in ids[:2])
    assert f" {fmt_any((p50s[0] + p50s[1]) / 2, METRICS['ttft'].kind)} |" in rows[1]  # the months' median
    machine = next((tmp_path / "docs" / "report" / "machines").glob("*.md")).read_text()
    assert "**Older runs by month** (3 runs" in machine and "2025-01</span> | 2 | 0 | alpha, beta |" in machine


def test_worker_processes_read_the_history_exactly_as_this_process_does(server, tmp_path, monkeypatch):
    """Parsing and summarising files is most of a long render; workers share it, the pages must not change."""
    from bench.report import reading

    results = tmp_path / "results"
    ids = _runs(server, results, 4)
    (results / "zz-planted.json").write_text('{"schema_version": 6, "run_id": ')
    annotated = next(p for p in results.glob("*.json") if ids[0] in p.read_text()[:400])
    (annotated.with_name(annotated.stem + ".annotations.yaml")).write_text("scores: [unclosed\n")
    texts, problems = {}, {}
    for workers in ("1", "2"):
        monkeypatch.setenv("BENCH_RENDER_WORKERS", workers)
        assert reading.workers_for(5) == int(workers)
        docs = tmp_path / f"docs-{workers}"
        _, found = render(results, docs, full_run_pages=1)
        problems[workers] = [(p.path.name, p.message) for p in found]
        texts[workers] = {p.relative_to(docs).as_posix(): p.read_text() for p in docs.rglob("*.md")}
    assert problems["1"] == problems["2"]
    assert {name for name, _ in problems["1"]} == {"zz-planted.json", annotated.stem + ".annotations.yaml"}
    assert texts["1"].keys() == texts["2"].keys() and len(texts["1"]) > 10
    assert [k for k in texts["1"] if texts["1"][k] != texts["2"][k]] == []


def test_a_bad_worker_count_is_a_clear_error(tmp_path, monkeypatch):
    from bench.errors import ConfigError
    from bench.report import reading
    from tests.conftest import cli

    for bad in ("two", "0", "99", "-1"):
        monkeypatch.setenv("BENCH_RENDER_WORKERS", bad)
        with pytest.raises(ConfigError, match="BENCH_RENDER_WORKERS.*from 1 to 8"):
            reading.workers_for(100)
    monkeypatch.delenv("BENCH_RENDER_WORKERS")
    assert cli("render", "--results-dir", str(tmp_path), "--out", str(tmp_path / "docs")).exit_code == 0
    monkeypatch.setenv("BENCH_RENDER_WORKERS", "-1")  # also when nothing changed and the render is skipped
    r = cli("render", "--results-dir", str(tmp_path), "--out", str(tmp_path / "docs"))
    assert r.exit_code != 0 and "BENCH_RENDER_WORKERS='-1'" in r.stderr and "Traceback" not in r.stderr
