"""Offline SVG charts for the static report site (standard library only; no JavaScript, no CDN).

Every function returns one raw HTML block, ``<figure class="bench-chart"><svg …>…</svg>
<figcaption>…</figcaption></figure>``, on a single line, so Python-Markdown (with ``md_in_html``)
passes it through untouched. Axes and text use ``currentColor`` so the charts follow Material's
light and dark schemes; series use the Okabe-Ito palette (black replaced by grey), and the marker
shape changes each time the colors wrap around. Hovering a mark shows its ``<title>`` with the
exact values. All data-derived text is escaped; None/NaN values are skipped and a chart with
nothing left renders a small "no data" figure.
"""

from __future__ import annotations

import math
import statistics

from bench.report.format import fmt_sig, fmt_tick, svg_line, svg_text
from bench.results.stats import percentiles

PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#888888")
MAX_LABEL = 40  # display length of labels; the full label stays in a <title> tooltip
CHAR_W = 7.0  # rough width of one character at font-size 12, in viewBox units
WIDTH = 720
_GRID = 'stroke="currentColor" stroke-opacity="0.15"'


# ---------------------------------------------------------------------------------------- text
def _esc(s: object) -> str:
    return svg_text(s)


def _short(s: object, n: int = MAX_LABEL) -> str:
    return svg_text(s, n)


def _width(labels, n: int = MAX_LABEL) -> float:
    return max([min(len(svg_line(label)), n + 1) for label in labels] + [4]) * CHAR_W


def _label(label: object, x: float, y: float, n: int = MAX_LABEL, anchor: str = "end", extra: str = "") -> str:
    """A (possibly truncated) label whose full text shows on hover."""
    return (f'<g><title>{_esc(label)}</title><text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{extra}>'
            f"{_short(label, n)}</text></g>")


# ------------------------------------------------------------------------------------- numbers
def _num(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _axis(lo: float, hi: float) -> tuple[float, float, list[float], float]:
    """Nice axis covering [lo, hi]: (lo, hi, ticks, step) with a 1/2/5×10^k step and 4–6 ticks."""
    if hi - lo <= 0:  # all values equal: pad so nothing divides by zero
        pad = abs(hi) * 0.1 or 1.0
        lo, hi = (lo if lo == 0 else lo - pad), hi + pad
    mag = 10 ** math.floor(math.log10((hi - lo) / 5))
    for m in (1, 2, 5, 10, 20):
        step = m * mag
        a, b = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
        if b - a <= 5:
            break
    ticks = [float(f"{k * step:.12g}") for k in range(a, b + 1)]
    return ticks[0], ticks[-1], ticks, step


def _padded(values: list[float]) -> tuple[float, float]:
    """Data range plus 5% each side (not below 0 for non-negative data)."""
    lo, hi = min(values), max(values)
    p = (hi - lo) * 0.05
    return (max(lo - p, 0.0) if lo >= 0 else lo - p), hi + p


def _scale(lo: float, hi: float, a: float, b: float):
    return lambda v: a + (v - lo) / (hi - lo) * (b - a)


# ------------------------------------------------------------------------------------ drawing
def _figure(w: float, h: float, title: str, body: list[str], caption: str | None) -> str:
    t = _esc(title)
    cap = f"<figcaption>{_esc(caption)}</figcaption>" if caption is not None and svg_line(caption) else ""
    return (f'<figure class="bench-chart"><svg xmlns="http://www.w3.org/2000/svg" width="100%" '
            f'viewBox="0 0 {w:.0f} {h:.0f}" role="img" aria-label="{t}" font-family="inherit" font-size="12" '
            f'fill="currentColor"><title>{t}</title>'
            f'<text x="{w / 2:.1f}" y="16" text-anchor="middle" font-weight="bold">{_short(title, 90)}</text>'
            + "".join(body) + f"</svg>{cap}</figure>")


def _no_data(title: str, caption: str | None) -> str:
    return _figure(WIDTH, 60, title, [f'<text x="{WIDTH / 2:.0f}" y="44" text-anchor="middle" '
                                      'opacity="0.7">no data</text>'], caption)


def _x_axis(sx, ticks, step, x0, x1, y0, y1, label: str | None) -> list[str]:
    out = [f'<line x1="{x0:.1f}" y1="{y1:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="currentColor"/>']
    for t in ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" y1="{y0:.1f}" x2="{x:.1f}" y2="{y1:.1f}" {_GRID}/>'
                   f'<text x="{x:.1f}" y="{y1 + 16:.1f}" text-anchor="middle">{fmt_tick(t, step)}</text>')
    if label:
        out.append(_label(label, (x0 + x1) / 2, y1 + 34, 80, "middle"))
    return out


