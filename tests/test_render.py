"""The report site: pages, incremental writes, hostile text, corrupt files, both engines."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bench.report import render as render_mod
from bench.report.render import code_block, md_text, render, slug
from tests.conftest import Script, collect
from tests.site_helpers import (
    assert_architecture_page,
    bench,
    feed_links,
    mkdocs_build,
    project_copy,
    zensical_build,
)

PWN = 'document.body.setAttribute("data-pwned","{}")'
HOSTILE = [
    f"<script>{PWN.format('script')}</script>",
    f"<img src=x onerror='{PWN.format('img')}'>",
    "{{ 7*7 }}",
    "{% raw %}",
    "a | b | c",
    f"[click](javascript:{PWN.format('link')})",
    "```\n</code></pre><script>alert(1)</script>\n```",
    '{: onclick="alert(1)" }',
    "<!--",
    "</textarea><svg onload=alert(1)>",
]


def _hostile_results(server, tmp: Path) -> Path:
    server.set_model("m", Script(tokens=[h + " " for h in HOSTILE]))
    server.set_model("n", Script(tokens=["plain ", "answer "]))
    server.enqueue("n", Script(truncate_after=1))
    prompts = tmp / "prompts.json"
    prompts.write_text(json.dumps([{"id": "evil<b>|id", "text": HOSTILE[0] + " " + HOSTILE[5]}, "Say hi."]))
    out = collect(server, "m,n", rounds=1, warmup=0, prompts=prompts, results_dir=tmp / "results")
    data = json.loads(out.path.read_text())
    evil_label = HOSTILE[1]
    data["models"][evil_label] = data["models"].pop("m")
    for s in data["samples"]:
        if s["model"] == "m":
            s["model"] = evil_label
        if not s["ok"]:
            s["error_detail"] = HOSTILE[0]
    data["endpoints"][0]["server"] = HOSTILE[1]
    data["endpoints"][0]["models"] = HOSTILE[:2]
    data["machine"]["cpu"] = HOSTILE[5]
    data["models"][evil_label]["license"] = HOSTILE[4]
    data["models"][evil_label]["notes"] = HOSTILE[7]
    out.path.write_text(json.dumps(data))
    return tmp / "results"


def test_md_text_and_code_block_are_inert():
    assert md_text("a|b") == "a&#124;b"
    assert "<" not in md_text("<script>") and "[" not in md_text("[x](javascript:y)")
    assert "{" not in md_text("{: onclick=x}")
    assert "\r" not in md_text("boom\r\r    code\r---\r1. list") and "\n" not in md_text("a\u2028b\nc")
    block = code_block("x ``` y ```` z")
    assert block.startswith("`````text\n") and block.endswith("\n`````")
    assert slug("../../etc/passwd") .startswith("etc-passwd-") and "/" not in slug("a/b")


def test_hostile_text_builds_strict_and_stays_text(server, tmp_path):
    results = _hostile_results(server, tmp_path)
    project = project_copy(tmp_path / "proj", results)
    r = mkdocs_build(project)
    assert r.returncode == 0, r.stderr
    pages = list((project / "site").rglob("*.html"))
    text = "\n".join(p.read_text() for p in pages)
    assert "{{ 7*7 }}" in text.replace("&#123;", "{").replace("&#125;", "}") or "{{ 7*7 }}" in text
    assert ">49<" not in text
    for p in pages:
        html = p.read_text()
        assert "<script>document.body" not in html, p
        assert not re.search(r"<img[^>]*onerror", html), p
        assert not re.search(r"<svg[^>]*onload", html), p
        assert 'href="javascript:' not in html, p
        assert not re.search(r"<[a-z]+[^>]*onclick=", html), p
    assert not list(project.glob("site_src/report/**/*[<>|]*"))  # hostile ids never become paths


def test_generated_pages_escape_every_hostile_string(server, tmp_path):
    results = _hostile_results(server, tmp_path)
    render(results, tmp_path / "docs")
    for page in (tmp_path / "docs").rglob("*.md"):
        md = page.read_text()
        outside_code = re.sub(r"^( *)(`{3,})[a-z]*\n.*?\n\1\2$", "", md, flags=re.S | re.M)
        assert "<script>" not in outside_code, page
        assert "<img" not in outside_code, page
        assert "](javascript" not in outside_code, page


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_hostile_pages_execute_nothing_in_chromium(server, tmp_path):
    results = _hostile_results(server, tmp_path)
    project = project_copy(tmp_path / "proj", results)
    assert mkdocs_build(project).returncode == 0
    checked = 0
    for page in ["index.html", "report/selection/index.html", "report/runs/index.html"] + [
        str(p.relative_to(project / "site")) for p in (project / "site" / "report").rglob("*/index.html")
    ]:
        url = (project / "site" / page).as_uri()
        dom = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=2000",
             "--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
        assert "<body" in dom, page
        assert not re.search(r"<body[^>]*data-pwned", dom), f"script executed on {page}"
        checked += 1
    assert checked >= 8


def test_render_rewrites_only_changed_pages_and_removes_gone_runs(server, tmp_path):
    server.set_model("m", Script())
    a = collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "r").path
    first, _ = render(tmp_path / "r", tmp_path / "docs")
    assert "index.md" in first.written and any(w.startswith("report/runs/") for w in first.written)
    again, _ = render(tmp_path / "r", tmp_path / "docs")
    assert again.written == [] and again.removed == [] and again.unchanged == len(first.written)
    b = collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "r").path
    third, _ = render(tmp_path / "r", tmp_path / "docs")
    assert f"report/runs/{slug(b.stem)}.md" in third.written
    a.unlink()
    fourth, _ = render(tmp_path / "r", tmp_path / "docs")
    assert fourth.removed == [f"report/runs/{slug(a.stem)}.md"]
    assert not (tmp_path / "docs" / "report" / "runs" / f"{slug(a.stem)}.md").exists()


def test_pages_show_the_numbers(server, tmp_path):
    server.set_model("fast", Script(ttft_s=0.05, itl_s=0.002))
    server.set_model("slow", Script(ttft_s=0.2, itl_s=0.01))
    out = collect(server, "fast,slow", rounds=1, warmup=0, results_dir=tmp_path / "r")
    pages = render_mod.build_pages([out.run], [], {"p": render_mod.scoring.Profile(weights={"latency": 1})})
    home = pages["index.md"]
    assert "| [fast](report/models/fast.md)" in home
    assert "**[fast](report/models/fast.md)**" in home  # the recommendation
    run_page = pages[f"report/runs/{slug(out.run.run_id)}.md"]
    assert "| TTFT (ms) | 4 |" in run_page and "| decode tokens/s | 4 |" in run_page
    assert "No failed requests." in run_page
    assert "tok0 tok1" in pages["report/prompts/rag-two-sentences.md"]
    assert 'id="bench-selection-data"' in pages["report/selection.md"]


def test_corrupt_file_warns_but_other_runs_render_and_strict_build_fails(server, tmp_path):
    server.set_model("m", Script())
    good = collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "results").path
    (tmp_path / "results" / "20990101T000000.000Z-broken.json").write_text("{oops")
    (tmp_path / "results" / "20990101T000001.000Z-newer.json").write_text('{"schema_version": 999}')
    report, problems = render(tmp_path / "results", tmp_path / "docs")
    assert {p.path.name for p in problems} == {"20990101T000000.000Z-broken.json", "20990101T000001.000Z-newer.json"}
    assert (tmp_path / "docs" / "report" / "runs" / f"{slug(good.stem)}.md").exists()
    assert "could not be read" in (tmp_path / "docs" / "index.md").read_text()
    project = project_copy(tmp_path / "proj", tmp_path / "results")
    strict = mkdocs_build(project)
    assert strict.returncode != 0
    assert "20990101T000000.000Z-broken.json" in strict.stderr and "corrupt results file" in strict.stderr
    assert mkdocs_build(project, strict=False).returncode == 0
    r = bench(project, "render", "--strict")
    assert r.returncode == 1 and "could not be read" in r.stderr and "Traceback" not in r.stderr


def test_zensical_builds_the_same_site(server, tmp_path):
    if shutil.which("zensical") is None and not (Path(__import__("sys").executable).parent / "zensical").exists():
        pytest.skip("zensical is not installed (pip install -e '.[test]')")
    server.set_model("m", Script())
    collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "results")
    project = project_copy(tmp_path / "proj", tmp_path / "results")
    assert bench(project, "render").returncode == 0
    r = zensical_build(project)
    assert r.returncode == 0, r.stdout + r.stderr
    site = project / "site"
    assert (site / "index.html").exists() and (site / "report" / "selection" / "index.html").exists()
    assert "bench-selection-data" in (site / "report" / "selection" / "index.html").read_text()
    assert_architecture_page(site)
    assert feed_links((site / "index.html").read_text()) == ["https://example.github.io/bench/report/feed.xml"]


def test_export_markdown_and_csv(server, tmp_path):
    server.set_model("=cmd|' /C calc'!A0", Script())
    server.set_model("m", Script())
    collect(server, "m,=cmd|' /C calc'!A0", rounds=1, warmup=0, results_dir=tmp_path / "results")
    r = bench(tmp_path, "export", "--results-dir", "results", "--format", "csv")
    assert r.returncode == 0, r.stderr
    rows = (tmp_path / "benchmark_report.csv").read_text().splitlines()
    assert rows[0].startswith("run_id,workload_hash,model,status")
    assert any(",'=cmd" in row for row in rows)  # formula neutralized
    r = bench(tmp_path, "export", "--results-dir", "results")
    md = (tmp_path / "benchmark_report.md").read_text()
    assert "| m | 4/4 |" in md and "## Highlights" in md and "&#124;" in md


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_selection_page_reranks_in_the_browser(server, tmp_path):
    server.set_model("fast", Script(ttft_s=0.01, itl_s=0.001))
    server.set_model("slow", Script(ttft_s=0.05, itl_s=0.004))
    collect(server, "fast,slow", rounds=1, warmup=0, results_dir=tmp_path / "results")
    project = project_copy(tmp_path / "proj", tmp_path / "results")
    assert mkdocs_build(project).returncode == 0
    url = (project / "site" / "report" / "selection" / "index.html").as_uri()
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}", "--virtual-time-budget=3000", "--dump-dom", url],
        capture_output=True, text=True, timeout=120).stdout
    widget = dom[dom.index('id="bench-weights"'):]
    assert widget.count('type="range"') == 6  # one slider per dimension
    # The first profile (edge-summarizer) needs measured memory, which endpoint models lack:
    # the script lists both as excluded, with the reason, from the page's data.
    assert re.search(r"<td>–</td><td>fast</td><td>[01]\.\d\d</td><td>excluded: memory unknown", widget)
    assert re.search(r"<td>–</td><td>slow</td>", widget)


def test_collect_renders_the_site_when_there_is_one(server):
    from tests.conftest import cli

    Path("site_src").mkdir()
    server.set_model("m", Script())
    r = cli("collect", "--endpoint", server.url, "--models", "m", "--rounds", "1")
    assert r.exit_code == 0, r.stderr
    assert "rendered" in r.stderr
    assert "[m](report/models/m.md)" in Path("site_src/index.md").read_text()


def test_the_repository_site_builds_strict_from_its_committed_real_results(tmp_path):
    from tests.site_helpers import ROOT

    results = ROOT / "results"
    runs = list(results.glob("*.json"))
    assert runs, "results/ should hold at least one real run"
    project = project_copy(tmp_path / "proj", results)
    r = mkdocs_build(project)
    assert r.returncode == 0, r.stdout + r.stderr
    home = (project / "site" / "index.html").read_text()
    assert "smollm2-135m-instruct" in home and "gemma-3-270m" in home
    assert (project / "site" / "404.html").exists()
    assert_architecture_page(project / "site")


def test_gh_deploy_publishes_to_a_gh_pages_branch(server, tmp_path):
    server.set_model("m", Script())
    collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "results")
    project = project_copy(tmp_path / "proj", tmp_path / "results")
    remote = tmp_path / "remote.git"
    git = lambda *a, cwd=project: subprocess.run(["git", *a], cwd=cwd, check=True, capture_output=True, text=True)
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("init", "-q")
    git("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init")
    git("remote", "add", "origin", str(remote))
    import sys

    from tests.site_helpers import run

    r = run([sys.executable, "-m", "mkdocs", "gh-deploy", "--force", "--no-history"], project)
    assert r.returncode == 0, r.stderr
    files = git("ls-tree", "-r", "--name-only", "gh-pages", cwd=remote).stdout.split()
    assert "index.html" in files and "404.html" in files and "report/selection/index.html" in files


def test_render_never_overwrites_or_removes_pages_it_did_not_write(server, tmp_path):
    from bench.errors import BenchError

    server.set_model("m", Script())
    collect(server, "m", rounds=1, warmup=0, results_dir=tmp_path / "results")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# My own home page\n")
    with pytest.raises(BenchError, match="index.md exists and was not written by bench"):
        render(tmp_path / "results", docs)
    assert (docs / "index.md").read_text() == "# My own home page\n"
    (docs / "index.md").unlink()
    (docs / "report").mkdir()
    (docs / "report" / "notes.md").write_text("mine")
    with pytest.raises(BenchError, match="holds pages bench did not write"):
        render(tmp_path / "results", docs)
    (docs / "report" / "notes.md").unlink()
    render(tmp_path / "results", docs)
    (docs / "report" / "notes.md").write_text("mine, added later")
    report, _ = render(tmp_path / "results", docs)
    assert (docs / "report" / "notes.md").read_text() == "mine, added later" and report.removed == []
    r = cli_render(tmp_path)
    assert r.returncode == 0


def cli_render(tmp_path):
    return bench(tmp_path, "render", "--results-dir", "results", "--out", "docs")


def test_times_are_shown_in_utc_whatever_offset_the_file_recorded():
    from bench.report.format import fmt_time

    assert fmt_time("2026-01-01T10:00:00+02:00") == "2026-01-01 08:00 UTC"  # was "10:00 UTC": the local time
    assert fmt_time("2026-01-01T10:00:00Z") == "2026-01-01 10:00 UTC"
    assert fmt_time("2026-01-01T10:00:00") == "2026-01-01 10:00 UTC"  # no offset: taken as UTC, as bench writes
    assert fmt_time("not a time <b>") != "not a time <b>" and fmt_time(None) == "–"
