"""Results -> Markdown pages (Jinja, StrictUndefined), then a writer that rewrites only what changed.

Safety: every ``{{ value }}`` that is a plain string is escaped for Markdown *and* HTML by the
environment's ``finalize`` hook, so model outputs and server strings can never become markup,
links or template code. Filters that build markup on purpose return ``Markup``; outputs are
shown in fenced code blocks whose fence is longer than any backtick run inside them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from bench.analysis import scoring
from bench.quality import annotations
from bench.report import charts
from bench.report import diff as diff_text
from bench.report.format import (  # noqa: F401
    code_block,
    extra_label,
    finalize,
    fmt_any,
    fmt_bytes,
    fmt_extra,
    fmt_ms,
    fmt_num,
    fmt_params,
    fmt_pct,
    fmt_s,
    fmt_time,
    json_for_script,
    md_text,
    metric_heading,
    metric_row_label,
    slug,
    title_text,
)
from bench.results.metrics import METRICS, compared
from bench.results.schema import Run, schema_text
from bench.results.stats import ModelStats, run_stats
from bench.results.store import LoadProblem, load_all

REPORT_DIR = "report"  # generated pages live in <docs_dir>/report/ plus the generated <docs_dir>/index.md
MARKER = ".bench-generated"

# ----------------------------------------------------------------------------- the site model


@dataclass
class RunView:
    run: Run
    stats: list[ModelStats]
    slug: str
    quality: dict[str, annotations.ModelQuality]
    agreement: dict[str, Any]
    manual: dict[str, int]

    @cached_property
    def stats_by_model(self) -> dict[str, ModelStats]:
        return {s.model: s for s in self.stats}

    @property
    def label(self) -> str:
        """Short x-axis label: start time and, when known, the commit."""
        commit = (self.run.git.commit or "")[:7] if self.run.git else ""
        return self.run.run_id[:13] + (f" {commit}" if commit else "")


def _env() -> Environment:
    env = Environment(
        loader=PackageLoader("bench.report", "templates"),
        undefined=StrictUndefined,
        autoescape=False,
        finalize=finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        md=md_text, page_title=title_text, code=code_block, ms=fmt_ms, s=fmt_s, num=fmt_num, bytes=fmt_bytes, pct=fmt_pct,
        time=fmt_time, params=fmt_params, slug=slug, json_script=json_for_script,
    )
    env.globals.update(
        DIMENSIONS=scoring.DIMENSIONS, DIMENSION_INFO=scoring.DIMENSION_INFO, reason=reason, fmt=fmt_any,
        metrics=METRICS, metric_row_label=metric_row_label,
        fmt_extra=fmt_extra, extra_label=extra_label, config_json=_config_json, outputs=_outputs,
        judgements=_judgements, manual_for=_manual_for,
        pretty_json=lambda data: json.dumps(data, indent=2, ensure_ascii=False),
    )
    return env


def _latency_chart(view: RunView) -> Markup:
    series = [(ms.model, [s.e2e_s for s in view.run.samples if s.model == ms.model and not s.warmup and s.ok and s.e2e_s])
              for ms in view.stats if ms.ok]
    return Markup(charts.distribution(series, title="End-to-end latency per request", unit="s",
                                      caption="Box: p25–p75, thick mark: p50, tick: p95; dots: requests."))


def _ttft_chart(view: RunView) -> Markup:
    series = [(ms.model, [s.ttft_s * 1000 for s in view.run.samples
                          if s.model == ms.model and not s.warmup and s.ok and s.ttft_s])
              for ms in view.stats if ms.ok and ms.ttft.n]
    return Markup(charts.distribution(series, title="Time to first token per request", unit="ms"))


def _scatter(view: RunView) -> Markup:
    pts = [{"label": ms.model, "x": ms.ttft.p50 * 1000 if ms.ttft.p50 else None, "y": ms.decode_tps.p50}
           for ms in view.stats if ms.ok]
    return Markup(charts.scatter(pts, title="Responsiveness vs throughput", x_label="TTFT p50 (ms), lower is better",
                                 y_label="decode tokens/s (p50), higher is better"))


def _breakdown(ranking: scoring.Ranking) -> Markup:
    w = ranking.weights
    wsum = sum(w.values()) or 1
    rows = []
    for r in ranking.rows:
        if r.total is None:
            continue
        present = sum(w[d] for d in scoring.DIMENSIONS if r.sub[d] is not None and w[d] > 0) or 1
        rows.append((r.model, {d: (r.sub[d] * w[d] / present if r.sub[d] is not None else None)
                               for d in scoring.DIMENSIONS if w[d] > 0}))
    keys = [d for d in scoring.DIMENSIONS if w[d] / wsum > 0]
    return Markup(charts.stacked_bars(rows, keys=keys, title=f"Score breakdown: {ranking.profile}", max_value=1.0,
                                      caption="Each segment: a dimension's sub-score times its weight share."))


def _plotted(metric_id: str, stat: str, ms: ModelStats | None) -> float | None:
    """A metric's statistic as charts plot it (latencies under a second in ms)."""
    if ms is None or not ms.ok or metric_id not in ms.metrics:
        return None
    value = getattr(ms.metrics[metric_id], stat)
    return value * 1000 if value is not None and METRICS[metric_id].kind == "ms" else value