def _y_axis(sy, ticks, step, x0, x1, y1, label: str) -> list[str]:
    out = [f'<line x1="{x0:.1f}" y1="{y1:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="currentColor"/>']
    for t in ticks:
        y = sy(t)
        out.append(f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}" {_GRID}/>'
                   f'<text x="{x0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end">{fmt_tick(t, step)}</text>')
    mid = (sy(ticks[0]) + sy(ticks[-1])) / 2
    out.append(_label(label, 14, mid, 50, "middle", f' transform="rotate(-90 14 {mid:.1f})"'))
    return out


def _marker(i: int, x: float, y: float, tip: str, r: float = 4.5) -> str:
    """Series marker: color cycles through PALETTE, the shape changes when the colors wrap."""
    c, shape, t = PALETTE[i % len(PALETTE)], (i // len(PALETTE)) % 4, f"<title>{tip}</title>"
    attrs = f'fill="{c}" stroke="currentColor" stroke-opacity="0.4"'
    if shape == 0:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" {attrs}>{t}</circle>'
    if shape == 1:
        return f'<rect x="{x - r:.1f}" y="{y - r:.1f}" width="{2 * r}" height="{2 * r}" {attrs}>{t}</rect>'
    pts = ([(0, -r * 1.3), (r * 1.3, 0), (0, r * 1.3), (-r * 1.3, 0)] if shape == 2
           else [(0, -r * 1.2), (r * 1.1, r * 0.8), (-r * 1.1, r * 0.8)])
    return f'<polygon points="{" ".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in pts)}" {attrs}>{t}</polygon>'


def _legend(labels: list[object], x: float, y: float) -> list[str]:
    return [_marker(i, x + 5, y + 18 * i, _esc(label)) + _label(label, x + 16, y + 18 * i + 4, 28, "start")
            for i, label in enumerate(labels)]


# ------------------------------------------------------------------------------------- charts
def distribution(series: list[tuple[str, list[float]]], *, title: str, unit: str = "s",
                 caption: str | None = None) -> str:
    """Horizontal box plot per series (one row per model): whisker min..max, box p25..p75, a thick mark at
    p50, a marker at p95, plus the individual points drawn small and semi-transparent (deterministic
    vertical jitter). x axis = value in `unit`."""
    rows = [(label, sorted(v for v in map(_num, values or []) if v is not None)) for label, values in series or []]
    data = [v for _, vs in rows for v in vs]
    if not data:
        return _no_data(title, caption)
    lo, hi, ticks, step = _axis(min(0.0, min(data)), max(data))
    x0, x1, top, rh = _width(label for label, _ in rows) + 16, WIDTH - 20, 30, 30
    y1 = top + rh * len(rows)
    sx, u = _scale(lo, hi, x0, x1), _esc(unit)
    out = _x_axis(sx, ticks, step, x0, x1, top, y1, unit)
    for r, (label, vs) in enumerate(rows):
        cy, c, name = top + rh * r + rh / 2, PALETTE[r % len(PALETTE)], _esc(label)
        out.append(_label(label, x0 - 8, cy + 4))
        if not vs:
            out.append(f'<text x="{x0 + 6:.1f}" y="{cy + 4:.1f}" opacity="0.7">no data</text>')
            continue
        p25, p50, p75, p95 = percentiles(vs, (25, 50, 75, 95))
        a, b = sx(vs[0]), sx(vs[-1])
        tip = (f"{name}: n={len(vs)}, min {fmt_sig(vs[0])}, p25 {fmt_sig(p25)}, p50 {fmt_sig(p50)}, p75 {fmt_sig(p75)}, "
               f"p95 {fmt_sig(p95)}, max {fmt_sig(vs[-1])} {u}")
        out.append(f'<g stroke="{c}"><title>{tip}</title>'
                   f'<line x1="{a:.1f}" y1="{cy:.1f}" x2="{b:.1f}" y2="{cy:.1f}"/>'
                   f'<line x1="{a:.1f}" y1="{cy - 6:.1f}" x2="{a:.1f}" y2="{cy + 6:.1f}"/>'
                   f'<line x1="{b:.1f}" y1="{cy - 6:.1f}" x2="{b:.1f}" y2="{cy + 6:.1f}"/>'
                   f'<rect x="{sx(p25):.1f}" y="{cy - 8:.1f}" width="{max(sx(p75) - sx(p25), 1):.1f}" height="16" '
                   f'fill="{c}" fill-opacity="0.3"/>'
                   f'<line x1="{sx(p50):.1f}" y1="{cy - 10:.1f}" x2="{sx(p50):.1f}" y2="{cy + 10:.1f}" '
                   f'stroke-width="3"/></g>')
        x95 = sx(p95)
        out.append(f'<path d="M{x95:.1f},{cy - 9:.1f} l4,-6 h-8 z" fill="{c}"><title>{name}: p95 {fmt_sig(p95)} {u}'
                   f"</title></path>")
        for i, v in enumerate(vs):
            jitter = ((i * 0.6180339887) % 1 - 0.5) * 14  # golden-ratio sequence: spread out, deterministic
            out.append(f'<circle cx="{sx(v):.1f}" cy="{cy + jitter:.1f}" r="2" fill="{c}" fill-opacity="0.5">'
                       f"<title>{name}: {fmt_sig(v)} {u}</title></circle>")
    return _figure(WIDTH, y1 + 44, title, out, caption)


def scatter(points: list[dict], *, title: str, x_label: str, y_label: str, caption: str | None = None) -> str:
    """Each point dict: {"label": str, "x": float|None, "y": float|None}. One color per point with a legend
    (or a text label next to the point). Used for 'TTFT (ms) vs decode tokens/s'."""
    pts = [(p.get("label", ""), _num(p.get("x")), _num(p.get("y"))) for p in points or []]
    pts = [(label, x, y) for label, x, y in pts if x is not None and y is not None]
    if not pts:
        return _no_data(title, caption)
    xlo, xhi, xticks, xstep = _axis(*_padded([x for _, x, _ in pts]))
    ylo, yhi, yticks, ystep = _axis(*_padded([y for _, _, y in pts]))
    x0, x1, top, y1 = 72, 572, 30, 290
    sx, sy = _scale(xlo, xhi, x0, x1), _scale(ylo, yhi, y1, top)
    out = _y_axis(sy, yticks, ystep, x0, x1, y1, y_label) + _x_axis(sx, xticks, xstep, x0, x1, top, y1, x_label)
    xl, yl = _esc(x_label), _esc(y_label)
    for i, (label, x, y) in enumerate(pts):
        out.append(_marker(i, sx(x), sy(y), f"{_esc(label)}: {xl} = {fmt_sig(x)}, {yl} = {fmt_sig(y)}", 5))
    out += _legend([label for label, _, _ in pts], x1 + 20, top + 6)
    w = x1 + 40 + _width((label for label, _, _ in pts), 28)
    return _figure(w, max(y1 + 44, top + 18 * len(pts) + 10), title, out, caption)


def stacked_bars(rows: list[tuple[str, dict[str, float | None]]], *, keys: list[str], title: str,
                 caption: str | None = None, max_value: float | None = None) -> str:
    """Horizontal stacked bars, one per row (a model), segments in the order of `keys`, each segment's length =
    its value. None values are skipped and listed as 'missing: quality' text after the bar. Legend for keys.
    max_value: axis max (default: the max row total; extended if a row is longer)."""
    parsed = []
    for label, d in rows or []:
        vals = [(j, k, _num((d or {}).get(k))) for j, k in enumerate(keys)]
        parsed.append((label, [(j, k, v) for j, k, v in vals if v is not None], [k for _, k, v in vals if v is None]))
    if not any(segs for _, segs, _ in parsed):
        return _no_data(title, caption)
    totals = [sum(max(v, 0.0) for _, _, v in segs) for _, segs, _ in parsed]
    lo, hi, ticks, step = _axis(0.0, max(totals + [max(_num(max_value) or 0.0, 0.0)]))
    misses = [f"missing: {', '.join(svg_line(k) for k in miss)}" for _, _, miss in parsed]
    x0 = _width(label for label, _, _ in parsed) + 16
    x1 = WIDTH - 20.0
    for total, text, (_, _, miss) in zip(totals, misses, parsed):  # leave room for "missing: …" after a bar
        if miss:
            room = WIDTH - 16 - _width([text]) - x0
            x1 = min(x1, x0 + room * hi / total if total > 0 else x0 + room)
    x1 = max(x1, x0 + 200)
    legend, lx, ly = [], x0, 34.0
    for j, k in enumerate(keys):  # legend for keys, wrapping onto more lines when needed
        wk = min(len(svg_line(k)), 24) * CHAR_W + 28
        if lx + wk > WIDTH - 10 and lx > x0:
            lx, ly = x0, ly + 18
        legend.append(f'<rect x="{lx:.1f}" y="{ly - 9:.1f}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>'
                      + _label(k, lx + 14, ly, 24, "start"))
        lx += wk
    top, rh = ly + 14, 28
    y1 = top + rh * len(parsed)
    sx = _scale(lo, hi, x0, x1)
    out = legend + _x_axis(sx, ticks, step, x0, x1, top, y1, None)
    for r, ((label, segs, miss), total, text) in enumerate(zip(parsed, totals, misses)):
        cy, name, pos = top + rh * r + rh / 2, _esc(label), 0.0
        out.append(_label(label, x0 - 8, cy + 4) + f"<g><title>{name}: total {fmt_sig(total)}</title>")
        for j, k, v in segs:
            a, b = sx(pos), sx(pos + max(v, 0.0))
            pos += max(v, 0.0)
            out.append(f'<rect x="{a:.1f}" y="{cy - 9:.1f}" width="{b - a:.1f}" height="18" '
                       f'fill="{PALETTE[j % len(PALETTE)]}"><title>{name} · {_esc(k)}: {fmt_sig(v)}</title></rect>')
        out.append("</g>")
        if miss:
            out.append(_label(text, sx(pos) + 6, cy + 4, MAX_LABEL, "start", ' font-style="italic" opacity="0.75"'))
    return _figure(WIDTH, y1 + 28, title, out, caption)


def lines(series: list[tuple[str, list[tuple[object, float | None]]]], *, title: str, y_label: str,
          caption: str | None = None, marks: list[tuple[str, str]] | None = None) -> str:
    """Trend chart: x axis is categorical (shared across series in first-seen order), one polyline + point
    markers per series (only the notable points when there are more than MARKER_LIMIT x positions);
    None breaks the line. An x value is a label, or a (key, label) pair when two
    points may share a label (two runs of one commit in the same minute). Legend. At most ~8 x tick
    labels are shown (thinned out, rotated when they would overlap; the full label and key are the
    tick's tooltip). ``marks``: (x key, text) vertical markers, such as change points."""
    cats: dict[str, int] = {}
    names: list[str] = []
    parsed = []
    for label, pts in series or []:
        parsed.append((label, [(_category(x, cats, names), _num(y)) for x, y in pts or []]))
    ys = [y for _, pts in parsed for _, y in pts if y is not None]
    if not ys:
        return _no_data(title, caption)
    lo, hi, ticks, step = _axis(*_padded(ys))
    n, x1, top, y1 = len(names), 584, 30, 270
    shown = list(range(0, n, math.ceil(n / 8)))  # at most 8 x labels
    longest = max(min(len(svg_line(names[i])), TICK_LABEL + 1) for i in shown) * CHAR_W
    rotate = longest > (x1 - 72) / len(shown) - 6
    x0 = max(72.0, longest * 0.82 - 4) if rotate else 72.0  # room for the first rotated label
    sy = _scale(lo, hi, y1, top)
    sx = (lambda i: (x0 + x1) / 2) if n == 1 else (lambda i: x0 + 12 + i * (x1 - x0 - 24) / (n - 1))
    out = _y_axis(sy, ticks, step, x0, x1, y1, y_label)
    keys = list(cats)
    for i in shown:
        x, y = sx(i), y1 + 16
        extra = f' transform="rotate(-35 {x:.1f} {y:.1f})"' if rotate else ""
        tip = names[i] if keys[i] == names[i] else f"{names[i]} · {keys[i]}"
        out.append(f'<line x1="{x:.1f}" y1="{y1:.1f}" x2="{x:.1f}" y2="{y1 + 4:.1f}" stroke="currentColor"/>'
                   f'<g><title>{_esc(tip)}</title><text x="{x:.1f}" y="{y:.1f}" '
                   f'text-anchor="{"end" if rotate else "middle"}"{extra}>{_short(names[i], TICK_LABEL)}</text></g>')
    out += _marks(marks or [], cats, sx, x0, x1, top, y1)
    window, notable = _window(n), {cats[str(k)] for k, _ in marks or [] if str(k) in cats}
    for s, (label, pts) in enumerate(parsed):
        c, name = PALETTE[s % len(PALETTE)], _esc(label)
        for seg in _segments(pts):
            line = " ".join(f"{sx(i):.1f},{sy(y):.1f}" for i, y in seg)
            if not window:
                out.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="2"><title>{name}</title>'
                           "</polyline>")
                continue
            smooth = " ".join(f"{sx(i):.1f},{sy(y):.1f}" for i, y in _running_median(seg, window))
            out.append(f'<polyline points="{line}" fill="none" stroke="{c}" stroke-width="1" stroke-opacity="0.35">'
                       f'<title>{name}</title></polyline><polyline points="{smooth}" fill="none" stroke="{c}" '
                       f'stroke-width="2.5"><title>{name}: running median of {window} runs</title></polyline>')
        for i, y in _marked(pts, n, notable):
            out.append(_marker(s, sx(i), sy(y), f"{name} @ {_esc(names[i])}: {fmt_sig(y)}", 3.5))
    out += _legend([label for label, _ in parsed], x1 + 20, top + 6)
    bottom = y1 + (longest * 0.58 + 24 if rotate else 30)
    w = x1 + 40 + _width((label for label, _ in parsed), 28)
    if window:
        note = f"Thin line: every run; bold line: running median of {window} runs."
        caption = f"{caption} {note}" if caption else note
    return _figure(w, max(bottom, top + 18 * len(parsed) + 10), title, out, caption)


