"""What the site's history tells: per commit, how the rankings of the selection profiles changed
("since abc1234, gemma-3-270m overtook smollm2 on 'fastest'"), and where the published site lives
(mkdocs.yml's ``site_url``, which the Atom feed needs for absolute links).

Rank changes compare consecutive comparable runs only: the same workload hash and the same
machine, of different recorded commits; machines are never compared with each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from bench.analysis import scoring
from bench.analysis.ranks import RankChange, rank_change
from bench.report.views import RunView, quality_of
from bench.results.machines import machine_key, machine_label, same_machine


@dataclass(frozen=True)
class CommitChange:
    commit: str  # the new commit (full, as recorded)
    before: RunView  # the last comparable run before it
    after: RunView  # the first run of the new commit
    machine: str  # the machine's label
    changes: list[RankChange]  # per profile that changed, in the profiles' order

    @property
    def short(self) -> str:
        return self.commit[:7]

    @property
    def before_commit(self) -> str:
        commit = self.before.run.git.commit if self.before.run.git else None
        return commit[:7] if commit else "no commit"


def _commit(v: RunView) -> str | None:
    return v.run.git.commit if v.run.git and v.run.git.commit else None


def _rankings(v: RunView, profiles: Mapping[str, scoring.Profile]) -> list[scoring.Ranking]:
    cands = scoring.candidates(v.run, quality_of(v), v.stats)
    return [scoring.rank(cands, name, p, perturbations=0) for name, p in profiles.items()]


def commit_changes(views: list[RunView], profiles: Mapping[str, scoring.Profile]) -> list[CommitChange]:
    """Per commit that changed a ranking: what changed, newest first. ``views`` are oldest first.

    Runs are grouped by workload hash and machine; within a group each run whose commit differs
    from the previous run's is ranked against that run with every profile."""
    groups: dict[tuple[str, str], list[RunView]] = {}
    for v in views:
        groups.setdefault((v.run.workload.hash, machine_key(v.run.machine)), []).append(v)
    cache: dict[str, list[scoring.Ranking]] = {}

    def ranked(v: RunView) -> list[scoring.Ranking]:
        if v.run.run_id not in cache:
            cache[v.run.run_id] = _rankings(v, profiles)
        return cache[v.run.run_id]

    found = []
    for group in groups.values():
        for before, after in zip(group, group[1:]):
            commit = _commit(after)
            if commit is None or commit == _commit(before) or same_machine(before.run.machine, after.run.machine):
                continue
            changes = [c for c in map(rank_change, ranked(before), ranked(after)) if c]
            if changes:
                found.append(CommitChange(commit, before, after, machine_label(after.run.machine), changes))
    return sorted(found, key=lambda c: c.after.run.run_id, reverse=True)


# ---------------------------------------------------------------------------------- the site
@dataclass(frozen=True)
class Site:
    url: str | None  # the published site's root URL, ending in "/", when mkdocs.yml sets one
    directory_urls: bool = True  # MkDocs' use_directory_urls: report/x.md is served as report/x/

    def page(self, rel: str) -> str | None:
        """The absolute URL of a generated page (``report/models/m.md``); None without site_url."""
        if not self.url:
            return None
        path = rel[:-3] if rel.endswith(".md") else rel
        if rel.endswith(".md"):
            if path == "index" or path.endswith("/index"):
                path = path[: -len("index")]
            else:
                path = path + "/" if self.directory_urls else path + ".html"
        return self.url + path


_TOP_KEY = re.compile(r"^(site_url|use_directory_urls)\s*:\s*(.*?)\s*(?:#.*)?$")


def site_of(config_file: Path) -> Site:
    """The site_url and use_directory_urls of a mkdocs.yml, read line by line (its custom tags
    such as ``!!python/name`` are never evaluated); a missing file or a value that is not an
    http(s) URL means no site_url."""
    try:
        text = config_file.read_text(encoding="utf-8-sig", errors="replace")
    except OSError:
        return Site(None)
    found = {}
    for line in text.splitlines():
        m = _TOP_KEY.match(line)
        if m:
            found.setdefault(m.group(1), m.group(2).strip("'\""))
    return site(found.get("site_url"), found.get("use_directory_urls", "true").lower() not in ("false", "no", "off"))


def site(url: str | None, directory_urls: bool = True) -> Site:
    """A Site from a site_url as MkDocs holds it; anything but an http(s) URL is none."""
    if not url or not isinstance(url, str):
        return Site(None, directory_urls)
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in url for c in "\"'<> \n\t"):
        return Site(None, directory_urls)
    return Site(url.strip().rstrip("/") + "/", directory_urls)
