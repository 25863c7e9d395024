"""The metric registry: one entry is enough for a metric to appear everywhere metrics are shown."""

from __future__ import annotations

import csv
import io
from dataclasses import fields

import pytest

from bench.analysis import compare, scoring
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
    model_page = (tmp_path / "docs" / "report" / "models" / "m.md").read_text()
    assert "| characters per token p50 |" in model_page and "| 4 / 4 | " in model_page
    assert model_page.split("| 4 / 4 |")[1].split("\n")[0].count("| 5.0 |") == 1

    # ... and it is compared between runs like the built-in ones (higher is better)
    assert "chars_per_token" in compare.METRICS
    d = compare.diff(compare.Side("a", {"m": run}), compare.Side("b", {"m": run}))
    assert any(r.metric == "chars_per_token" and r.status == "same" for r in d.rows)


def test_every_metric_is_complete_and_formattable():
    assert set(metrics.KINDS) == {"ms", "s", "rate", "count", "bytes"}
    for m in METRICS.values():
        assert m.id.isidentifier() and m.label and m.unit and m.kind in metrics.KINDS
        assert m.better in ("lower", "higher", None)
        stats_of_level = metrics.STATS if m.level == "request" else (metrics.VALUE,)
        assert set(m.table) <= set(stats_of_level) and set(m.export) <= set(stats_of_level)
        assert (m.value is None) != (m.of_model is None)
        assert m.dimension is None or m.dimension in scoring.DIMENSIONS
        assert textfmt.metric_number(m, None) == "–" and textfmt.metric_number(m, 0.5) != "–"
        assert textfmt.metric_number(m, 3 * 2**20) != "–"  # sizes show from a byte up
        assert str(textfmt.fmt_any(0.5, m.kind)) != "–"
        assert textfmt.metric_heading(m, "p50") and textfmt.metric_row_label(m)
    assert {"ttft", "itl", "e2e", "decode_tps"} <= {m.id for m in metrics.compared()}
    assert {m.id for m in metrics.model_metrics()} >= {"peak_rss_bytes", "disk_bytes", "load_s"}
    assert set(metrics.RESERVED) - {"figure", "as_dict"} == {f.name for f in fields(stats.ModelStats)}


def test_a_metric_the_report_cannot_format_is_refused_at_registration():
    with pytest.raises(ValueError, match="kind one of"):
        metrics.register(Metric("odd", "odd", "x", lambda s: 1.0, "lower", "furlongs"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one of value"):
        metrics.register(Metric("odd", "odd", "x", lambda s: 1.0, "lower", of_model=lambda i: 1.0))
    with pytest.raises(ValueError, match="identifier"):
        metrics.register(Metric("ok", "ok", "x", lambda s: 1.0, "lower"))  # would hide ModelStats.ok
    with pytest.raises(ValueError, match="statistics among value"):
        metrics.register(Metric("odd", "odd", "x", None, "lower", table=("p50",), of_model=lambda i: 1.0))
    assert "odd" not in METRICS and "ok" not in METRICS


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


def test_a_diff_reports_the_same_itl_as_the_tables(server):
    run = collect(server, "m", rounds=1, warmup=0).run
    run = run.model_copy(update={"samples": [_sample("m", [0.1]), _sample("m", [0.01] * 9)]})
    d = compare.diff(compare.Side("a", {"m": run}), compare.Side("b", {"m": run}))
    [row] = [r for r in d.rows if r.metric == "itl"]
    assert row.a == row.b == pytest.approx(0.055) == stats.run_stats(run)[0].itl.p50
    assert row.n_a == 2  # two requests, not ten gaps


@pytest.fixture
def name_length():
    """A toy model-level metric, registered through the registry alone: the length of the model id sent."""
    m = metrics.register(Metric("name_chars", "model id length", "chars", None, None, "count",
                                table=(metrics.VALUE,), export=(metrics.VALUE,),
                                of_model=lambda info: float(len(info.name))))
    yield m
    metrics.unregister(m.id)


def test_a_model_level_metric_added_through_the_registry_alone_shows_in_exports_and_pages(server, name_length,
                                                                                          tmp_path):
    server.set_model("abcdefg", Script())
    out = collect(server, "abcdefg", rounds=1, warmup=0)
    run = store.load_run(out.path)

    [row] = csv.DictReader(io.StringIO(export_csv(run)))
    assert row["name_chars"] == "7.0"
    md = export_markdown(run, {})
    header = next(line for line in md.splitlines() if line.startswith("| model |"))
    assert header.endswith("| peak memory | disk | model id length | license |")
    assert "| 7.0 | unknown |" in md
    as_json = cli("show", run.run_id, "--results-dir", str(out.path.parent), "--json")
    assert '"name_chars": 7.0' in as_json.output

    render(out.path.parent, tmp_path / "docs")
    page = (tmp_path / "docs" / "report" / "runs" / f"{run.run_id}.md").read_text()
    assert "| model id length | 7.0 |" in page  # with the runtime facts
    model_page = (tmp_path / "docs" / "report" / "models" / "abcdefg.md").read_text()
    assert "| peak memory | disk | model id length |" in model_page and "| 7.0 |" in model_page


def test_the_selection_framework_reads_memory_and_disk_through_the_registry(server, monkeypatch):
    server.set_model("m", Script())
    run = collect(server, "m", rounds=1, warmup=0).run
    run.models["m"].extra.update(disk_bytes=4096, other_disk=1234)
    assert scoring.candidates(run)[0].disk_bytes == 4096
    monkeypatch.setitem(METRICS, "disk_bytes", Metric(
        "disk_bytes", "disk footprint", "bytes", None, "lower", "bytes", (), (), of_model=metrics.fact("other_disk")))
    assert scoring.candidates(run)[0].disk_bytes == 1234


def test_percentiles_are_numpys_linear_interpolation_bit_for_bit():
    """bench computes percentiles with one sort instead of np.percentile (whose per-call overhead
    dominated site renders); the figures must not move by a single bit."""
    import numpy as np

    rng = np.random.default_rng(7)
    ps = [0, 1, 25, 50, 95, 99, 99.9, 100]
    for n in (1, 2, 3, 5, 10, 60, 61, 997):
        for _ in range(50):
            a = rng.lognormal(size=n) * 10.0 ** rng.integers(-3, 3)
            assert stats.percentiles(list(a), ps) == [float(x) for x in np.percentile(a, ps)]
    d = stats.Dist.of([3.0, None, 1.0, 2.0])
    assert (d.n, d.min, d.p50, d.max, d.mean) == (3, 1.0, 2.0, 3.0, 2.0)
    assert stats.Dist.of([None]).p50 is None


def test_dist_mean_and_std_are_numpys_bit_for_bit():
    """Dist.of sums with np.add.reduce instead of calling ndarray.mean/std (their overhead, again)."""
    import numpy as np

    rng = np.random.default_rng(11)
    for n in (1, 2, 3, 8, 9, 16, 17, 60, 127, 128, 129, 1000):
        for _ in range(40):
            values = list(rng.lognormal(size=n) * 10.0 ** rng.integers(-3, 3))
            d, a = stats.Dist.of(values), np.sort(np.asarray(values))
            assert d.mean == float(a.mean()) and d.std == (float(a.std(ddof=1)) if n > 1 else None)
