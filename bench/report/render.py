"""Results -> Markdown pages (Jinja, StrictUndefined); ``bench.report.write`` writes what changed.

Safety: every ``{{ value }}`` that is a plain string is escaped for Markdown *and* HTML by the
environment's ``finalize`` hook, so model outputs and server strings can never become markup,
links or template code. Filters that build markup on purpose return ``Markup``; outputs are
shown in fenced code blocks whose fence is longer than any backtick run inside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from bench.analysis import scoring
from bench.analysis.history import model_steps
from bench.errors import ResultsError
from bench.quality import annotations
from bench.report import diff as diff_text
from bench.report import feed, story
from bench.report.format import (  # noqa: F401 (md_text, slug, ...: the names pages and tests use)
    code_block,
    extra_label,
    finalize,
    fmt_any,
    fmt_bytes,
    fmt_date,
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
    metric_text,
    slug,
    title_text,
    utc_time,
)
from bench.report.reading import make_view, read_slim_views, workers_setting
from bench.report.views import (
    RunView,
    breakdown,
    figure_sources,
    latency_chart,
    load_chart,
    model_trend,
    quality_of,
    scatter,
    selection_data,
    split_history,
    trend,
    ttft_chart,
)
from bench.report.write import (  # noqa: F401
    GENERATED_MARK,
    MARKER,
    REPORT_DIR,
    WriteReport,
    _read_manifest,
    inputs_stamp,
    save_render_stamp,
    unchanged_render,
    write_pages,
)
from bench.results import metrics
from bench.results.machines import machine_key, machine_label, same_machine
from bench.results.schema import ModelInfo, Run, schema_text
from bench.results.stats import ModelStats, run_stats
from bench.results.store import LoadProblem, load_run

FULL_RUN_PAGES = 20  # newest runs per machine with a page of their own; older ones are rows in tables


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
        time=fmt_time, date=fmt_date, params=fmt_params, slug=slug, json_script=json_for_script,
    )
    env.globals.update(
        DIMENSIONS=scoring.DIMENSIONS, DIMENSION_INFO=scoring.DIMENSION_INFO, reason=reason, fmt=fmt_any,
        metrics=metrics.METRICS, request_metrics=metrics.request_metrics, model_metrics=metrics.model_metrics,
        metric_columns=metrics.columns, metric_row_label=metric_row_label, metric_heading=metric_heading,
        metric_text=metric_text, computed_figures=_computed_figures,
        fmt_extra=fmt_extra, extra_label=extra_label, config_json=_config_json, outputs=_outputs,
        judgements=_judgements, manual_for=_manual_for, figure_sources=figure_sources, load_chart=load_chart,
        pretty_json=lambda data: json.dumps(data, indent=2, ensure_ascii=False),
        metric_label=diff_text.metric_label, fmt_metric=diff_text.fmt_value, split_history=split_history,
    )
    return env


def build_pages(runs: list[Run], problems: list[LoadProblem], profiles: Mapping[str, scoring.Profile],
                prefix: str = REPORT_DIR, manual: Mapping[str, dict[str, int]] | None = None,
                slo: str | None = None, full_run_pages: int = FULL_RUN_PAGES,
                prepared: list[RunView] | None = None, site: story.Site | None = None) -> dict[str, str]:
    """Every generated page: relative path -> Markdown (and the Atom feed, ``<prefix>/feed.xml``,
    when ``site`` has a site_url). ``manual``: run id -> annotation scores; ``slo``: bench.yaml's
    service-level objectives, drawn on load charts; ``full_run_pages``: runs per machine (the
    newest) that get a page of their own, the others are rows in tables (the run list, model and
    machine pages); ``prepared``: views made already (``render`` reads and slims older runs)."""
    env = _env()
    env.globals["slo_bounds"] = bounds = _slo_bounds(slo, problems)
    manual = manual or {}
    views = sorted(list(prepared or []) + [make_view(r, manual.get(r.run_id, {})) for r in runs],
                   key=lambda v: v.run.run_id)
    latest, sources, failed_latest = current(views)
    rankings: list[scoring.Ranking] = []
    if latest is not None:
        cands = scoring.candidates(latest.run, quality_of(latest), latest.stats)
        rankings = [scoring.rank(cands, name, p) for name, p in profiles.items()]
    model_slugs, prompt_slugs = _slugs(views)
    histories = {key: [v for v in views if key in v.run.models] for key in model_slugs}
    prompt_texts = {p["id"]: p["text"] for v in views for p in v.run.workload.prompts}
    paged = {v.slug for v in views if not v.slim} & full_slugs(views, full_run_pages)
    common = dict(
        run_ref=lambda view, base="": _run_ref(view, base, paged), full_run_pages=full_run_pages,
        run_when=lambda view, base="": _run_when(view, base, paged),
        prefix=Markup(slug(prefix)), views=views, latest=latest, problems=problems, rankings=rankings,
        newest=views[-1] if views else None, sources=sources, failed_latest=failed_latest, age=_age,
        machine_count=len({machine_key(v.run.machine) for v in views}), **_load_context(views, bounds),
        model_slugs=model_slugs, prompt_slugs=prompt_slugs, histories=histories,
        prompt_text=lambda pid: prompt_texts.get(pid, ""),
        constraints_text=lambda name: _constraints_text(profiles[name]),
    )
    pages: dict[str, str] = {}
    charts_home = {}
    here = [v for v in views if machine_key(v.run.machine) == machine_key(views[-1].run.machine)] if views else []
    if latest is not None:
        charts_home = dict(latency=latency_chart(latest), scatter=scatter(latest),
                           breakdown=breakdown(rankings[0]) if rankings else None,
                           trend=trend(here, "e2e"), trend_tps=trend(here, "decode_tps"))
    pages["index.md"] = env.get_template("home.md.j2").render(**common, charts=charts_home)
    pages.update(_run_list_pages(env, common, views, prefix))
    pages.update({f"{prefix}/runs/{v.slug}.md": env.get_template("run.md.j2").render(
        **common, view=v, latency_chart=latency_chart(v), ttft_chart=ttft_chart(v)) for v in views if v.slug in paged})
    pages[f"{prefix}/models/index.md"] = env.get_template("models.md.j2").render(**common)
    pages.update(_machine_pages(env, common, views, prefix))
    steps = {key: model_steps([v.run for v in views], key) for key in model_slugs}
    for key, mslug in model_slugs.items():
        history = histories[key]
        pages[f"{prefix}/models/{mslug}.md"] = env.get_template("model.md.j2").render(
            **common, key=key, history=history, info=history[-1].run.models[key],
            trend=model_trend(_same_machine_as_last(history), key, steps.get(key, [])), steps=steps.get(key, []))
    pages[f"{prefix}/prompts/index.md"] = env.get_template("prompts.md.j2").render(**common)
    for pid, pslug in prompt_slugs.items():
        pages[f"{prefix}/prompts/{pslug}.md"] = env.get_template("prompt.md.j2").render(
            **common, pid=pid, run_view=_latest_with_prompt(views, pid))
    pages[f"{prefix}/selection.md"] = env.get_template("selection.md.j2").render(
        **common, breakdowns=[breakdown(r) for r in rankings], selection_data=selection_data(rankings))
    pages[f"{prefix}/schema.md"] = env.get_template("schema.md.j2").render(**common, schema=schema_text())
    all_steps = sorted((s for ss in steps.values() for s in ss), key=lambda s: s.run_id)
    pages.update(_history_pages(env, common, views, all_steps, profiles, prefix, site or story.Site(None)))
    return pages


def _history_pages(env: Environment, common: dict[str, Any], views: list[RunView], steps: list,
                   profiles: Mapping[str, scoring.Profile], prefix: str, site: story.Site) -> dict[str, str]:
    """What history tells: the Changes page, rank changes per commit, and the Atom feed of
    regressions (only with a site_url: its links must be absolute)."""
    atom = feed.feed(views, steps, site, prefix)
    pages = {f"{prefix}/changes.md": env.get_template("changes.md.j2").render(
        **common, **_changes(views), steps=steps, feed=atom is not None)}
    pages[f"{prefix}/commits.md"] = env.get_template("commits.md.j2").render(
        **common, commit_changes=story.commit_changes(views, profiles))
    if atom is not None:
        pages[f"{prefix}/feed.xml"] = atom
    return pages


def _run_ref(view: RunView, base: str, paged: set[str]) -> Markup:
    """The run's id, linked to its page when it has one (older runs are rows in tables)."""
    text = md_text(view.run.run_id)
    return Markup(f"[{text}]({base}{view.slug}.md)") if view.slug in paged else text