def _segments(pts: list[tuple[int, float | None]]) -> list[list[tuple[int, float]]]:
    """The runs of consecutive known values (None breaks the line) that have two points or more."""
    out: list[list[tuple[int, float]]] = [[]]
    for i, y in pts:
        if y is None:
            out.append([])
        else:
            out[-1].append((i, y))
    return [seg for seg in out if len(seg) > 1]


def _window(n: int) -> int:
    """The running median's width for a trend of n x positions: none up to MARKER_LIMIT (every point
    is marked and readable), then an odd width near n/40 (25 runs for 1,000)."""
    return 0 if n <= MARKER_LIMIT else max(5, (n // 40) | 1)


def _running_median(seg: list[tuple[int, float]], window: int) -> list[tuple[int, float]]:
    """Centered running median (the window shrinks at the ends): a level shift stays a step, and one
    slow run moves nothing, where a running mean would smear both."""
    half, ys = window // 2, [y for _, y in seg]
    return [(i, statistics.median(ys[max(0, k - half):k + half + 1])) for k, (i, _) in enumerate(seg)]


TICK_LABEL = 22  # display length of an x tick label ("11-22 12:50 · c935156")
MARKER_LIMIT = 60  # a trend with more x positions marks only its notable points (the line carries the rest)


def _marked(pts: list[tuple[int, float | None]], n: int, notable: set[int]) -> list[tuple[int, float]]:
    """The points of a series that get a marker (with its tooltip): all of them on a short trend; on a
    long one (a thousand nightly runs, where markers would overlap and weigh megabytes) the newest point,
    points at marked positions (change points) and points no line reaches (a value between gaps)."""
    if n <= MARKER_LIMIT:
        return [(i, y) for i, y in pts if y is not None]
    last = max((k for k, (_, y) in enumerate(pts) if y is not None), default=-1)
    keep = []
    for k, (i, y) in enumerate(pts):
        if y is None:
            continue
        alone = (k == 0 or pts[k - 1][1] is None) and (k + 1 == len(pts) or pts[k + 1][1] is None)
        if k == last or i in notable or alone:
            keep.append((i, y))
    return keep


def _category(x: object, cats: dict[str, int], names: list[str]) -> int:
    """The index of x's category; x is a label, or a (key, label) pair."""
    key, label = (str(x[0]), str(x[1])) if isinstance(x, tuple) and len(x) == 2 else (str(x), str(x))
    if key not in cats:
        cats[key] = len(cats)
        names.append(label)
    return cats[key]


def _marks(marks: list[tuple[str, str]], cats: dict[str, int], sx, x0: float, x1: float, top: float,
           y1: float) -> list[str]:
    """Dashed vertical lines at categories, each with its (escaped, shortened) text, staggered down."""
    out = []
    for k, (key, text) in enumerate((key, text) for key, text in marks if str(key) in cats):
        x, y = sx(cats[str(key)]), top + 12 + 14 * (k % 4)
        left = x > (x0 + x1) / 2  # text on the side with room
        out.append(f'<g class="bench-mark"><title>{_esc(text)}</title><line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" '
                   f'y2="{y1:.1f}" stroke="{PALETTE[3]}" stroke-width="1.5" stroke-dasharray="5 4"/>'
                   f'<text x="{x + (-4 if left else 4):.1f}" y="{y:.1f}" text-anchor="{"end" if left else "start"}" '
                   f'fill="{PALETTE[3]}">{_short(text, 46)}</text></g>')
    return out


def curve(points: list[tuple[str, float | None, float | None]], *, title: str, x_label: str, y_label: str,
          limit: tuple[str, float] | None = None, caption: str | None = None) -> str:
    """Points (label, x, y) joined in order, each labelled: a load sweep's levels from few users to
    many (throughput on x, latency on y). ``limit`` draws a horizontal line (an SLO bound) with its label."""
    pts = [(label, _num(x), _num(y)) for label, x, y in points or []]
    pts = [(label, x, y) for label, x, y in pts if x is not None and y is not None]
    if not pts:
        return _no_data(title, caption)
    ys = [y for _, _, y in pts] + ([limit[1]] if limit else [])
    xlo, xhi, xticks, xstep = _axis(*_padded([x for _, x, _ in pts]))
    ylo, yhi, yticks, ystep = _axis(*_padded(ys))
    x0, x1, top, y1 = 72, 572, 30, 290
    sx, sy = _scale(xlo, xhi, x0, x1), _scale(ylo, yhi, y1, top)
    out = _y_axis(sy, yticks, ystep, x0, x1, y1, y_label) + _x_axis(sx, xticks, xstep, x0, x1, top, y1, x_label)
    if limit is not None:
        y = sy(limit[1])
        out.append(f'<line x1="{x0:.1f}" y1="{y:.1f}" x2="{x1:.1f}" y2="{y:.1f}" stroke="{PALETTE[1]}" '
                   'stroke-width="1.5" stroke-dasharray="6 4"/>' + _label(limit[0], x1 - 4, y - 5, 40, "end"))
    line = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for _, x, y in pts)
    out.append(f'<polyline points="{line}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>')
    xl, yl = _esc(x_label), _esc(y_label)
    for label, x, y in pts:
        out.append(_marker(0, sx(x), sy(y), f"{_esc(label)}: {xl} = {fmt_sig(x)}, {yl} = {fmt_sig(y)}", 4)
                   + _label(label, sx(x) + 7, sy(y) - 7, 16, "start"))
    return _figure(x1 + 60, y1 + 44, title, out, caption)
