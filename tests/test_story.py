"""Site history tells a story: trend charts labelled with dates and commits, the change point
marked where a model got slower, a page of rank changes per commit, and an Atom feed of
regressions with absolute links; never across machines."""

from __future__ import annotations

import hashlib
import json
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import pytest

from bench.report import render as render_mod
from bench.report import story
from bench.report.render import slug
from bench.results import store
from tests.conftest import Script, collect
from tests.site_helpers import feed_links, mkdocs_build, project_copy

ATOM = "{http://www.w3.org/2005/Atom}"
FAST, SMALL = "gemma-3-270m", "smollm2-135m-instruct"
PROFILES = {"fastest": render_mod.scoring.Profile(weights={"latency": 1})}
COMMITS = [hashlib.sha1(name.encode()).hexdigest() for name in ("first", "second", "third")]
SITE = story.site("https://example.org/bench")


@pytest.fixture
def results(server, tmp_path) -> Path:
    """Two runs at each of three commits; at the third, gemma-3-270m is four times slower."""
    out = tmp_path / "results"
    for commit, slow in zip(COMMITS, (1, 1, 4)):
        server.set_model(FAST, Script(ttft_s=0.01 * slow, itl_s=0.001 * slow))
        server.set_model(SMALL, Script(ttft_s=0.02, itl_s=0.002))
        for _ in range(2):
            path = collect(server, f"{FAST},{SMALL}", rounds=2, warmup=0, results_dir=out).path
            data = json.loads(path.read_text())
            data["git"] = {"commit": commit, "branch": "main", "dirty": False}
            path.write_text(json.dumps(data))
    return out


def _pages(results: Path, site: story.Site | None = SITE, machines: dict[int, str] | None = None) -> dict[str, str]:
    runs, problems = store.load_all(results)
    assert not problems and len(runs) == 6
    for i, name in (machines or {}).items():
        runs[i] = runs[i].model_copy(update={"machine": runs[i].machine.model_copy(update={"name": name})})
    return render_mod.build_pages(runs, [], PROFILES, site=site)


def _label(run) -> str:
    when = datetime.fromisoformat(run.started_at.replace("Z", "+00:00")).strftime("%m-%d %H:%M")
    return f"{when} · {run.git.commit[:7]}"


def test_three_commits_tell_the_story(results):
    runs, _ = store.load_all(results)
    pages = _pages(results)
    model = pages[f"report/models/{slug(FAST)}.md"]
    # The trend chart's x axis: dates and short commits, never truncated run ids.
    for run in runs:
        assert f">{_label(run)}</text>" in model, _label(run)
    assert f">{runs[0].run_id[:13]}" not in model and "no commit" not in model
    # The change point: a dashed marker at the third commit's first run, and in the list below.
    third = COMMITS[2][:7]
    mark = re.search(rf'<g class="bench-mark"><title>TTFT \+\d+% since commit {third}</title><line x1="([\d.]+)"', model)
    tick = re.search(rf'<text x="([\d.]+)" y="[\d.]+" text-anchor="\w+"[^>]*>{_label(runs[4])}</text>', model)
    assert mark and tick and mark.group(1) == tick.group(1)  # the marker stands at the third commit's first run
    assert f"- since commit {third} (" in model and "dashed lines on the charts above" in model
    steady = pages[f"report/models/{slug(SMALL)}.md"]
    assert "bench-mark" not in steady  # the model that did not change has no change point
    # The rank-change page: what the third commit did to the 'fastest' ranking.
    commits = pages["report/commits.md"]
    day = runs[4].started_at[:10]
    assert f"- since {third} ({day}), {SMALL} overtook {FAST} on 'fastest', now its top pick\n" in commits
    assert f"## {COMMITS[1][:7]}" not in commits  # the second commit changed no ranking
    assert f"runs/{slug(runs[4].run_id)}.md" in commits and f"runs/{slug(runs[3].run_id)}.md" in commits
    # The feed: valid Atom, an entry for the regression, absolute links.
    feed = ET.fromstring(pages["report/feed.xml"].encode())
    assert feed.tag == f"{ATOM}feed"
    for tag in ("id", "title", "updated", "author"):
        assert feed.find(f"{ATOM}{tag}") is not None, tag
    assert feed.find(f"{ATOM}link[@rel='self']").get("href") == "https://example.org/bench/report/feed.xml"
    entries = feed.findall(f"{ATOM}entry")
    assert entries and all(e.find(f"{ATOM}{t}") is not None for e in entries for t in ("id", "title", "updated", "link"))
    titles = [e.find(f"{ATOM}title").text for e in entries]
    ttft = next(e for e, t in zip(entries, titles) if t.startswith(f"{FAST}: TTFT +"))
    assert ttft.find(f"{ATOM}title").text.endswith(f"since commit {third}")
    assert ttft.find(f"{ATOM}link").get("href") == f"https://example.org/bench/report/models/{slug(FAST)}/"
    assert len({e.find(f"{ATOM}id").text for e in entries}) == len(entries)
    assert all(not t.startswith(SMALL) for t in titles)  # nothing got worse for the steady model
    assert feed.find(f"{ATOM}updated").text == max(e.find(f"{ATOM}updated").text for e in entries)
    assert "[Atom feed of regressions](feed.xml)" in pages["report/changes.md"]