def _run_when(view: RunView, base: str, paged: set[str]) -> Markup:
    """When the run started (UTC), linked to its page when it has one; its id is the tooltip (run ids
    are letters, digits, '.', '_', '-'). Narrower than the id in a wide history table."""
    when, rid = fmt_time(view.run.started_at), view.run.run_id
    if view.slug in paged:
        return Markup(f'[{when}]({base}{view.slug}.md "{rid}")')
    return Markup(f'<span title="{rid}">{when}</span>')


RUNS_PER_PAGE = 100


def _run_list_pages(env: Environment, common: dict[str, Any], views: list[RunView], prefix: str) -> dict[str, str]:
    """The run list, newest first, RUNS_PER_PAGE to a page: runs/index.md, runs/_page-2.md, ..."""
    newest_first = views[::-1]
    count = max(1, -(-len(newest_first) // RUNS_PER_PAGE))
    names = ["index.md"] + [f"_page-{k}.md" for k in range(2, count + 1)]  # "_": never a run's slug
    pages = {}
    for k, name in enumerate(names, start=1):
        links = [f"[{k2}]({n})" if k2 != k else f"**{k2}**" for k2, n in enumerate(names, start=1)]
        pages[f"{prefix}/runs/{name}"] = env.get_template("runs.md.j2").render(
            **common, rows=newest_first[(k - 1) * RUNS_PER_PAGE:k * RUNS_PER_PAGE], page=k, page_count=count,
            per_page=RUNS_PER_PAGE, pager=Markup("Pages: " + " · ".join(links)))
    return pages


def full_slugs(views: list[RunView], keep: int) -> set[str]:
    """The runs that get a page: the ``keep`` newest of each machine, and every run another
    page shows samples of (the figures' sources on the home page, the latest run of each model and
    of each prompt, the newest load sweep, the run the Changes page compares with)."""
    from bench.analysis.compare import previous_comparable

    full: set[str] = set()
    for group in machine_groups(views):
        full.update(v.slug for v in group.views[-keep:] if keep > 0)
    if views:
        sources, failed = _sources(views)
        full |= {v.slug for v in sources.values()} | ({failed.slug} if failed else set())
        load_view = next((v for v in reversed(views) if v.load_levels), None)
        latest_of: dict[str, RunView] = {}
        for v in views:
            latest_of.update({k: v for k in v.run.models} | {p["id"]: v for p in v.run.workload.prompts})
        full |= {v.slug for v in latest_of.values()} | ({load_view.slug} if load_view else set())
        runs = [v.run for v in views]
        prev = previous_comparable(runs, runs[-1])
        full |= {v.slug for v in views if v.run is prev}
    return full


def _slugs(views: list[RunView]) -> tuple[dict[str, str], dict[str, str]]:
    """Page slugs of every model and every prompt, in the order first seen."""
    models: dict[str, str] = {}
    prompts: dict[str, str] = {}
    for v in views:
        for key in v.run.models:
            models.setdefault(key, slug(key))
        for p in v.run.workload.prompts:
            prompts.setdefault(p["id"], slug(p["id"]))
    return models, prompts


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
    d = compare.diff(a, b, history=runs)
    rows = [dict(model=r.model, metric=diff_text.metric_label(r.metric),
                 a=diff_text.fmt_value(r.metric, r.a), b=diff_text.fmt_value(r.metric, r.b), change=diff_text.fmt_change(r),
                 status=r.status, reason=r.reason or "", basis=r.basis or "") for r in d.rows]
    return {"change": {"rows": rows, "ranking": d.ranking, "regressions": len(d.regressions),
                       "threshold": d.threshold, "method": diff_text.METHOD, "hints": d.hints},
            "previous": next(v for v in views if v.run is prev)}


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


def _computed_figures(ms: ModelStats, info: ModelInfo) -> list[tuple[metrics.Metric, float]]:
    """Model-level figures that are not runtime facts themselves (those show as facts)."""
    return [(m, ms.facts[m.id]) for m in metrics.model_metrics()
            if m.id not in info.extra and ms.facts.get(m.id) is not None]


def _config_json(cfg: Mapping[str, Any]) -> Markup:
    return code_block(json.dumps(cfg, indent=2, ensure_ascii=False), "json")


def _judgements(view: RunView, model: str, prompt_id: str) -> list[Any]:
    return [j for j in view.run.judgements if j.model == model and j.prompt_id == prompt_id]


def _manual_for(view: RunView, sample: Any) -> int | None:
    return view.manual.get(annotations.response_id(sample.model, sample.prompt_id, sample.output))


def _outputs(view: RunView, model: str, prompt_id: str) -> list[Any]:
    return [s for s in view.run.samples if s.model == model and s.prompt_id == prompt_id and not s.warmup]


@dataclass
class MachineGroup:
    key: str
    label: str
    slug: str
    views: list[RunView]

    @property
    def latest(self) -> RunView:
        return self.views[-1]


def _machine_pages(env: Environment, common: dict[str, Any], views: list[RunView], prefix: str) -> dict[str, str]:
    machines = machine_groups(views)
    pages = {f"{prefix}/machines.md": env.get_template("machines.md.j2").render(**common, machines=machines)}
    for group in machines:
        pages[f"{prefix}/machines/{group.slug}.md"] = env.get_template("machine.md.j2").render(**common, group=group)
    return pages


def machine_groups(views: list[RunView]) -> list[MachineGroup]:
    """Runs by machine (its name, else its hardware fingerprint), the machine of the newest run first."""
    groups: dict[str, list[RunView]] = {}
    for v in views:
        groups.setdefault(machine_key(v.run.machine), []).append(v)
    ordered = sorted(groups.items(), key=lambda kv: kv[1][-1].run.run_id, reverse=True)
    return [MachineGroup(k, machine_label(vs[-1].run.machine), slug(k), vs) for k, vs in ordered]


def current(views: list[RunView]) -> tuple[RunView | None, dict[str, RunView], RunView | None]:
    """What the home and selection pages show: per model of the newest run, the newest run of the
    same workload and machine in which it had a successful request (so one failed run never hides
    what is known), as one view; the run each model's figures come from; and the newest run when
    it had no successful request at all (the page says so in a banner)."""
    if not views:
        return None, {}, None
    newest = views[-1]
    sources, failed = _sources(views)
    if all(v is newest for v in sources.values()):
        return newest, sources, failed
    run = newest.run.model_copy(update={
        "models": {k: sources[k].run.models[k] for k in newest.run.models},
        "samples": [s for k in newest.run.models for s in sources[k].run.samples if s.model == k],
        "judgements": [j for k in newest.run.models for j in sources[k].run.judgements if j.model == k]})
    manual = {rid: v for k, src in sources.items() for rid, v in src.manual.items() if rid.rsplit("/", 2)[0] == k}
    view = RunView(run, run_stats(run), newest.slug, annotations.model_quality(run, manual),
                   annotations.agreement(run, manual), manual)
    return view, sources, failed


def _sources(views: list[RunView]) -> tuple[dict[str, RunView], RunView | None]:
    """Per model of the newest run, the newest run of its workload and machine in which the model
    had a successful request; and the newest run when it had none at all."""
    newest = views[-1]
    sources: dict[str, RunView] = {}
    for key in newest.run.models:
        sources[key] = next((v for v in reversed(views) if key in v.run.models and _good(v, key)
                             and v.run.workload.hash == newest.run.workload.hash
                             and same_machine(v.run.machine, newest.run.machine) is None), newest)
    failed = None if any(_good(newest, k) for k in newest.run.models) else newest
    return sources, failed


def _same_machine_as_last(history: list[RunView]) -> list[RunView]:
    """A model's runs on the machine of its latest one: trends never mix machines."""
    last = machine_key(history[-1].run.machine) if history else None
    return [v for v in history if machine_key(v.run.machine) == last]


def _good(view: RunView, key: str) -> bool:
    ms = view.stats_by_model.get(key)
    return ms is not None and ms.ok > 0


def _age(older: str, newer: str) -> str:
    """How much older one run is than another, in words ('3 h', '2 days')."""
    a, b = utc_time(older), utc_time(newer)
    if a is None or b is None:
        return "older"
    hours = (b - a).total_seconds() / 3600
    return f"{hours * 60:.0f} min" if hours < 1 else f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


def _latest_with_prompt(views: list[RunView], pid: str) -> RunView | None:
    for v in reversed(views):
        if any(p["id"] == pid for p in v.run.workload.prompts):
            return v
    return None


def _load_context(views: list[RunView], bounds: list) -> dict:
    """The newest run with a load sweep, and how many users each of its models serves within the SLO."""
    from bench.analysis.capacity import capacity

    load_view = next((v for v in reversed(views) if v.load_levels), None)
    return {"load_view": load_view, "serves": capacity(load_view.run, bounds) if load_view and bounds else {}}


def _slo_bounds(slo: str | None, problems: list[LoadProblem]) -> list:
    from bench.analysis.capacity import parse_slo
    from bench.errors import ConfigError

    if not slo:
        return []
    try:
        return parse_slo(slo)
    except ConfigError as e:
        problems.append(LoadProblem(Path("bench.yaml"), f"slo: {e}"))
        return []


def render(results_dir: Path, docs_dir: Path, profiles: Mapping[str, scoring.Profile] | None = None,
           slo: str | None = None, full_run_pages: int | None = None,
           site: story.Site | None = None) -> tuple[WriteReport, list[LoadProblem]]:
    """Load every run in results_dir and (re)write the generated pages under docs_dir. ``site``: where
    the site is published (default: the site_url of the mkdocs.yml next to docs_dir)."""
    from bench.config import load_profiles, load_site_run_pages, load_slo

    profiles, slo = profiles or load_profiles(), slo or load_slo()
    full_run_pages = full_run_pages or load_site_run_pages()
    site = site or story.site_of(docs_dir.parent / "mkdocs.yml")
    workers = workers_setting()  # a bad value is an error even when the render is skipped
    stamp = inputs_stamp(results_dir, repr((sorted(profiles.items()), slo, full_run_pages, site)))
    known = unchanged_render(docs_dir, stamp)
    if known is not None:  # nothing it reads changed since the last render (mkdocs serve rebuilds)
        report = WriteReport([], len(_read_manifest(docs_dir / REPORT_DIR / MARKER, REPORT_DIR)[0]), [], [])
        return report, [LoadProblem(Path(path), message) for path, message in known]
    loaded, problems = read_slim_views(results_dir, workers)
    views = sorted((v for _, v in loaded), key=lambda v: v.run.run_id)
    full = full_slugs(views, full_run_pages)
    for i, (path, view) in enumerate(sorted(loaded, key=lambda pv: pv[1].run.run_id)):
        if view.slug in full:  # read again, whole: its page shows samples
            try:
                views[i] = make_view(load_run(path), view.manual)
            except ResultsError as e:
                problems.append(LoadProblem(path, str(e)))
    pages = build_pages([], problems, profiles, slo=slo, full_run_pages=full_run_pages, prepared=views, site=site)
    report = write_pages(pages, docs_dir)
    if not report.warnings:
        save_render_stamp(docs_dir, stamp, pages, [(str(p.path), p.message) for p in problems])
    return report, problems
