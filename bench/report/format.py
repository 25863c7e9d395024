"""The one place for how values look in pages, charts, exports and the terminal: number formats by
kind, metric values and headings by their registry entry, chart numbers, and escaping of untrusted
text for Markdown, HTML and SVG."""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from datetime import datetime, timezone
from typing import Any, Mapping

from markupsafe import Markup

from bench.results.metrics import METRICS, Metric
from bench.results.store import finite

# ----------------------------------------------------------------------------- escaping

# Characters that could start Markdown syntax: table pipes, links and images, emphasis, code,
# attribute lists ({: onclick=...}), headings, escapes. Text with these as entities stays text.
_MD_SPECIAL = {
    "|": "&#124;", "[": "&#91;", "]": "&#93;", "*": "&#42;", "_": "&#95;", "`": "&#96;",
    "{": "&#123;", "}": "&#125;", "#": "&#35;", "\\": "&#92;", "~": "&#126;", "!": "&#33;", "^": "&#94;",
}
_ESCAPES = str.maketrans({
    **{k: v for k, v in _MD_SPECIAL.items()},
    "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&#39;",
})


def md_text(value: Any) -> Markup:
    """Untrusted text for inline Markdown (table cells, headings, lists): inert everywhere.

    One pass over the characters: HTML specials and Markdown syntax become entities, and line
    breaks become spaces (a cell or heading cannot be split).
    """
    s = re.sub(r"\s*[\r\n\x0b\x0c\x85\u2028\u2029]\s*", " ", str(value))
    return Markup(s.translate(_ESCAPES))


def title_text(value: Any) -> Markup:
    """A page title for front matter. Themes print page titles unescaped (Material's header does),
    so only characters that are inert in HTML, Markdown and YAML are kept."""
    s = re.sub(r"[^A-Za-z0-9 .,;:()/+=@_-]", "?", re.sub(r"\s+", " ", str(value))).strip()
    return Markup(s[:120] or "untitled")


def code_block(text: Any, lang: str = "text", indent: int = 0) -> Markup:
    """A fenced block that untrusted text cannot break out of."""
    s = str(text)
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * max(3, longest + 1)
    pad = " " * indent
    body = "\n".join(pad + line for line in s.splitlines()) if s else pad
    return Markup(f"{fence}{lang}\n{body}\n{pad}{fence}")