def _trend(views: list[RunView], metric_id: str, stat: str = "p50") -> Markup | None:
    if len(views) < 2:
        return None
    models = sorted({m for v in views for m in v.stats_by_model})
    series = [(m, [(v.label, _plotted(metric_id, stat, v.stats_by_model.get(m))) for v in views]) for m in models]
    label = metric_heading(METRICS[metric_id], stat, parens=True)
    return Markup(charts.lines(series, title=f"Trend: {label}", y_label=label))


def quality_of(view: "RunView") -> dict[str, tuple[float, tuple[str, ...]]]:
    """Quality per model for the selection framework: the combined score and its sources."""
    return {k: (q.combined, q.sources) for k, q in view.quality.items() if q.combined is not None}


def build_pages(runs: list[Run], problems: list[LoadProblem], profiles: Mapping[str, scoring.Profile],
                prefix: str = REPORT_DIR, manual: Mapping[str, dict[str, int]] | None = None) -> dict[str, str]:
    """Every generated page: relative path -> Markdown. ``manual``: run id -> annotation scores."""
    env = _env()
    manual = manual or {}
    views = []
    for r in sorted(runs, key=lambda r: r.run_id):
        m = manual.get(r.run_id, {})
        views.append(RunView(r, run_stats(r), slug(r.run_id), annotations.model_quality(r, m),
                             annotations.agreement(r, m), m))
    latest = views[-1] if views else None
    rankings: list[scoring.Ranking] = []
    if latest is not None:
        cands = scoring.candidates(latest.run, quality_of(latest), latest.stats)
        rankings = [scoring.rank(cands, name, p) for name, p in profiles.items()]
    model_slugs: dict[str, str] = {}
    for v in views:
        for key in v.run.models:
            model_slugs.setdefault(key, slug(key))
    prompt_slugs: dict[str, str] = {}
    for v in views:
        for p in v.run.workload.prompts:
            prompt_slugs.setdefault(p["id"], slug(p["id"]))

    histories = {key: [v for v in views if key in v.run.models] for key in model_slugs}
    prompt_texts = {p["id"]: p["text"] for v in views for p in v.run.workload.prompts}
    common = dict(
        prefix=Markup(slug(prefix)), views=views, latest=latest, problems=problems, rankings=rankings,
        model_slugs=model_slugs, prompt_slugs=prompt_slugs, histories=histories,
        prompt_text=lambda pid: prompt_texts.get(pid, ""),
        constraints_text=lambda name: _constraints_text(profiles[name]),
    )
    pages: dict[str, str] = {}
    charts_home = {}
    if latest is not None:
        charts_home = dict(latency=_latency_chart(latest), scatter=_scatter(latest),
                           breakdown=_breakdown(rankings[0]) if rankings else None,
                           trend=_trend(views, "e2e"), trend_tps=_trend(views, "decode_tps"))
    pages["index.md"] = env.get_template("home.md.j2").render(**common, charts=charts_home)
    pages[f"{prefix}/runs/index.md"] = env.get_template("runs.md.j2").render(**common)
    for v in views:
        pages[f"{prefix}/runs/{v.slug}.md"] = env.get_template("run.md.j2").render(
            **common, view=v, latency_chart=_latency_chart(v), ttft_chart=_ttft_chart(v))
    pages[f"{prefix}/models/index.md"] = env.get_template("models.md.j2").render(**common)
    for key, mslug in model_slugs.items():
        history = histories[key]
        pages[f"{prefix}/models/{mslug}.md"] = env.get_template("model.md.j2").render(
            **common, key=key, history=history, info=history[-1].run.models[key],
            trend=_model_trend(history, key))
    pages[f"{prefix}/prompts/index.md"] = env.get_template("prompts.md.j2").render(**common)
    for pid, pslug in prompt_slugs.items():
        pages[f"{prefix}/prompts/{pslug}.md"] = env.get_template("prompt.md.j2").render(
            **common, pid=pid, run_view=_latest_with_prompt(views, pid))
    pages[f"{prefix}/selection.md"] = env.get_template("selection.md.j2").render(
        **common, breakdowns=[_breakdown(r) for r in rankings], selection_data=_selection_data(rankings))
    pages[f"{prefix}/schema.md"] = env.get_template("schema.md.j2").render(**common, schema=schema_text())
    pages[f"{prefix}/changes.md"] = env.get_template("changes.md.j2").render(**common, **_changes(views))
    return pages


