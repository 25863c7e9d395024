"""What the pages show beyond plain values: the site model (one view per run) and the charts,
trends and selection data built from it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from markupsafe import Markup

from bench.analysis import scoring
from bench.analysis.history import Step
from bench.analysis.load import Level, levels
from bench.analysis.server_view import ServerView, server_views
from bench.quality import annotations
from bench.report import charts
from bench.report.diff import metric_label
from bench.report.format import fmt_bytes, md_text, metric_heading, utc_time
from bench.results.metrics import METRICS, compared
from bench.results.schema import ModelInfo, Run
from bench.results.stats import ModelStats


@dataclass
class RunView:
    run: Run
    stats: list[ModelStats]
    slug: str
    quality: dict[str, annotations.ModelQuality]
    agreement: dict[str, Any]
    manual: dict[str, int]
    slim: bool = False  # samples dropped (an older run): its page is a summary

    @cached_property
    def load_levels(self) -> dict[str, list[Level]]:
        """model -> its load levels (a --concurrency run), in order; empty for the sequential matrix."""
        if self.run.workload.scenario.get("name", "sequential") == "sequential":
            return {}
        return {m: sorted(lv, key=lambda x: x.concurrency) for m in self.run.models if (lv := levels(self.run, m))}

    @cached_property
    def server(self) -> dict[str, ServerView]:
        """model -> bench's figures beside the server's own timings (models that have them)."""
        return server_views(self.run)

    @cached_property
    def stats_by_model(self) -> dict[str, ModelStats]:
        return {s.model: s for s in self.stats}

    @property
    def label(self) -> str:
        """Short x-axis label: when it started (UTC, month-day hour:minute) and its commit,
        '11-22 12:50 · c935156' ('no commit' when the run recorded none)."""
        commit = (self.run.git.commit or "")[:7] if self.run.git else ""
        when = utc_time(self.run.started_at)
        stamp = when.strftime("%m-%d %H:%M") if when else self.run.run_id[:13]
        return f"{stamp} · {commit or 'no commit'}"

    @property
    def month(self) -> str:
        """The UTC month it started, '2026-01' (its run id's first characters when started_at does not parse)."""
        when = utc_time(self.run.started_at)
        return when.strftime("%Y-%m") if when else self.run.run_id[:6]

    @property
    def tick(self) -> tuple[str, str]:
        """The run as a trend chart's x value: (run id, label); two runs never share a point."""
        return self.run.run_id, self.label


HISTORY_ROWS = 50  # runs listed one per row on a model or machine page; older ones are summed up by month


@dataclass
class Period:
    """Older runs of one month, summed up in one row of a history table."""

    month: str
    views: list[RunView]

    def failed(self, key: str | None = None) -> int:
        """Runs that failed (``key``: in which that model failed)."""
        if key is None:
            return sum(1 for v in self.views if v.run.status == "failed")
        return sum(1 for v in self.views if (m := v.run.models.get(key)) is not None and m.status != "ok")

    def distinct(self, what: str) -> list[str]:
        """The models (``"models"``) or workload hashes (``"workload"``) of the month's runs, first seen first."""
        seen: dict[str, None] = {}
        for v in self.views:
            seen.update(dict.fromkeys(v.run.models if what == "models" else [v.run.workload.hash]))
        return list(seen)

    def count(self, key: str, attr: str) -> int:
        return sum(getattr(v.stats_by_model[key], attr) for v in self.views if key in v.stats_by_model)

    def median(self, key: str, metric: Any, stat: str) -> float | None:
        """The median over the month's runs of the model's figure (each run's own p50, mean, ...)."""
        vals = [f for v in self.views if (ms := v.stats_by_model.get(key)) is not None
                and (f := ms.figure(metric, stat)) is not None]
        return statistics.median(vals) if vals else None


def split_history(views: list[RunView], newest: int | None = None) -> tuple[list[RunView], list[Period]]:
    """A history table's rows: the ``newest`` runs (newest first), then the older ones by month
    (newest month first). A thousand nightly runs make about 50 + 30 rows, not a thousand."""
    newest = HISTORY_ROWS if newest is None else newest
    ordered = views[::-1]
    months: dict[str, list[RunView]] = {}
    for v in ordered[newest:]:
        months.setdefault(v.month, []).append(v)
    return ordered[:newest], [Period(m, vs) for m, vs in months.items()]


def latency_chart(view: RunView) -> Markup:
    series = [(ms.model, [s.e2e_s for s in view.run.samples if s.model == ms.model and not s.warmup and s.ok and s.e2e_s])
              for ms in view.stats if ms.ok]
    return Markup(charts.distribution(series, title="End-to-end latency per request", unit="s",
                                      caption="Box: p25–p75, thick mark: p50, tick: p95; dots: requests."))


def load_chart(view: RunView, model: str, bounds: list) -> Markup:
    """A load sweep of one model: output tokens/s against ITL p95, level by level, with the SLO's
    ITL p95 bound drawn when there is one."""
    lv = view.load_levels.get(model) or []
    limit = next(((f"SLO: {b.text()}", b.value * 1000) for b in bounds
                  if b.term == "itl" and b.percentile == 95 and b.op == "<="), None)
    points = [(lvl.key, lvl.output_tokens_per_s, lvl.itl_p95 * 1000 if lvl.itl_p95 is not None else None) for lvl in lv]
    return Markup(charts.curve(points, title=f"{model}: throughput against inter-token latency, by load level",
                               x_label="output tokens/s (all users)", y_label="ITL p95 (ms)", limit=limit,
                               caption="Each point is a level; past the knee more users add latency, not throughput."))


def ttft_chart(view: RunView) -> Markup:
    series = [(ms.model, [s.ttft_s * 1000 for s in view.run.samples
                          if s.model == ms.model and not s.warmup and s.ok and s.ttft_s])
              for ms in view.stats if ms.ok and ms.ttft.n]
    return Markup(charts.distribution(series, title="Time to first token per request", unit="ms"))


def scatter(view: RunView) -> Markup:
    pts = [{"label": ms.model, "x": ms.ttft.p50 * 1000 if ms.ttft.p50 else None, "y": ms.decode_tps.p50}
           for ms in view.stats if ms.ok]
    return Markup(charts.scatter(pts, title="Responsiveness vs throughput", x_label="TTFT p50 (ms), lower is better",
                                 y_label="decode tokens/s (p50), higher is better"))


def breakdown(ranking: scoring.Ranking) -> Markup:
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


def plotted(metric_id: str, stat: str, ms: ModelStats | None) -> float | None:
    """A metric's statistic as charts plot it (latencies under a second in ms)."""
    if ms is None or not ms.ok or metric_id not in ms.metrics:
        return None
    value = getattr(ms.metrics[metric_id], stat)
    return value * 1000 if value is not None and METRICS[metric_id].kind == "ms" else value


def trend(views: list[RunView], metric_id: str, stat: str = "p50") -> Markup | None:
    if len(views) < 2:
        return None
    models = sorted({m for v in views for m in v.stats_by_model})
    series = [(m, [(v.tick, plotted(metric_id, stat, v.stats_by_model.get(m))) for v in views]) for m in models]
    label = metric_heading(METRICS[metric_id], stat, parens=True)
    return Markup(charts.lines(series, title=f"Trend: {label}", y_label=label))


def quality_of(view: "RunView") -> dict[str, tuple[float, tuple[str, ...]]]:
    """Quality per model for the selection framework: the combined score and its sources."""
    return {k: (q.combined, q.sources) for k, q in view.quality.items() if q.combined is not None}


def model_trend(history: list[RunView], key: str, steps: list[Step] | None = None) -> Markup | None:
    """One chart per compared metric: its p50 across the model's runs, each change point of that
    metric marked where its new level starts ('TTFT +12% since commit abc1234')."""
    if len(history) < 2:
        return None
    charts_ = []
    for m in compared():
        label = metric_heading(m, "p50", parens=True)
        pts = [(v.tick, plotted(m.id, "p50", v.stats_by_model[key])) for v in history]
        marks = [(s.run_id, step_text(s)) for s in steps or [] if s.metric == m.id]
        charts_.append(charts.lines([(label, pts)], title=f"{m.label} p50 across runs and commits", y_label=label,
                                    marks=marks, caption=_marks_caption(marks)))
    return Markup("\n\n".join(charts_))


def step_text(s: Step) -> str:
    """'TTFT +12% since commit abc1234': a change point in words."""
    return f"{metric_label(s.metric)} {s.change * 100:+.0f}% since {s.since}"


def _marks_caption(marks: list[tuple[str, str]]) -> str | None:
    return "Dashed line: a change point (a new level starts there): " + "; ".join(t for _, t in marks) + "." if marks else None


def selection_data(rankings: list[scoring.Ranking]) -> dict[str, Any]:
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


def figure_sources(info: ModelInfo) -> dict[str, Markup]:
    """The selection framework's memory, footprint and license figures of one model, each with
    where it came from: measured by bench, reported by the runtime, its catalog, or bench.yaml."""
    extra = info.extra
    sources = extra.get("sources") if isinstance(extra.get("sources"), dict) else {}
    unknown = extra.get("unknown") if isinstance(extra.get("unknown"), dict) else {}

    def cell(value: Markup | None, source: Any, missing: str) -> Markup:
        if value is None:
            return Markup("– ({})").format(md_text(str(unknown.get(missing) or "not reported")[:160]))
        return Markup("{} ({})").format(value, md_text(str(source)[:160]))

    out = {}
    if isinstance(extra.get("peak_rss_bytes"), (int, float)) and extra["peak_rss_bytes"]:
        out["memory"] = cell(fmt_bytes(extra["peak_rss_bytes"]), "measured by bench: resident memory of the server", "")
    elif isinstance(extra.get("runtime_memory_bytes"), (int, float)) and extra["runtime_memory_bytes"]:
        out["memory"] = cell(fmt_bytes(extra["runtime_memory_bytes"]),
                             sources.get("runtime_memory_bytes") or "reported by the runtime", "")
    else:
        out["memory"] = cell(None, None, "peak_rss_bytes")
    disk = extra.get("disk_bytes")
    out["footprint"] = (cell(fmt_bytes(disk), sources.get("disk_bytes") or "the model's files", "")
                        if isinstance(disk, (int, float)) and disk else cell(None, None, "disk_bytes"))
    out["license"] = (cell(md_text(info.license), sources.get("license") or "bench.yaml or bench's built-in models", "")
                      if info.license else cell(None, None, "license"))
    return out

