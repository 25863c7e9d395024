"""An Atom feed of regressions (RFC 4287), as asv publishes one: subscribe and be told when a
model got worse, without opening the site.

Entries: every change point whose new level is worse (a latency up, a throughput down), linked
to the model's page, and every model that failed in the latest run of a machine, linked to the
run's page. Links are absolute, from mkdocs.yml's ``site_url``; without one there is no feed.
ElementTree builds the XML, so every name and text is escaped; characters XML cannot hold are
dropped. The feed changes only when the results do (no "now" in it), so unchanged results never
rewrite it.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from typing import Iterable

from bench.analysis.history import Step
from bench.report.diff import fmt_value, metric_label
from bench.report.format import slug, svg_line, utc_time
from bench.report.story import Site
from bench.report.views import RunView, step_text
from bench.results.machines import machine_key, machine_label
from bench.results.metrics import METRICS

ATOM = "http://www.w3.org/2005/Atom"
MAX_ENTRIES = 200
EPOCH = "1970-01-01T00:00:00Z"


def atom_time(iso: str | None) -> str:
    """An RFC 3339 UTC timestamp from a run's (untrusted) ISO time; the epoch when it is not one."""
    t = utc_time(iso)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else EPOCH


def worse(s: Step) -> bool:
    """Whether a change point moved its metric the wrong way."""
    m = METRICS.get(s.metric)
    return m is not None and ((m.better == "lower" and s.change > 0) or (m.better == "higher" and s.change < 0))


def _urn(site: Site, *parts: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, '|'.join((site.url or '', *parts)))}"


def _failed(v: RunView) -> Iterable[tuple[str, str]]:
    """(model, what went wrong) for each model of a run that had no successful request. Read from the
    run's summary, which a slimmed run keeps; the first failure's detail when the samples are there."""
    for key, info in v.run.models.items():
        ms = v.stats_by_model.get(key)
        if (ms is not None and ms.ok) or info.status == "skipped":
            continue
        first = next((s for s in v.run.samples if s.model == key and not s.warmup and not s.ok), None)
        common = max(ms.errors, key=ms.errors.__getitem__) if ms is not None and ms.errors else None
        why = (f"{first.error}: {first.error_detail or ''}" if first
               else common or info.reason or f"status {info.status}")
        yield key, why


def entries(views: list[RunView], steps: list[Step], site: Site, prefix: str) -> list[dict[str, str]]:
    """The feed's entries (id, title, updated, link, summary), newest first."""
    out = []
    for s in steps:
        if worse(s):
            out.append(dict(
                id=_urn(site, "step", s.model, s.metric, s.run_id), updated=atom_time(s.started_at),
                title=f"{s.model}: {step_text(s)}", link=site.page(f"{prefix}/models/{slug(s.model)}.md") or "",
                summary=(f"{metric_label(s.metric)} of {s.model} moved from {fmt_value(s.metric, s.before)} to "
                         f"{fmt_value(s.metric, s.after)} ({s.change * 100:+.0f}%) since {s.since}, run {s.run_id}: "
                         "a change point over its comparable runs (same workload and machine).")))
    latest: dict[str, RunView] = {}
    for v in views:
        latest[machine_key(v.run.machine)] = v
    for v in latest.values():
        for key, why in _failed(v):
            out.append(dict(
                id=_urn(site, "failed", v.run.run_id, key), updated=atom_time(v.run.started_at),
                title=f"{key} failed in run {v.run.run_id}", link=site.page(f"{prefix}/runs/{v.slug}.md") or "",
                summary=f"No request of {key} succeeded in the latest run on {machine_label(v.run.machine)}: {why}"))
    return sorted(out, key=lambda e: e["updated"], reverse=True)[:MAX_ENTRIES]  # stable: steps keep their order


def _add(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ATOM}}}{tag}", {k: svg_line(v) for k, v in attrs.items()})
    if text is not None:
        el.text = svg_line(text)[:2000]
    return el


def feed(views: list[RunView], steps: list[Step], site: Site, prefix: str) -> str | None:
    """The Atom document, or None when there is no site_url (its links must be absolute)."""
    if not site.url:
        return None
    ET.register_namespace("", ATOM)
    root = ET.Element(f"{{{ATOM}}}feed")
    items = entries(views, steps, site, prefix)
    _add(root, "id", _urn(site, "feed", prefix))
    _add(root, "title", "bench: regressions")
    _add(root, "subtitle", "Change points that made a model worse, and models that failed in a machine's latest run.")
    # The newest entry (so a run that adds none leaves the feed as it was), else the newest run.
    newest = max([e["updated"] for e in items] or [atom_time(v.run.started_at) for v in views[-1:]] or [EPOCH])
    _add(root, "updated", newest)
    _add(root, "link", rel="self", type="application/atom+xml", href=site.page(f"{prefix}/feed.xml") or "")
    _add(root, "link", rel="alternate", type="text/html", href=site.page(f"{prefix}/changes.md") or "")
    _add(_add(root, "author"), "name", "bench")
    _add(root, "generator", "bench")
    for e in items:
        entry = _add(root, "entry")
        _add(entry, "id", e["id"])
        _add(entry, "title", e["title"])
        _add(entry, "updated", e["updated"])
        _add(entry, "link", rel="alternate", type="text/html", href=e["link"])
        _add(entry, "summary", e["summary"])
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
