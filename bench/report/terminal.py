"""What bench prints in a terminal: the summary table of a run, its failures, and the progress
bar of bench collect (rich). The command line (bench.cli) calls these; nothing here runs a command."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from bench.report import format as textfmt
from bench.results import metrics, stats
from bench.results.schema import ModelInfo, Run, Sample


def summary_table(run: Run, width: int | None = None) -> Any:
    """Per model: counts, then each request-level metric's table statistics (model-level figures
    such as memory are in ``--json``, the exports and the pages). In a terminal narrower than the
    table needs (``width``), one small table per model instead: names are never cut."""
    columns = metrics.columns("table", "request")
    names = max((len(k) + 12 for k in run.models), default=10)
    if width is not None and width < names + 11 * (len(columns) + 3):
        return _vertical(run, columns)
    t = Table(title=Text(f"run {run.run_id} ({run.status})"), title_justify="left")
    for col in ["model", "ok", "failed", *(textfmt.metric_heading(m, stat) for m, stat in columns), "tokens from"]:
        t.add_column(col, justify="left" if col in ("model", "tokens from") else "right")
    for ms in stats.run_stats(run):
        info = run.models[ms.model]
        name = Text(ms.model)
        if info.status in ("skipped", "failed"):
            name.append(f" ({info.status})", style="yellow")
        t.add_row(
            name, str(ms.ok), Text(str(ms.failed), style="red" if ms.failed else ""),
            *(textfmt.metric_number(m, ms.figure(m, stat)) for m, stat in columns),
            Text(", ".join(ms.tokens_sources) or "–"),
        )
    return t


def _vertical(run: Run, columns: list) -> Group:
    parts: list[Any] = [Text(f"run {run.run_id} ({run.status})", style="italic")]
    for ms in stats.run_stats(run):
        info = run.models[ms.model]
        title = Text(ms.model, style="bold")
        if info.status in ("skipped", "failed"):
            title.append(f" ({info.status})", style="yellow")
        parts.append(title)  # above, not the table's title: a title wraps at the table's width
        t = Table(show_header=False)
        t.add_column("figure")
        t.add_column("value", justify="right")
        t.add_row("ok / failed", f"{ms.ok} / {ms.failed}")
        for m, stat in columns:
            t.add_row(textfmt.metric_heading(m, stat), textfmt.metric_number(m, ms.figure(m, stat)))
        t.add_row("tokens from", ", ".join(ms.tokens_sources) or "–")
        parts.append(t)
    return Group(*parts)


def failure_lines(run: Run) -> list[Text]:
    lines = []
    for key, info in run.models.items():
        if info.status in ("skipped", "failed"):
            lines.append(Text(f"{key}: {info.status}: {info.reason}"))
    counts: dict[tuple[str, str], list[Sample]] = {}
    for s in run.samples:
        if not s.ok:
            counts.setdefault((s.model, s.error or "?"), []).append(s)
    for (model, error), ss in counts.items():
        warm = sum(1 for s in ss if s.warmup)
        extra = f" ({warm} in warmup)" if warm else ""
        lines.append(Text(f"{model}: {len(ss)} × {error}{extra}: {ss[-1].error_detail}"))
    return lines


class ProgressReporter:
    def __init__(self, console: Console, enabled: bool):
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.task = None

    def __enter__(self) -> "ProgressReporter":
        if self.enabled:
            self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.enabled:
            self.progress.stop()

    def start(self, run: Run, total: int) -> None:
        if self.enabled:
            self.task = self.progress.add_task(f"run {run.run_id}", total=total)

    def model(self, key: str, info: ModelInfo) -> None:
        if self.enabled and info.status != "ok":
            self.progress.console.print(Text(f"{key}: {info.status}: {info.reason}", style="yellow"))

    def note(self, text: str) -> None:
        self.progress.console.print(Text(text))

    def sample(self, sample: Sample) -> None:
        if self.enabled and self.task is not None:
            self.progress.update(self.task, advance=1, description=Text(f"{sample.model} · {sample.prompt_id}").plain)


def capacity_table(verdict: dict) -> Table:
    """One model's load levels from bench capacity: the figures and whether the SLOs held."""
    t = Table(title_justify="left")
    for col in ("level", "achieved", "req/s", "tok/s", "TTFT p95 ms", "ITL p95 ms", "good", "passes"):
        t.add_column(col, justify="right")
    for lv in verdict["levels"]:
        name = f"{lv['concurrency']} streams" if lv.get("concurrency") else f"{lv['rate']:g}/s"
        knee = " (knee)" if lv.get("key") == verdict.get("knee_key") else ""
        share = lv["good_share"]
        t.add_row(f"{name}{knee}", _num(lv["achieved_concurrency"], 1), _num(lv["requests_per_s"], 2),
                  _num(lv["output_tokens_per_s"], 0), _num(lv["ttft_p95"], 0, 1000), _num(lv["itl_p95"], 1, 1000),
                  "–" if share is None else f"{share * 100:.0f} %",
                  Text("yes", style="green") if lv["passes"] else Text("no: " + "; ".join(lv["failed_bounds"]),
                                                                      style="red"))
    return t


def _num(x: float | None, digits: int, scale: float = 1.0) -> str:
    return "–" if x is None else f"{x * scale:.{digits}f}"


def levels_table(run: Run) -> Table | None:
    """A load run's levels per model (the summary table pools them); None for a run without levels."""
    from bench.analysis.load import levels

    rows = [(m, lv) for m in run.models for lv in levels(run, m)]
    if not rows:
        return None
    t = Table(title="per load level", title_justify="left")
    for col in ("model", "level", "achieved", "req/s", "tok/s", "TTFT p95 ms", "ITL p95 ms", "errors", "dropped"):
        t.add_column(col, justify="left" if col == "model" else "right")
    for m, lv in rows:
        t.add_row(Text(m), lv.key, _num(lv.achieved_concurrency, 1), _num(lv.requests_per_s, 2),
                  _num(lv.output_tokens_per_s, 0), _num(lv.ttft_p95, 0, 1000), _num(lv.itl_p95, 1, 1000),
                  str(lv.errors), str(lv.dropped))
    return t



DIFF_STYLES = {"improved": "green", "fixed": "green", "worsened": "red", "failed": "red", "not comparable": "yellow",
               "missing": "yellow"}


def diff_table(d: Any, title: str) -> list[Any]:
    """bench diff in a terminal: the table, the method in one sentence, changed top picks, and how
    many sessions would detect a change at the noise seen."""
    from bench.report import diff as diff_text

    t = Table(title=Text(title), title_justify="left")
    for col in ("model", "metric", "A", "B", "change [95% CI]", "status", "noise from"):
        t.add_column(col, justify="right" if col in ("A", "B", "change [95% CI]") else "left")
    for r in d.rows:
        label = diff_text.metric_label(r.metric)
        status = Text(r.status + (f": {r.reason}" if r.reason else ""), style=DIFF_STYLES.get(r.status, ""))
        t.add_row(Text(r.model), Text(label + (f" · {r.prompt}" if r.prompt else "")),
                  diff_text.fmt_value(r.metric, r.a), diff_text.fmt_value(r.metric, r.b), diff_text.fmt_change(r),
                  status, Text(r.basis or ""))
    parts: list[Any] = [t, Text(diff_text.METHOD, style="dim")]
    parts += [Text(f"top pick for {name}: {v['a']} → {v['b']}", style="yellow")
              for name, v in d.ranking.items() if v["a"] != v["b"]]
    parts += [Text(h, style="dim") for h in d.hints]
    return parts