def json_for_script(data: Any) -> Markup:
    """JSON that is safe inside <script type="application/json">."""
    s = json.dumps(finite(data), ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    s = s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return Markup(s)


def finalize(value: Any) -> Any:
    if isinstance(value, Markup) or value is None or isinstance(value, (int, float)):
        return "–" if value is None else value
    return md_text(value)


def slug(value: str) -> Markup:
    """A safe, stable file name (and anchor) for an untrusted id: only [A-Za-z0-9._-]."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-.")[:60] or "x"
    if base != value:
        base += "-" + hashlib.sha256(value.encode()).hexdigest()[:6]
    return Markup(base)


_XML_CTRL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff\ufffe\uffff]")  # not allowed in XML


def svg_line(value: Any) -> str:
    """One line of XML-safe text, unescaped (newlines would end a raw HTML block in Markdown)."""
    return _XML_CTRL.sub("", re.sub(r"\s+", " ", str(value))).strip()


def svg_text(value: Any, limit: int | None = None) -> str:
    """Untrusted text for SVG (text and attributes): one line, escaped, cut to ``limit`` with '…'."""
    s = svg_line(value)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "…"
    return html.escape(s, quote=True)


# ----------------------------------------------------------------------------- number formats


def _fmt(x: float | None, spec: str, scale: float = 1.0, unit: str = "") -> Markup:
    if x is None:
        return Markup("–")
    return Markup(f"{x * scale:{spec}}{unit}")


def fmt_ms(x: float | None) -> Markup:
    return _fmt(x, ".1f", 1000)


def fmt_s(x: float | None) -> Markup:
    return _fmt(x, ".2f")


def fmt_num(x: float | None, digits: int = 1) -> Markup:
    return _fmt(x, f".{digits}f")


def fmt_bytes(x: float | None) -> Markup:
    if not x:
        return Markup("–")
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if x >= size:
            return Markup(f"{x / size:.1f} {unit}" if unit == "GiB" else f"{x / size:.0f} {unit}")
    return Markup(f"{x:.0f} B")


def fmt_mib(x: float | None) -> Markup:
    """Whole MiB ('512 MiB'), for lines scripts read: always the same unit."""
    return _fmt(x, ".0f", 1 / 2**20, " MiB")


def fmt_pct(x: float | None) -> Markup:
    return _fmt(x, ".0f", 100, "%")


def utc_time(iso: object) -> datetime | None:
    """An ISO time from a results file (untrusted) as an aware UTC datetime; None when it is not one.
    A time without an offset is taken as UTC, as bench writes them, so any two can be subtracted."""
    try:
        t = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def fmt_time(iso: str | None) -> Markup:
    if not iso:
        return Markup("–")
    t = utc_time(iso)
    return Markup(t.strftime("%Y-%m-%d %H:%M UTC")) if t else md_text(iso)


def fmt_date(iso: str | None) -> Markup:
    """The UTC day of an ISO time ('2026-11-22')."""
    if not iso:
        return Markup("–")
    t = utc_time(iso)
    return Markup(t.strftime("%Y-%m-%d")) if t else md_text(iso)


def fmt_params(x: int | None) -> Markup:
    if not x:
        return Markup("–")
    return Markup(f"{x / 1e9:.1f}B" if x >= 1e9 else f"{x / 1e6:.0f}M")


def fmt_sig(v: float) -> str:
    """A chart's exact value (tooltips): 4 significant digits, plain digits for large numbers."""
    return f"{v:.0f}" if abs(v) >= 1e4 else f"{v:.4g}"


def fmt_tick(v: float, step: float) -> str:
    """A compact axis tick: 0.25, 1.5, 120, 1.2k, 3M (as many decimals as the step needs)."""
    if abs(v) < step / 1e6:
        return "0"
    div, suffix = next(((d, s) for d, s in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if abs(v) >= d), (1.0, ""))
    decimals = max(0, -math.floor(math.log10(step / div) + 1e-9))
    text = f"{v / div:.{decimals}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + suffix


# ----------------------------------------------------------------------------- metrics


def metric_number(metric: Metric, value: float | None) -> str:
    """A metric's value as a bare number in its display unit (ms for latencies under a second);
    sizes carry their own unit ('1.2 GiB', '512 MiB')."""
    return str(fmt_any(value, metric.kind))


def metric_unit(metric: Metric) -> str:
    """The unit :func:`metric_number` shows ("" for rates and counts, whose label says it, and for
    sizes, whose numbers carry it)."""
    return {"ms": "ms", "s": "s"}.get(metric.kind, "")


def metric_text(metric: Metric, value: float | None) -> str:
    """A metric's value with its unit: '12.3 ms', '1.25 s', '45.6'."""
    unit = metric_unit(metric)
    number = metric_number(metric, value)
    return f"{number} {unit}" if unit and value is not None else number


def metric_row_label(metric: Metric) -> str:
    """A metric as a table row names it: 'TTFT (ms)', 'end-to-end (s)', 'decode tokens/s'."""
    unit = metric_unit(metric)
    return f"{metric.label} ({unit})" if unit else metric.label


def metric_heading(metric: Metric, stat: str | None = None, *, parens: bool = False) -> str:
    """A column heading: 'TTFT p50 ms' ('TTFT p50 (ms)' with ``parens``), 'decode tok/s p50',
    'peak memory' (a model-level metric has one value: no statistic is named)."""
    unit = metric_unit(metric)
    if unit and parens:
        unit = f"({unit})"
    if metric.level == "model":
        stat = None
    return " ".join(x for x in (metric.short or metric.label, stat, unit) if x)


def fmt_any(value: float | None, kind: str) -> Markup:
    return {"ms": fmt_ms, "s": fmt_s, "num": fmt_num, "rate": fmt_num, "count": fmt_num, "bytes": fmt_bytes,
            "pct": fmt_pct}[kind](value)


def fmt_extra(key: str, value: Any) -> Markup:
    """A runtime fact; one that a model-level metric reads is formatted as that metric."""
    metric = METRICS.get(key)
    if metric is not None and metric.level == "model" and isinstance(value, (int, float)):
        return Markup(metric_text(metric, value))
    if key.endswith("_bytes") and isinstance(value, (int, float)):
        return fmt_bytes(value)
    if key.endswith("_s") and isinstance(value, (int, float)):
        return Markup(f"{value:.2f} s")
    if key == "parameters" and isinstance(value, int):
        return fmt_params(value)
    if isinstance(value, bool):
        return Markup("on" if value else "off")
    if isinstance(value, list):
        return md_text(" ".join(str(v) for v in value) or "none reported")
    if isinstance(value, Mapping):
        return md_text(", ".join(f"{extra_label(str(k))}: {v}" for k, v in value.items()))
    return md_text(value)


_EXTRA_LABELS = {
    "quantization": "quantization", "parameters": "parameters", "source": "weights from",
    "chat_format": "chat format", "runtime": "runtime",
    "rss_after_load_bytes": "resident memory after load", "threads": "threads", "n_ctx": "context size",
    "rss_before_bytes": "server memory before the model ran", "memory_source": "memory measured on",
    "llama_cpp_python": "llama-cpp-python", "n_batch": "batch size", "flash_attn": "flash attention",
    "extra_bufts": "extra buffer types (weight repacking, AMX)", "extra_bufts_reason": "extra buffer types because",
    "cpu_features": "CPU features llama.cpp reports", "mode": "mode", "mechanism": "how",
    "unmeasured_requests": "unmeasured requests", "variant": "variant (served id)", "publisher": "publisher",
    "model_folder": "model folder", "unknown": "not known", "license": "license",
    "runtime_version": "runtime version", "license_raw": "license text", "context_length": "context length",
    "trained_context": "trained context length", "model_bytes": "model size (tensors)", "size_label": "size",
    "runtime_memory_bytes": "memory the runtime reports", "vram_bytes": "GPU memory the runtime reports",
    "digest": "digest", "family": "family", "format": "format", "sources": "where each figure comes from",
    "runtime_load_s": "load time the runtime reports", "download": "download", "seconds": "seconds",
    "not_downloaded": "not downloaded", "size_bytes": "size", "engine": "inference engine",
    "weights_root": "weights", "weights_parent": "parent model", "requests_running": "requests running",
    "requests_waiting": "requests waiting", "kv_cache_usage": "KV-cache usage (0-1)",
    "prefix_cache_queries": "prefix-cache queries (tokens)", "prefix_cache_hits": "prefix-cache hits (tokens)",
}


def extra_label(key: str) -> str:
    """How a runtime fact is named: a model-level metric's label when one reads it."""
    metric = METRICS.get(key)
    if metric is not None and metric.level == "model":
        return metric.label
    return _EXTRA_LABELS.get(key, key)