def _changes(views: list[RunView]) -> dict[str, Any]:
    """Latest run vs the previous comparable one (same workload, same machine)."""
    from bench.analysis import compare

    if not views:
        return {"change": None, "previous": None}
    runs = [v.run for v in views]
    prev = compare.previous_comparable(runs, runs[-1])
    if prev is None:
        return {"change": None, "previous": None}
    a = compare.Side(prev.run_id, {m: prev for m in prev.models})
    b = compare.Side(runs[-1].run_id, {m: runs[-1] for m in runs[-1].models})
    d = compare.diff(a, b)
    rows = [dict(model=r.model, metric=diff_text.metric_label(r.metric),
                 a=diff_text.fmt_value(r.metric, r.a), b=diff_text.fmt_value(r.metric, r.b), change=diff_text.fmt_change(r),
                 status=r.status, reason=r.reason or "") for r in d.rows]
    return {"change": {"rows": rows, "ranking": d.ranking, "regressions": len(d.regressions),
                       "threshold": d.threshold}, "previous": next(v for v in views if v.run is prev)}


def _constraints_text(profile: scoring.Profile) -> str:
    c = profile.constraints
    parts = []
    if c.max_memory_mb:
        parts.append(f"peak memory at most {c.max_memory_mb:g} MiB")
    if c.max_disk_mb:
        parts.append(f"disk at most {c.max_disk_mb:g} MiB")
    if c.max_ttft_ms:
        parts.append(f"TTFT p50 at most {c.max_ttft_ms:g} ms")
    if c.min_decode_tps:
        parts.append(f"at least {c.min_decode_tps:g} decode tokens/s")
    if c.allowed_licenses is not None:
        parts.append("license one of: " + ", ".join(c.allowed_licenses))
    return ("Hard constraints: " + "; ".join(parts) + ".") if parts else "No hard constraints."


def reason(r: scoring.Ranking) -> str:
    """One line on why the top pick won."""
    top = r.top
    if top is None:
        excluded = [f"{row.model}: {'; '.join(row.excluded)}" for row in r.rows if row.excluded]
        return "no model meets the constraints" + (f" ({' / '.join(excluded)})" if excluded else "")
    dims = [d for d in scoring.DIMENSIONS if r.weights[d] > 0 and top.sub[d] is not None]
    best = [d for d in dims if top.sub[d] is not None and top.sub[d] >= 0.999]
    text = f"score {top.total:.2f}"
    if best:
        text += f"; best on {', '.join(best)}"
    if len(r.rows) > 1 and r.rows[1].rank == 2 and r.rows[1].total is not None:
        text += f"; ahead of {r.rows[1].model} ({r.rows[1].total:.2f})"
    if top.missing:
        text += f"; missing: {', '.join(top.missing)}"
    return text


def _config_json(cfg: Mapping[str, Any]) -> Markup:
    return code_block(json.dumps(cfg, indent=2, ensure_ascii=False), "json")


def _judgements(view: RunView, model: str, prompt_id: str) -> list[Any]:
    return [j for j in view.run.judgements if j.model == model and j.prompt_id == prompt_id]


def _manual_for(view: RunView, sample: Any) -> int | None:
    return view.manual.get(annotations.response_id(sample.model, sample.prompt_id, sample.output))


