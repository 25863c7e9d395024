"""A diff as text: the Markdown table for pull-request comments, and the figures the diff page
and ``bench diff`` show (values with units from the metric registry, changes with intervals)."""

from __future__ import annotations

import math

from bench.analysis import quality_diff
from bench.analysis.compare import METHOD, Diff, Row
from bench.report.format import md_text, metric_text
from bench.results.metrics import METRICS

ARROWS = {"improved": "✅ improved", "worsened": "❌ worsened", "same": "same", "not significant": "not significant",
          "too few runs": "too few runs to judge", "not comparable": "⚠️ not comparable", "failed": "❌ failed",
          "fixed": "✅ fixed", "missing": "⚠️ missing", "new": "new"}
__all__ = ["ARROWS", "METHOD", "diff_markdown", "fmt_change", "fmt_value", "metric_label"]


def fmt_value(metric: str, v: float | None) -> str:
    """A diffed value with its unit ('–' for none, and for a row that is not about one metric)."""
    if v is not None and metric == quality_diff.METRIC:
        return f"{v * 100:.0f}%"
    if v is None or metric not in METRICS:
        return "–"
    return metric_text(METRICS[metric], v)


def metric_label(metric: str) -> str:
    if metric == quality_diff.METRIC:
        return quality_diff.LABEL
    return METRICS[metric].label if metric in METRICS else "all"


def fmt_change(r: Row) -> str:
    if r.change is None:
        return "–"
    if r.metric == quality_diff.METRIC:
        return f"{r.change * 100:+.0f} points (p {r.p:.2g})"
    if r.ci and math.isinf(r.ci[0]):
        return f"{r.change * 100:+.1f}% (too few requests for an interval)"
    ci = f" [{r.ci[0] * 100:+.1f}%, {r.ci[1] * 100:+.1f}%]" if r.ci else ""
    return f"{r.change * 100:+.1f}%{ci}"


def diff_markdown(d: Diff) -> str:
    """For pull-request comments: untrusted names escaped, one table."""
    lines = [
        f"### bench diff: {md_text(d.a)} → {md_text(d.b)}",
        "",
        f"Runs {', '.join(md_text(x) for x in d.a_runs)} → {', '.join(md_text(x) for x in d.b_runs)}.",
        "",
        "| model | metric | A | B | change [95% CI] | status | noise from |",
        "|---|---|--:|--:|--:|---|---|",
    ]
    for r in d.rows:
        label = metric_label(r.metric)
        if r.prompt:
            label += f" · {md_text(r.prompt)}"
        status = ARROWS.get(r.status, r.status) + (f": {md_text(r.reason)}" if r.reason else "")
        lines.append(f"| {md_text(r.model)} | {label} | {fmt_value(r.metric, r.a)} | {fmt_value(r.metric, r.b)} | "
                     f"{fmt_change(r)} | {status} | {md_text(r.basis or '')} |")
    changed = {k: v for k, v in d.ranking.items() if v["a"] != v["b"]}
    lines += ["", METHOD, ""] + [f"- {md_text(h)}" for h in d.hints] + [""]
    if changed:
        lines += [f"- Top pick for **{md_text(k)}** changed: {md_text(v['a'] or 'none')} → {md_text(v['b'] or 'none')}"
                  for k, v in changed.items()]
    else:
        lines.append("Selection: the top pick of every shipped profile is unchanged.")
    worse = len(d.regressions)
    lines += ["", f"**{worse} significant regression{'s' if worse != 1 else ''}.**" if worse else "No significant regression."]
    return "\n".join(lines) + "\n"