def test_without_site_url_no_feed_and_the_changes_page_says_why(results):
    pages = _pages(results, site=None)
    assert "report/feed.xml" not in pages
    assert "Set `site_url` in `mkdocs.yml`" in pages["report/changes.md"]


def test_rank_changes_never_compare_two_machines(results):
    pages = _pages(results, machines={4: "other", 5: "other"})  # the third commit ran elsewhere
    commits = pages["report/commits.md"]
    assert "overtook" not in commits and "No commit has changed a ranking yet" in commits


def test_a_failed_model_is_a_feed_entry_and_names_are_escaped(server, tmp_path):
    evil = 'm<b>&"]]>'
    server.set_model(evil, Script(status=500))
    run = collect(server, evil, rounds=1, warmup=0, results_dir=tmp_path / "r").run
    runs, _ = store.load_all(tmp_path / "r")
    text = render_mod.build_pages(runs, [], PROFILES, site=story.site("http://h.example/x/"))["report/feed.xml"]
    entry = ET.fromstring(text.encode()).find(f"{ATOM}entry")
    assert entry.find(f"{ATOM}title").text == f"{evil} failed in run {run.run_id}"
    assert entry.find(f"{ATOM}link").get("href") == f"http://h.example/x/report/runs/{slug(run.run_id)}/"
    assert "<b>" not in text


def test_a_slim_latest_run_is_not_reported_as_failed(results):
    """Whether a model failed is read from the run's summary, which a slimmed run keeps (its
    samples are gone)."""
    from bench.analysis import digest

    runs, _ = store.load_all(results)
    views = [render_mod.make_view(r, {}) for r in runs]
    for v in views:
        digest.slim(v.run)
        v.slim = True
    text = render_mod.build_pages([], [], PROFILES, site=SITE, prepared=views)["report/feed.xml"]
    titles = [e.find(f"{ATOM}title").text for e in ET.fromstring(text.encode()).iter(f"{ATOM}entry")]
    assert titles and not [t for t in titles if "failed in run" in t], titles  # the regression entry only


def test_site_url_is_read_from_mkdocs_yml_without_running_its_tags(tmp_path):
    cfg = tmp_path / "mkdocs.yml"
    cfg.write_text("site_name: x\nsite_url: 'https://a.example/docs'  # published\nuse_directory_urls: false\n"
                   "markdown_extensions:\n  - pymdownx.emoji:\n      emoji_index: !!python/name:os.system\n")
    site = story.site_of(cfg)
    assert site.url == "https://a.example/docs/" and site.page("report/models/m.md") == "https://a.example/docs/report/models/m.html"
    assert story.site_of(tmp_path / "missing.yml").url is None
    for bad in ("javascript:alert(1)", "ftp://x/", "/relative/", "https://a.example/\"><x"):
        assert story.site(bad).url is None, bad


def test_the_site_builds_strict_with_the_feed_and_the_commits_page(results, tmp_path):
    project = project_copy(tmp_path / "proj", results)
    built = mkdocs_build(project)
    assert built.returncode == 0, built.stderr[-3000:]
    site = project / "site"
    feed = ET.parse(site / "report" / "feed.xml").getroot()
    links = [el.get("href") for el in feed.iter(f"{ATOM}link")]
    assert links and all(h.startswith("https://example.github.io/bench/report/") for h in links), links
    html = (site / "report" / "commits" / "index.html").read_text()
    assert "overtook" in html and "commits/" in (site / "index.html").read_text()
    assert feed_links(html) == ["https://example.github.io/bench/report/feed.xml"]  # readers find it from any page


def test_rank_change_words_only_what_changed():
    from bench.analysis.ranks import rank_change
    from bench.analysis.scoring import Ranking, Scored

    def ranking(order: list[str], excluded: dict[str, list[str]] | None = None) -> Ranking:
        rows = [Scored(m, 1.0 - i / 10, 1.0, {}, rank=i + 1) for i, m in enumerate(order)]
        rows += [Scored(m, 0.5, 1.0, {}, excluded=why) for m, why in (excluded or {}).items()]
        return Ranking("p", "", {}, rows, None, 0)

    assert not rank_change(ranking(["a", "b", "c"]), ranking(["a", "b", "c", "new"]))  # a newcomer overtakes nobody
    c = rank_change(ranking(["a", "b", "c"]), ranking(["c", "a", "b"]))
    assert c.overtook == {"c": ["a", "b"]} and c.top == ("a", "c")
    c = rank_change(ranking(["a", "b"]), ranking(["b"], excluded={"a": ["too big"]}))
    assert c.excluded == {"a": ["too big"]} and c.top == ("a", "b") and not c.overtook
    c = rank_change(ranking(["b"], excluded={"a": ["too big"]}), ranking(["b", "a"]))
    assert c.eligible == ["a"] and c.top is None