def _outputs(view: RunView, model: str, prompt_id: str) -> list[Any]:
    return [s for s in view.run.samples if s.model == model and s.prompt_id == prompt_id and not s.warmup]


def _latest_with_prompt(views: list[RunView], pid: str) -> RunView | None:
    for v in reversed(views):
        if any(p["id"] == pid for p in v.run.workload.prompts):
            return v
    return None


def _model_trend(history: list[RunView], key: str) -> Markup | None:
    """One chart per compared metric: its p50 across the model's runs."""
    if len(history) < 2:
        return None
    charts_ = []
    for m in compared():
        label = metric_heading(m, "p50", parens=True)
        pts = [(v.label, _plotted(m.id, "p50", v.stats_by_model[key])) for v in history]
        charts_.append(charts.lines([(label, pts)], title=f"{m.label} p50 across runs and commits", y_label=label))
    return Markup("\n\n".join(charts_))


def _selection_data(rankings: list[scoring.Ranking]) -> dict[str, Any]:
    """What the page's script needs to re-rank with new weights in the browser."""
    return {
        "dimensions": list(scoring.DIMENSIONS),
        "profiles": [
            {
                "name": r.profile,
                "weights": r.weights,
                "models": [{"model": row.model, "sub": row.sub, "excluded": row.excluded} for row in r.rows],
            }
            for r in rankings
        ],
    }


# ----------------------------------------------------------------------------- writing

# Every page bench writes ends with this line; bench replaces or removes a file only when it carries
# it (and lies inside the generated folders, and is not a symlink). The manifest only says which
# pages bench wrote last time; it is untrusted like everything from git.
GENERATED_MARK = "<!-- generated by bench render from results/: bench rewrites this file, do not edit it -->"
MANIFEST_MAX_BYTES = 1 << 20


@dataclass
class WriteReport:
    written: list[str]
    unchanged: int
    removed: list[str]
    warnings: list[str] = field(default_factory=list)


def _with_mark(text: str) -> str:
    return text.rstrip("\n") + "\n\n" + GENERATED_MARK + "\n"


def _is_page_entry(rel: Any, prefix: str) -> bool:
    """A manifest entry bench could have written: a relative .md path under prefix/, or index.md."""
    if not isinstance(rel, str) or "\\" in rel or "\x00" in rel or not rel.endswith(".md"):
        return False
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts) or ":" in parts[0]:
        return False
    return rel == "index.md" or (parts[0] == prefix and len(parts) > 1)


def _escapes(docs: Path, rel: str, prefix: str) -> str | None:
    """Why docs/rel is not a place bench may write or delete (None when it is)."""
    path = docs / rel
    if path.is_symlink():
        return "is a symlink"
    resolved = path.resolve()
    root = docs.resolve()
    allowed = root / "index.md" if rel == "index.md" else root / prefix
    if resolved != allowed and allowed not in resolved.parents:
        return f"leads outside {allowed} (a symlink in the way)"
    return None


def _read_manifest(marker: Path, prefix: str) -> tuple[set[str], list[str]]:
    """The pages bench wrote last time, and warnings about a manifest that is corrupt or planted."""
    if not marker.is_file():
        return set(), []
    try:
        if marker.stat().st_size > MANIFEST_MAX_BYTES:
            raise ValueError(f"larger than {MANIFEST_MAX_BYTES} bytes")
        data = json.loads(marker.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError, OSError) as e:
        return set(), [f"{marker}: corrupt page manifest ({str(e)[:100]}); no generated page was removed"]
    if not isinstance(data, list):
        return set(), [f"{marker}: corrupt page manifest (not a list); no generated page was removed"]
    entries = {rel for rel in data if _is_page_entry(rel, prefix)}
    bad = [rel for rel in data if not _is_page_entry(rel, prefix)]
    warnings = []
    if bad:
        shown = ", ".join(repr(b)[:80] for b in bad[:3])
        warnings.append(f"{marker}: page manifest names {len(bad)} file(s) outside bench's generated pages "
                        f"({shown}); ignored them")
    return entries, warnings


