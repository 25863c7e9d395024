"""The metric registry: every metric bench reports, defined once.

A metric says how its value is computed, in which unit, which direction is better, how it is
formatted (a *kind* that ``bench.report.format`` knows), which statistics the summary tables and
the CSV export show, and which selection-framework dimension it feeds. Statistics
(``bench.results.stats``), ``bench show``, the exports, the run and model pages, diffs and trends
read it. Adding a metric is one ``register(Metric(...))`` call (plus a template line only where a
page wants a special view).

Two levels:

* request-level (``value``): one successful request's value from its stored sample; statistics
  (mean, percentiles, ...) are over requests. Diffed between runs and drawn in trends.
* model-level (``of_model``): one figure per model and run, read from the run's ``ModelInfo``
  (memory, disk, load time). Its one "statistic" is ``"value"``. ``bench show`` lists request-level
  metrics only; exports and pages list both.

"ITL" means one thing everywhere: a request's mean gap between content chunks after the first
(TTFT excluded); its percentiles are over requests, as for every other request-level metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Literal

from bench.results.schema import ModelInfo, Sample

# How a value is shown (bench.report.format knows each): seconds as milliseconds, seconds,
# a rate (tokens/s), a count, a size in bytes (KiB / MiB / GiB).
Kind = Literal["ms", "s", "rate", "count", "bytes"]
KINDS = ("ms", "s", "rate", "count", "bytes")
STATS = ("mean", "p50", "p95", "p99", "min", "max")  # of a request-level metric
VALUE = "value"  # the one "statistic" of a model-level metric
# Names ModelStats uses itself: a metric id must not shadow them (stats.ttft is a metric).
RESERVED = frozenset({"model", "requests", "ok", "failed", "errors", "metrics", "facts", "tokens_sources",
                      "over_limit", "streamed", "extra", "figure", "as_dict"})


@dataclass(frozen=True)
class Metric:
    id: str
    label: str  # how pages and tables name it
    unit: str  # of the stored value: "s", "tokens/s", "tokens", "bytes", ...
    value: Callable[[Sample], float | None] | None  # one successful request's value (None: not defined for it)
    better: Literal["lower", "higher"] | None  # None: neither (a description, not a goal)
    kind: Kind = "count"
    table: tuple[str, ...] = ("p50",)  # statistics the summary tables show (bench show, Markdown export, model page)
    export: tuple[str, ...] = ("p50",)  # statistics the CSV export has a column for
    dimension: str | None = None  # the selection-framework dimension it feeds, if any
    description: str = ""
    compared: bool = True  # diffed between runs and drawn in trends (request-level only)
    short: str = ""  # for narrow table headings (default: the label)
    of_model: Callable[[ModelInfo], float | None] | None = None  # a model-level figure instead of `value`
    min_change: float = 0.05  # the practical threshold of a diff: smaller changes are "same" however clear

    @property
    def level(self) -> Literal["request", "model"]:
        return "model" if self.of_model is not None else "request"

    @property
    def higher_is_better(self) -> bool:
        return self.better == "higher"

    def column(self, stat: str) -> str:
        """Its export column for one statistic: ``ttft_p50_s`` (seconds carry ``_s``); a model-level
        metric's column is its id (``peak_rss_bytes``)."""
        if self.level == "model":
            return self.id
        return f"{self.id}_{stat}" + ("_s" if self.unit == "s" else "")


METRICS: dict[str, Metric] = {}


def _problems(m: Metric) -> list[str]:
    stats = (VALUE,) if m.of_model is not None else STATS
    problems = []
    if not m.id.isidentifier() or m.id in RESERVED:
        problems.append("an identifier (letters, digits, _) that ModelStats does not use itself")
    if (m.value is None) == (m.of_model is None):
        problems.append("exactly one of value (per request) or of_model (per model)")
    if m.kind not in KINDS:
        problems.append(f"kind one of {', '.join(KINDS)}")
    if m.better not in ("lower", "higher", None):
        problems.append("better 'lower', 'higher' or None")
    if not set(m.table) <= set(stats) or not set(m.export) <= set(stats):
        problems.append(f"table and export statistics among {', '.join(stats)}")
    if not m.label or not m.unit:
        problems.append("a label and a unit")
    return problems


def register(metric: Metric) -> Metric:
    """Add (or replace) a metric; everything that reports metrics shows it from then on."""
    problems = _problems(metric)
    if problems:
        raise ValueError(f"metric '{metric.id}' needs " + "; ".join(problems))
    METRICS[metric.id] = metric
    return metric


def unregister(metric_id: str) -> None:
    METRICS.pop(metric_id, None)


def request_metrics() -> list[Metric]:
    return [m for m in METRICS.values() if m.level == "request"]


