"""Tests for the offline SVG charts: well-formed, single raw HTML block, escaped, deterministic."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import markdown
import pytest

from bench.report import charts
from bench.report.format import fmt_tick

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>']
KEYS = ["latency", "throughput", "memory", "quality"]


def make(kind: str, labels: list[str], values: list[float | None]) -> str:
    """Build one chart of `kind` with one series/point/row per label, all using `values`."""
    if kind == "distribution":
        return charts.distribution([(lb, list(values)) for lb in labels], title="Latency", unit="s", caption="cap")
    if kind == "scatter":
        v = values + [None] * len(labels)
        return charts.scatter([{"label": lb, "x": v[i], "y": v[i]} for i, lb in enumerate(labels)],
                              title="TTFT vs tps", x_label="TTFT (ms)", y_label="tokens/s")
    if kind == "stacked_bars":
        return charts.stacked_bars([(lb, dict(zip(KEYS, values))) for lb in labels], keys=KEYS, title="Score")
    return charts.lines([(lb, [(f"run-{i}", v) for i, v in enumerate(values)]) for lb in labels],
                        title="Trend", y_label="tokens/s")


KINDS = ["distribution", "scatter", "stacked_bars", "lines"]


def parse(out: str) -> ET.Element:
    root = ET.fromstring(out)
    assert root.tag == "figure" and root.get("class") == "bench-chart"
    return root


def check_block(out: str) -> ET.Element:
    assert isinstance(out, str) and out == out.lstrip() and out.startswith('<figure class="bench-chart">')
    assert all(line.strip() for line in out.splitlines()), "a blank line would end the raw HTML block"
    root = parse(out)
    svg = root.find(f"{SVG}svg")
    assert svg is not None and svg.get("width") == "100%" and svg.get("role") == "img"
    assert len(svg.get("viewBox").split()) == 4 and svg.find(f"{SVG}title") is not None
    assert 'width="100%"' in out and "currentColor" in out
    return root


def all_text(root: ET.Element) -> str:
    return " ".join(root.itertext()) + " ".join(v for el in root.iter() for v in el.attrib.values())


@pytest.mark.parametrize("kind", KINDS)
def test_well_formed_single_block(kind):
    root = check_block(make(kind, ["model-a", "model-b"], [0.1234, 0.5, 0.75, 1.0]))
    marks = [el for el in root.iter() if el.tag in (f"{SVG}circle", f"{SVG}rect", f"{SVG}polygon", f"{SVG}path")]
    assert marks, "expected marks"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("label", HOSTILE)
def test_hostile_labels_escaped(kind, label):
    out = make(kind, [label, "ok"], [0.2, 0.4, 0.6])
    root = check_block(out)
    assert label not in out and "<script" not in out and "<img" not in out
    assert label.replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;") in out
    assert not [el for el in root.iter() if el.tag.split("}")[-1] in ("script", "img")]
    assert label in all_text(root)  # the parsed text round-trips to the original label


def test_hostile_title_caption_axis_labels():
    evil = HOSTILE[1]
    outs = [
        charts.distribution([("m", [1.0])], title=evil, unit=evil, caption=evil),
        charts.scatter([{"label": "m", "x": 1, "y": 2}], title=evil, x_label=evil, y_label=evil, caption=evil),
        charts.stacked_bars([("m", {evil: 0.5})], keys=[evil], title=evil, caption=evil),
        charts.lines([("m", [(evil, 1.0), ("b", 2.0)])], title=evil, y_label=evil, caption=evil),
        charts.distribution([], title=evil, caption=evil),
    ]
    for out in outs:
        root = check_block(out)
        assert "<img" not in out and evil not in out and "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in out
        assert root.find(f"{SVG}svg").get("aria-label") == evil
        assert root.find("figcaption").text == evil


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("values", [[], [None, None], [float("nan"), None]])
def test_no_data(kind, values):
    out = make(kind, ["a", "b"], values)
    root = check_block(out)
    assert "no data" in out
    assert not [el for el in root.iter() if el.tag in (f"{SVG}circle", f"{SVG}polyline")]


def test_no_series_at_all():
    for out in (charts.distribution([], title="t"), charts.scatter([], title="t", x_label="x", y_label="y"),
                charts.stacked_bars([], keys=KEYS, title="t"), charts.lines([], title="t", y_label="y")):
        assert "no data" in check_block(out).find(f"{SVG}svg").findall(f"{SVG}text")[-1].text


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("value", [0.0, 3.0, -2.0])
def test_identical_values(kind, value):
    out = make(kind, ["a", "b"], [value] * 4)
    check_block(out)
    assert "no data" not in out and "nan" not in out.lower()


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic(kind):
    values = [0.31, None, 0.12, float("nan"), 0.5, 0.27]
    assert make(kind, ["x", "y", "z"], values) == make(kind, ["x", "y", "z"], values)


def test_distribution_tooltips_and_stats():
    out = charts.distribution([("m", [0.1234, 0.2, 0.3, 0.4, None, float("nan"), 1.0])], title="t", unit="s")
    titles = [el.text for el in parse(out).iter(f"{SVG}title")]
    assert any(t.startswith("m: 0.123") and t.endswith(" s") for t in titles)
    box = next(t for t in titles if "p25" in t)
    assert "n=5" in box and "min 0.1234" in box and "p50 0.3" in box and "max 1 s" in box
    assert len(list(parse(out).iter(f"{SVG}circle"))) == 5  # None and NaN skipped


def test_distribution_row_without_values_says_no_data():
    out = charts.distribution([("empty", []), ("full", [1.0, 2.0])], title="t")
    assert "no data" in out and "full: 1 s" in out


def test_scatter_tooltips_and_legend():
    out = charts.scatter([{"label": "llama", "x": 120.5, "y": 33.25}, {"label": "skip", "x": None, "y": 1.0}],
                         title="t", x_label="TTFT (ms)", y_label="tokens/s")
    assert "llama: TTFT (ms) = 120.5, tokens/s = 33.25" in out
    assert "skip" not in out


def test_stacked_bars_missing_and_tooltips():
    rows = [("m1", {"latency": 0.25, "throughput": 0.2, "memory": None, "quality": None}),
            ("m2", {"latency": 0.1, "throughput": 0.3, "memory": 0.15, "quality": 0.2})]
    out = charts.stacked_bars(rows, keys=KEYS, title="t", max_value=1.0)
    root = check_block(out)
    texts = [el.text for el in root.iter(f"{SVG}text")]
    assert texts.count("missing: memory, quality") == 1 and not [t for t in texts if t.startswith("missing: l")]
    assert "m1 · latency: 0.25" in out and "m2: total 0.75" in out
    assert "1" in texts and "0.2" in texts  # axis goes to max_value=1.0
    assert "#0072B2" in out and "#000000" not in out


def test_lines_breaks_and_thinning():
    cats = [f"2024-01-{d:02d}" for d in range(1, 21)]
    out = charts.lines([("a", [(c, float(i) if i != 10 else None) for i, c in enumerate(cats)]),
                        ("b", [(c, 5.0) for c in cats[:3]])], title="t", y_label="tok/s")
    root = check_block(out)
    polylines = list(root.iter(f"{SVG}polyline"))
    assert len(polylines) == 3  # a is broken in two by the None, b is one line
    shown = [t for t in (el.text for el in root.iter(f"{SVG}text")) if t and t.startswith("2024-")]
    assert 2 <= len(shown) <= 8
    assert "a @ 2024-01-06: 5" in out


@pytest.mark.parametrize("lo,hi", [(0, 1), (0, 0.1234), (0, 7), (3, 97), (0, 1234), (-5, 17), (0.001, 0.0013),
                                   (100000, 100001), (0, 2.5e6)])
def test_nice_axis(lo, hi):
    a, b, ticks, step = charts._axis(lo, hi)
    assert 4 <= len(ticks) <= 6 and a <= lo and b >= hi
    mantissa = step / 10 ** math.floor(math.log10(step) + 1e-9)
    assert any(math.isclose(mantissa, m) for m in (1, 2, 5))
    labels = [fmt_tick(t, step) for t in ticks]
    assert len(set(labels)) == len(labels) and all(len(s) <= 9 for s in labels)


def test_tick_labels_compact():
    assert [fmt_tick(v, 0.05) for v in (0, 0.25, 1.5)] == ["0", "0.25", "1.5"]
    assert fmt_tick(120, 20) == "120" and fmt_tick(1200, 200) == "1.2k" and fmt_tick(2e6, 5e5) == "2M"


def test_long_label_truncated_with_full_tooltip():
    label = "x" * 100
    out = charts.distribution([(label, [1.0])], title="t")
    assert "x" * 40 + "…" in out and f"<title>{label}</title>" in out


def test_multiline_label_stays_one_block():
    out = charts.lines([("a\n\nb", [("r1\n\n", 1.0), ("r2", 2.0)])], title="t\n\nu", y_label="y", caption="c\n\nd")
    check_block(out)
    html = markdown.markdown(f"# Page\n\n{out}\n\nafter", extensions=["md_in_html"])
    assert out in html and "<p>after</p>" in html


def test_colors_cycle_with_shapes():
    pts = [{"label": f"m{i}", "x": i, "y": i} for i in range(10)]
    root = parse(charts.scatter(pts, title="t", x_label="x", y_label="y"))
    fills = [el.get("fill") for el in root.iter() if el.tag in (f"{SVG}circle", f"{SVG}rect")]
    assert set(charts.PALETTE) <= set(fills)
    assert any(el.get("fill") == charts.PALETTE[0] for el in root.iter(f"{SVG}rect"))  # 9th point: a square


def test_lines_keys_keep_runs_apart_and_marks_are_escaped():
    evil = '<script>x</script> & "q"'
    pts = [(("run-1", "11-22 12:50 · abc1234"), 1.0), (("run-2", "11-22 12:50 · abc1234"), 2.0), (("run-3", "later"), 3.0)]
    out = charts.lines([("m", pts)], title="t", y_label="y", marks=[("run-2", evil), ("run-9", "not on the chart")])
    root = check_block(out)
    assert len([el for el in root.iter(f"{SVG}circle")]) == 4  # three points (one label, two runs) + the legend's
    assert "11-22 12:50 · abc1234 · run-2" in out  # the tick's tooltip tells the runs apart
    marks = [g for g in root.iter(f"{SVG}g") if g.get("class") == "bench-mark"]
    assert len(marks) == 1 and marks[0].find(f"{SVG}title").text == evil and "<script>" not in out


def test_long_trend_marks_only_notable_points():
    n = charts.MARKER_LIMIT * 5
    ys = [float(i % 7) for i in range(n)]
    ys[99], ys[100], ys[101] = None, 42.0, None  # run-100 stands alone between two gaps: no line reaches it
    out = charts.lines([("m", [(f"run-{i}", y) for i, y in enumerate(ys)])], title="t", y_label="y",
                       marks=[("run-200", "TTFT +30%")])
    root = check_block(out)
    tips = [el.find(f"{SVG}title").text for el in root.iter(f"{SVG}circle")]
    assert sorted(tips) == sorted(["m", f"m @ run-{n - 1}: {ys[-1]:g}", "m @ run-200: 4", "m @ run-100: 42"])
    raw = [el for el in root.iter(f"{SVG}polyline") if el.get("stroke-opacity") == "0.35"]
    assert sum(len(el.get("points").split()) for el in raw) == n - 3  # every other point is on the thin line
    assert "running median of 7 runs" in out and "Thin line: every run" in out
    short = charts.lines([("m", [(f"run-{i}", 1.0) for i in range(charts.MARKER_LIMIT)])], title="t", y_label="y")
    assert short.count("<circle") == charts.MARKER_LIMIT + 1  # a short trend keeps a marker per point
    assert len(out) < 60 * n  # bytes per run stay small


def test_long_trend_running_median_keeps_a_step_and_ignores_one_slow_run():
    ys = [1.0] * 100 + [2.0] * 200
    ys[250] = 50.0  # one slow run
    assert charts._window(len(ys)) == 7
    smooth = dict(charts._running_median(list(enumerate(ys)), 7))
    assert smooth[96] == 1.0 and smooth[99] == 1.0 and smooth[100] == 2.0 and smooth[250] == 2.0
    assert charts._window(charts.MARKER_LIMIT) == 0 and charts._window(1000) == 25