def _is_ours(path: Path) -> bool:
    try:
        return GENERATED_MARK in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _check_pages(pages: Mapping[str, str], docs_dir: Path, prefix: str) -> dict[str, bool]:
    """For each page: True when the file already holds it. Raises before anything is written when a
    page would replace a file bench did not write, or would be written through a symlink."""
    from bench.errors import BenchError

    current = {}
    for rel, content in pages.items():
        path = docs_dir / rel
        why = _escapes(docs_dir, rel, prefix)
        if why:
            raise BenchError(f"{path} {why}; bench never writes through symlinks: remove it, or render with "
                             "--out into another folder")
        if not path.exists():
            current[rel] = False
            continue
        if not path.is_file():
            raise BenchError(f"{path} is in the way of a generated page: move it, or render with --out")
        text = path.read_text(encoding="utf-8", errors="replace")
        if text != content and GENERATED_MARK not in text:
            raise BenchError(f"{path} exists and was not written by bench (no generated-by mark): move it, "
                             "or render with --out into another folder (a page from an older bench: delete it)")
        current[rel] = text == content
    return current


def _remove_stale(stale: list[str], docs_dir: Path, prefix: str) -> tuple[list[str], list[str]]:
    """Remove pages bench wrote that are gone; keep (with a warning) anything that is not bench's."""
    removed, warnings = [], []
    for rel in stale:
        path = docs_dir / rel
        if not path.exists() and not path.is_symlink():
            continue
        why = _escapes(docs_dir, rel, prefix)
        if why is None and not (path.is_file() and _is_ours(path)):
            why = "was not written by bench (no generated-by mark)"
        if why:
            warnings.append(f"kept {path}: it {why}")
            continue
        path.unlink()
        removed.append(rel)
    return removed, warnings


def _prune_empty_dirs(report: Path) -> None:
    for dirpath, _, _ in os.walk(report, topdown=False, followlinks=False):
        d = Path(dirpath)
        if d != report and not d.is_symlink():
            try:
                d.rmdir()  # only succeeds when empty
            except OSError:
                pass


def write_pages(pages: Mapping[str, str], docs_dir: Path, prefix: str = REPORT_DIR) -> WriteReport:
    """Write pages whose content changed (atomically); remove generated pages that are gone.

    Unchanged files are not touched, so `mkdocs serve`'s watcher does not loop. bench only ever
    replaces or removes files that carry its generated-by mark, inside ``<prefix>/`` or the home page,
    and never follows a symlink there: a hand-written page in the way is an error, never overwritten.
    """
    from bench.errors import BenchError
    from bench.results.store import atomic_write

    report, marker = docs_dir / prefix, docs_dir / prefix / MARKER
    for p in (report, marker):
        if p.is_symlink() or (p == marker and p.exists() and not p.is_file()):
            raise BenchError(f"{p} is a symlink or not a file; bench never writes through symlinks: remove it")
    if report.is_dir() and not marker.is_file() and any(not _is_ours(p) for p in report.rglob("*.md")):
        raise BenchError(f"{report} holds pages bench did not write: move them, or render with --out into another folder")
    previous, warnings = _read_manifest(marker, prefix)
    marked = {rel: _with_mark(text) for rel, text in pages.items()}
    current = _check_pages(marked, docs_dir, prefix)
    written = []
    for rel, content in marked.items():
        if not current[rel]:
            (docs_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(docs_dir / rel, content)
            written.append(rel)
    removed, kept = _remove_stale(sorted(previous - set(pages)), docs_dir, prefix)
    _prune_empty_dirs(report)
    manifest = json.dumps(sorted(pages), indent=0)
    if warnings or not marker.is_file() or marker.read_text(encoding="utf-8", errors="replace") != manifest:
        report.mkdir(parents=True, exist_ok=True)
        atomic_write(marker, manifest)
    return WriteReport(written, sum(current.values()), removed, warnings + kept)


def render(results_dir: Path, docs_dir: Path, profiles: Mapping[str, scoring.Profile] | None = None
           ) -> tuple[WriteReport, list[LoadProblem]]:
    """Load every run in results_dir and (re)write the generated pages under docs_dir."""
    from bench.config import load_profiles

    runs, problems = load_all(results_dir)
    manual: dict[str, dict[str, int]] = {}
    for r in runs:
        path = results_dir / f"{r.run_id}.json"
        try:
            manual[r.run_id] = annotations.manual_scores(path)
        except annotations.AnnotationError as e:
            problems.append(LoadProblem(annotations.annotation_path(path), str(e)))
    pages = build_pages(runs, problems, profiles or load_profiles(), manual=manual)
    return write_pages(pages, docs_dir), problems