def model_metrics() -> list[Metric]:
    return [m for m in METRICS.values() if m.level == "model"]


def compared() -> list[Metric]:
    """Request-level metrics with a better direction: diffed between runs and drawn in trends."""
    return [m for m in request_metrics() if m.compared and m.better is not None]


def columns(which: Literal["table", "export"], level: Literal["request", "model"] | None = None
            ) -> list[tuple[Metric, str]]:
    """(metric, statistic) pairs in registry order: the columns of a summary table or the CSV export."""
    return [(m, stat) for m in METRICS.values() if level in (None, m.level) for stat in getattr(m, which)]


# ----------------------------------------------------------------------------- the built-in metrics


def decode_tps(s: Sample) -> float | None:
    """Decode tokens/s = (completion_tokens - 1) / (e2e - TTFT).

    The first token arrives at TTFT; the remaining tokens are decoded in e2e - TTFT. Prompt
    tokens are never in the numerator.
    """
    if not s.ok or s.ttft_s is None or s.e2e_s is None or not s.completion_tokens:
        return None
    span = s.e2e_s - s.ttft_s
    if s.completion_tokens < 2 or span <= 0:
        return None
    return (s.completion_tokens - 1) / span


def tpot(s: Sample) -> float | None:
    """Time per output token after the first: (e2e - TTFT) / (completion_tokens - 1)."""
    tps = decode_tps(s)
    return 1.0 / tps if tps else None


def e2e_tps(s: Sample) -> float | None:
    """Completion tokens / e2e: what a user waiting for the whole answer sees (no-stream runs too)."""
    if not s.ok or s.e2e_s is None or not s.completion_tokens or s.e2e_s <= 0:
        return None
    return s.completion_tokens / s.e2e_s


def itl(s: Sample) -> float | None:
    """A request's mean gap between content chunks after the first (TTFT excluded)."""
    return sum(s.itl_s) / len(s.itl_s) if s.itl_s else None


def number(value: Any) -> float | None:
    """A finite number from an untrusted field (ints stay ints), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value if math.isfinite(value) else None


def fact(*keys: str) -> Callable[[ModelInfo], float | None]:
    """A model-level value: the first of ``keys`` in the model's runtime facts that is a number."""
    def read(info: ModelInfo) -> float | None:
        return next((v for v in (number(info.extra.get(k)) for k in keys) if v is not None), None)
    return read


register(Metric("ttft", "TTFT", "s", lambda s: s.ttft_s, "lower", "ms", ("p50", "p95"), ("p50", "p95"),
                None, "request sent -> first chunk carrying content (a profile may cap its p50)"))
register(Metric("itl", "inter-token latency", "s", itl, "lower", "ms", ("p50",), ("p50",), None,
                "a request's mean gap between content chunks after the first", short="ITL"))
register(Metric("tpot", "TPOT", "s", tpot, "lower", "ms", (), ("p50",), None,
                "(e2e - TTFT) / (completion tokens - 1)", compared=False))
register(Metric("e2e", "end-to-end", "s", lambda s: s.e2e_s, "lower", "s", ("mean", "p95"), ("mean", "p50", "p95", "p99"),
                "latency", "request sent -> end of the response", short="e2e"))
register(Metric("decode_tps", "decode tokens/s", "tokens/s", decode_tps, "higher", "rate", ("p50",), ("p50", "mean"),
                "throughput", "(completion tokens - 1) / (e2e - TTFT)", short="decode tok/s"))
register(Metric("e2e_tps", "e2e tokens/s", "tokens/s", e2e_tps, "higher", "rate", (), (), None,
                "completion tokens / e2e", compared=False))
register(Metric("completion_tokens", "completion tokens", "tokens",
                lambda s: float(s.completion_tokens) if s.completion_tokens is not None else None, None, "count",
                (), ("mean",), None, "tokens generated"))
# Model-level figures, read from the runtime facts a runtime recorded (ids are those facts' keys).
register(Metric("peak_rss_bytes", "peak resident memory", "bytes", None, "lower", "bytes", (VALUE,), (VALUE,),
                "memory", "the largest resident size of the model's server while it was benchmarked",
                compared=False, short="peak memory", of_model=fact("peak_rss_bytes", "memory_bytes", "runtime_memory_bytes")))
register(Metric("disk_bytes", "disk footprint", "bytes", None, "lower", "bytes", (VALUE,), (VALUE,),
                "footprint", "the model's files on disk", compared=False, short="disk", of_model=fact("disk_bytes")))
register(Metric("load_s", "cold load time", "s", None, "lower", "s", (), (VALUE,), None,
                "until the model answered after a cold load", compared=False, short="load time",
                of_model=fact("load_s")))
