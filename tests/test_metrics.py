"""The metric registry: one entry is enough for a metric to appear everywhere metrics are shown."""

from __future__ import annotations

import csv
import io

import pytest

from bench.analysis import compare
from bench.report import format as textfmt
from bench.report.export import export_csv, export_markdown
from bench.report.render import render
from bench.results import metrics, stats, store
from bench.results.metrics import METRICS, Metric
from bench.results.schema import Sample
from tests.conftest import Script, cli, collect


@pytest.fixture
def chars_per_token():
    """A toy metric, registered through the registry alone: output characters per completion token."""
    m = metrics.register(Metric(
        "chars_per_token", "characters per token", "chars",
        lambda s: len(s.output) / s.completion_tokens if s.completion_tokens else None,
        "higher", "count", table=("p50",), export=("p50", "mean")))
    yield m
    metrics.unregister(m.id)


def test_a_metric_added_through_the_registry_alone_shows_in_show_export_and_the_run_page(server, chars_per_token,
                                                                                          tmp_path):
    server.set_model("m", Script(tokens=["abcd ", "efgh ", "ijkl "]))  # 5 characters per token
    out = collect(server, "m", rounds=1, warmup=0)
    run = store.load_run(out.path)

    shown = cli("show", run.run_id, "--results-dir", str(out.path.parent), env={"COLUMNS": "400"})
    assert shown.exit_code == 0, shown.output
    header, row = [line for line in shown.output.splitlines() if "│" in line or "┃" in line][:2]
    cells = dict(zip([c.strip() for c in header.split("┃")], [c.strip() for c in row.split("│")]))
    assert cells["characters per token p50"] == "5.0"
    as_json = cli("show", run.run_id, "--results-dir", str(out.path.parent), "--json")
    assert '"chars_per_token"' in as_json.output and '"p50": 5.0' in as_json.output

    rows = list(csv.DictReader(io.StringIO(export_csv(run))))
    assert rows[0]["chars_per_token_p50"] == "5.0" and rows[0]["chars_per_token_mean"] == "5.0"
    md = export_markdown(run, {})
    assert "characters per token p50" in md and "| 5.0 |" in md

    render(out.path.parent, tmp_path / "docs")
    page = (tmp_path / "docs" / "report" / "runs" / f"{run.run_id}.md").read_text()
    assert "| characters per token | 4 | 5.0 | 5.0 |" in page

    # ... and it is compared between runs like the built-in ones (higher is better)
    assert "chars_per_token" in compare.METRICS
    d = compare.diff(compare.Side("a", {"m": run}), compare.Side("b", {"m": run}))
    assert any(r.metric == "chars_per_token" and r.status == "same" for r in d.rows)


def test_every_metric_is_complete_and_formattable():
    for m in METRICS.values():
        assert m.id.isidentifier() and m.label and m.unit and m.kind in ("ms", "s", "rate", "count")
        assert m.better in ("lower", "higher", None)
        assert set(m.table) <= set(metrics.STATS) and set(m.export) <= set(metrics.STATS)
        assert textfmt.metric_number(m, None) == "–" and textfmt.metric_number(m, 0.5) != "–"
        assert str(textfmt.fmt_any(0.5, m.kind)) != "–"
    assert {"ttft", "itl", "e2e", "decode_tps"} <= {m.id for m in metrics.compared()}


def _sample(model: str, gaps: list[float]) -> Sample:
    return Sample(model=model, prompt_id="p", round=0, warmup=False, ok=True, started_at="2026-01-01T00:00:00Z",
                  stream=True, ttft_s=0.1, e2e_s=0.1 + sum(gaps), itl_s=gaps, completion_tokens=len(gaps) + 1)


def test_itl_is_a_requests_mean_gap_in_stats_and_in_compare_alike():
    # One request with 1 gap of 100 ms, one with 9 gaps of 10 ms: pooled gaps would give a median of
    # 10 ms; per request the mean gaps are 100 ms and 10 ms, median 55 ms.
    samples = [_sample("m", [0.1]), _sample("m", [0.01] * 9)]
    st = stats.model_stats("m", samples)
    assert st.itl.n == 2 and st.itl.p50 == pytest.approx(0.055)
    assert [METRICS["itl"].value(s) for s in samples] == pytest.approx([0.1, 0.01])
    assert compare.METRICS["itl"] is METRICS["itl"]
