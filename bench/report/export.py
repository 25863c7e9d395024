"""Standalone exports of one run: a Markdown report (benchmark_report.md) or CSV."""

from __future__ import annotations

import csv
import io
from typing import Mapping

from bench.analysis import scoring
from bench.analysis.load import levels
from bench.report.format import md_text, metric_heading, metric_number
from bench.report.render import reason
from bench.results.metrics import columns
from bench.results.schema import Run
from bench.results.stats import run_stats


def csv_columns() -> list[str]:
    """Counts, each request-level metric's export statistics, then each model-level metric."""
    return ["model", "status", "license", "requests", "ok", "failed",
            *(m.column(stat) for m, stat in columns("export", "request")), "tokens_sources",
            *(m.column(stat) for m, stat in columns("export", "model"))]


def _rows(run: Run) -> list[dict]:
    rows = []
    for ms in run_stats(run):
        info = run.models[ms.model]
        rows.append({
            "model": ms.model, "status": info.status, "license": info.license or "",
            "requests": ms.requests, "ok": ms.ok, "failed": ms.failed, "tokens_sources": ";".join(ms.tokens_sources),
            **{m.column(stat): ms.figure(m, stat) for m, stat in columns("export")},
        })
    return rows


def _csv_safe(value: object) -> object:
    """Cells starting with = + - @ are formulas in spreadsheets: neutralize untrusted ones."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def export_csv(run: Run) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["run_id", "workload_hash", *csv_columns()], lineterminator="\n")
    w.writeheader()
    for row in _rows(run):
        w.writerow({k: _csv_safe(v) for k, v in {"run_id": run.run_id, "workload_hash": run.workload.hash, **row}.items()})
    return buf.getvalue()


SWEEP_COLUMNS = ["run_id", "workload_hash", "model", "concurrency", "rate", "requests", "errors", "dropped",
                 "achieved_concurrency", "requests_per_s", "output_tokens_per_s", "ttft_p50_s", "ttft_p95_s",
                 "itl_p50_s", "itl_p95_s", "e2e_p50_s", "e2e_p95_s", "decode_tps_p50", "lag_p95_s", "wall_s"]


def export_sweep_csv(run: Run) -> str:
    """One row per model and load level of a --concurrency or --rate run (seconds, tokens/s)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SWEEP_COLUMNS, lineterminator="\n")
    w.writeheader()
    for model in run.models:
        for lv in levels(run, model):
            row = {"run_id": run.run_id, "workload_hash": run.workload.hash, "model": model,
                   "concurrency": lv.concurrency, "rate": lv.rate, "requests": lv.n, "errors": lv.errors,
                   "dropped": lv.dropped, "achieved_concurrency": lv.achieved_concurrency,
                   "requests_per_s": lv.requests_per_s, "output_tokens_per_s": lv.output_tokens_per_s,
                   "ttft_p50_s": lv.ttft_p50, "ttft_p95_s": lv.ttft_p95, "itl_p50_s": lv.itl_p50,
                   "itl_p95_s": lv.itl_p95, "e2e_p50_s": lv.e2e_p50, "e2e_p95_s": lv.e2e_p95,
                   "decode_tps_p50": lv.tps_p50, "lag_p95_s": lv.lag_p95, "wall_s": lv.wall_s}
            w.writerow({k: _csv_safe(v) for k, v in row.items()})
    return buf.getvalue()


def export_markdown(run: Run, profiles: Mapping[str, scoring.Profile]) -> str:
    stats = run_stats(run)
    cands = scoring.candidates(run, None, stats)
    cols = columns("table")
    out = [
        f"# Benchmark report: run {md_text(run.run_id)}",
        "",
        f"{md_text(run.started_at)} · status {md_text(run.status)} · workload `{run.workload.hash}` · "
        f"{md_text(run.machine.cpu or 'unknown CPU')}, {run.machine.cores_logical or '?'} cores · bench {md_text(run.bench_version)}",
        "",
        "| model | ok/measured | " + " | ".join(metric_heading(m, s, parens=True) for m, s in cols) + " | license |",
        "|---|--:|" + "--:|" * len(cols) + "---|",
    ]
    for ms in stats:
        info = run.models[ms.model]
        out.append(
            f"| {md_text(ms.model)} | {ms.ok}/{ms.requests} | "
            + "".join(f"{metric_number(m, ms.figure(m, s))} | " for m, s in cols)
            + f"{md_text(info.license or 'unknown')} |"
        )
    out += ["", "## Highlights", ""]
    for name, profile in profiles.items():
        r = scoring.rank(cands, name, profile)
        pick = md_text(r.top.model) if r.top else "none eligible"
        out.append(f"- **{md_text(name)}**: {pick} ({md_text(reason(r))})")
    out += _sweep_markdown(run)
    failed = [(k, i) for k, i in run.models.items() if i.status in ("skipped", "failed")]
    if failed:
        out += ["", "## Skipped or failed models", ""]
        out += [f"- {md_text(k)}: {md_text(i.status)}: {md_text(i.reason or '')}" for k, i in failed]
    out += ["", "Decode tokens/s = (completion tokens − 1) / (e2e − TTFT); failed requests are excluded from "
            "every latency figure. Generated by bench.", ""]
    return "\n".join(out)


def _sweep_markdown(run: Run) -> list[str]:
    """A load run's levels per model (the table above pools them)."""
    rows = [(m, lv) for m in run.models for lv in levels(run, m)]
    if not rows:
        return []
    out = ["", "## Load levels", "", "The table above pools every level; per level:", "",
           "| model | level | achieved | req/s | output tok/s | TTFT p95 (ms) | ITL p95 (ms) | errors | dropped |",
           "|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for m, lv in rows:
        out.append(f"| {md_text(m)} | {lv.key} | {_f(lv.achieved_concurrency, 1)} | {_f(lv.requests_per_s, 2)} | "
                   f"{_f(lv.output_tokens_per_s, 0)} | {_f(lv.ttft_p95, 0, 1000)} | {_f(lv.itl_p95, 1, 1000)} | "
                   f"{lv.errors} | {lv.dropped} |")
    return out


def _f(x: float | None, digits: int, scale: float = 1.0) -> str:
    return "–" if x is None else f"{x * scale:.{digits}f}"

