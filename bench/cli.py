"""The command line: parse options, call core functions, print. Nothing else lives here."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

import bench
from bench import config as config_mod
from bench.errors import BenchError, ConfigError
from bench.measure import runner
from bench.report import format as textfmt
from bench.report.terminal import ProgressReporter, capacity_table, failure_lines, levels_table, summary_table
from bench.results import stats, store
from bench.results.journal import RunWriter
from bench.runtimes.base import size_text

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False)


class BenchGroup(click.Group):
    """Turns every BenchError into one clean line and its exit code: no tracebacks."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BenchError as e:
            err.print(Text(f"error: {e}", style="bold red"))
            ctx.exit(e.exit_code)


@click.group(cls=BenchGroup)
@click.version_option(bench.__version__, prog_name="bench")
def main() -> None:
    """Benchmark local language models on OpenAI-compatible servers.

    bench collect runs a model x prompt matrix and writes results/<run-id>.json;
    bench show summarizes a run; bench models checks that servers and models answer.
    """


def _sigterm_as_interrupt() -> None:
    """SIGTERM and SIGINT both stop cleanly (KeyboardInterrupt), even when the shell started us
    in the background with SIGINT ignored."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread (tests)
        pass


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="bench.yaml to use (default: ./bench.yaml if present).")
@click.option("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8080/v1 (replaces configured endpoints).")
@click.option("--models", help="Comma-separated model names as the server knows them.")
@click.option("--prompts", type=click.Path(path_type=Path), help="Prompts file: JSON/YAML list of strings or of {id, text, rubric}.")
@click.option("--rounds", type=int, help="Measured rounds per prompt (default 3).")
@click.option("--warmup", type=int, help="Warmup requests per model, excluded from statistics (default 1).")
@click.option("--sessions", type=int, help="Repeat the whole matrix N times, a fresh embedded server each (default 1): "
                                           "bench diff then measures run-to-run noise within the run.")
@click.option("--max-tokens", type=int, help="Completion token limit, sent as max_tokens (default 150).")
@click.option("--timeout", type=float, help="Per-request timeout in seconds (default 300).")
@click.option("--stall-timeout", type=float, help="Longest silence allowed inside a stream, seconds (default 60).")
@click.option("--results-dir", type=click.Path(path_type=Path), help="Where run files go (default results/).")
@click.option("--no-stream", is_flag=True, default=None, help="Non-streamed requests: end-to-end latency only.")
@click.option("--prompt-cache", type=click.Choice(["cold", "warm"]),
              help="cold (default): no measured prompt reuses a cached prefill; warm: measure the cached case.")
@click.option("--concurrency", metavar="LEVELS",
              help="Closed-loop load: streams in flight per level, e.g. 1,4,16,64 (each starts its next request "
                   "when one ends).")
@click.option("--rate", "rates", metavar="RATES",
              help="Open-loop load: requests/s per level with Poisson arrivals, e.g. 2,5,10.")
@click.option("--requests-per-level", type=int, help="Measured requests per load level (default 32).")
@click.option("--duration", type=float, help="Open loop: seconds per level instead of a request count.")
@click.option("--max-in-flight", type=int, help="Open loop: cap on requests in flight; arrivals past it are "
                                                "recorded as dropped (default 256).")
@click.option("--resume", "resume", metavar="RUN_ID", help="Run only the missing cells of an earlier run.")
@click.option("--download", is_flag=True,
              help="Download models the runtime lists but has not got (Foundry Local started by bench). Never without it.")
@click.option("--server-timings", is_flag=True,
              help="Runtimes that report their own timings only on native routes (Ollama, LM Studio): a second, "
                   "untimed request per measured one fetches them (doubles the requests).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def collect(config_path: Path | None, endpoint: str | None, models: str | None, prompts: Path | None,
            rounds: int | None, warmup: int | None, sessions: int | None, max_tokens: int | None, timeout: float | None,
            stall_timeout: float | None, results_dir: Path | None, no_stream: bool | None,
            prompt_cache: str | None, concurrency: str | None, rates: str | None, requests_per_level: int | None,
            duration: float | None, max_in_flight: int | None, resume: str | None, download: bool,
            server_timings: bool, quiet: bool) -> None:
    """Run the model x prompt matrix and write results/<run-id>.json."""
    env = os.environ
    if resume:
        rdir = config_mod.results_dir(results_dir, env)
        resume = str(_find_run(rdir, resume))
        # Servers and keys come from your configuration, never from the run file.
        current = config_mod.resolve(config_path, env=env, endpoint=endpoint, results_dir=rdir,
                                     require_endpoint=False)
        plan, writer = runner.prepare(None, resume=resume, results_dir=rdir, current=current)
        for note in plan.notes:
            err.print(Text(f"note: {note}", style="yellow"))
    else:
        plan = config_mod.resolve(
            config_path, env=env, endpoint=endpoint, models=models, prompts=prompts, rounds=rounds,
            warmup=warmup, max_tokens=max_tokens, timeout=timeout, stall_timeout=stall_timeout,
            results_dir=results_dir, stream=False if no_stream else None, prompt_cache=prompt_cache,
            concurrency=_levels(concurrency), requests_per_level=requests_per_level, sessions=sessions,
            rate=_rates(rates), duration=duration, max_in_flight=max_in_flight,
        )
        plan, writer = runner.prepare(plan)
    if not plan.generation.stream:
        err.print("note: --no-stream measures end-to-end latency only (no TTFT, no inter-token gaps)")
    _sigterm_as_interrupt()
    show_progress = not quiet and err.is_terminal
    with ProgressReporter(err, show_progress) as reporter:
        outcome = runner.collect(plan, writer, env=env, reporter=reporter, download=download,
                                 server_timings=server_timings)
    run = outcome.run
    if not quiet:
        out.print(summary_table(run, out.width))
    problems = failure_lines(run)
    if problems:
        err.print(Text("failures:", style="bold yellow"))
        for line in problems:
            err.print(Text("  ") + line)
    for e in run.endpoints:
        if e.runtime_note:
            err.print(Text(f"warning: {e.name}: {e.runtime_note}", style="yellow"))
    missing = {k: i.extra["not_downloaded"].get("size_bytes") for k, i in run.models.items()
               if i.status == "skipped" and isinstance(i.extra.get("not_downloaded"), dict)}
    if missing:
        total = sum(v for v in missing.values() if isinstance(v, int))
        known = "" if all(isinstance(v, int) for v in missing.values()) else " and more: some sizes are not reported"
        err.print(Text(f"not downloaded: {', '.join(missing)} ({size_text(total or None)}{known}); "
                       "see each model's line above for how to get it", style="yellow"))
    err.print(Text(f"wrote {outcome.path} ({run.status})"))
    _render_after_collect(outcome.path.parent, quiet)
    if not any(s.ok for s in run.samples if not s.warmup):
        raise BenchError(f"no request succeeded in run {run.run_id}; see the failures above")
    bad = [k for k, info in run.models.items() if info.status in ("failed", "skipped")]
    if bad:
        raise BenchError(f"{len(bad)} of {len(run.models)} models were not measured ({', '.join(bad)}); "
                         "see the failures above")


def _levels(text: str | None) -> list[int] | None:
    """--concurrency 1,4,16 -> [1, 4, 16]; a clear error for anything else."""
    if text is None:
        return None
    try:
        levels = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give whole numbers of streams, e.g. 1,4,16",
                                 param_hint="--concurrency") from None
    if not levels:
        raise click.BadParameter("give at least one level, e.g. 1,4,16", param_hint="--concurrency")
    return levels


def _rates(text: str | None) -> list[float] | None:
    """--rate 2,5,10 -> [2.0, 5.0, 10.0]; a clear error for anything else."""
    if text is None:
        return None
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r}: give requests per second, e.g. 2,5,10", param_hint="--rate") from None
    if not rates:
        raise click.BadParameter("give at least one rate, e.g. 2,5,10", param_hint="--rate")
    return rates


DEFAULT_DOCS_DIR = Path("site_src")


def _find_run(results_dir: Path, ref: str) -> Path:
    """store.find_run, warning about each file that 'latest' had to skip."""
    problems: list[store.LoadProblem] = []
    path = store.find_run(results_dir, ref, problems)
    for p in problems:
        err.print(Text(f"warning: skipped {p.message}", style="yellow"))
    return path


def _render_after_collect(results_dir: Path, quiet: bool) -> None:
    """bench collect renders the site pages when it runs in a project that has a site."""
    if not (DEFAULT_DOCS_DIR.is_dir() or Path("mkdocs.yml").is_file()):
        if not quiet:
            err.print("note: no site_src/ here, so no pages were rendered (bench render --out DIR renders them)")
        return
    site_results = config_mod.results_dir()
    if results_dir.resolve() != site_results.resolve():
        # The site is built from the project's results; pages from another folder would be replaced
        # by the next `mkdocs build` anyway, and must not overwrite the project's.
        err.print(f"note: pages not rendered: the site here is built from {site_results}/, not {results_dir}/; "
                  f"render those with: bench render --results-dir {results_dir} --out DIR")
        return
    from bench.report.render import render

    report, problems = render(results_dir, DEFAULT_DOCS_DIR)
    for message in [p.message for p in problems] + report.warnings:
        err.print(Text(f"warning: {message}", style="yellow"))
    if not quiet:
        err.print(Text(f"rendered {len(report.written)} changed page(s) into {DEFAULT_DOCS_DIR}/ "
                       "(mkdocs serve shows them)"))


@main.command()
@click.option("--results-dir", type=click.Path(path_type=Path), help="Where run files are (default results/ or BENCH_RESULTS_DIR).")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_DOCS_DIR, show_default=True,
              help="The MkDocs docs_dir to write the generated pages into.")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="bench.yaml with selection profiles.")
@click.option("--strict", is_flag=True, help="Exit 1 when a results file cannot be read.")
def render(results_dir: Path | None, out: Path, config_path: Path | None, strict: bool) -> None:
    """Render results into Markdown pages (index.md and report/) for MkDocs or Zensical."""
    from bench.report.render import render as do_render

    rdir = config_mod.results_dir(results_dir)
    report, problems = do_render(rdir, out, config_mod.load_profiles(config_path), config_mod.load_slo(config_path))
    for message in [p.message for p in problems] + report.warnings:
        err.print(Text(f"warning: {message}", style="yellow"))
    err.print(Text(f"{len(report.written)} page(s) written, {report.unchanged} unchanged, "
                   f"{len(report.removed)} removed in {out}/"))
    if strict and problems:
        raise BenchError(f"{len(problems)} results file(s) could not be read (see the warnings above)")


@main.command()
@click.argument("run_ref", default="latest", metavar="[RUN_ID|latest|FILE]")
@click.option("--results-dir", type=click.Path(path_type=Path), help="Where run files are (default results/).")
@click.option("--format", "fmt", type=click.Choice(["md", "csv", "sweep"]), default="md", show_default=True,
              help="md: a report; csv: one row per model; sweep: one CSV row per model and load level.")
@click.option("--output", "-o", type=click.Path(path_type=Path),
              help="Default: benchmark_report.md, benchmark_report.csv or benchmark_sweep.csv.")
def export(run_ref: str, results_dir: Path | None, fmt: str, output: Path | None) -> None:
    """Write one run as a standalone benchmark_report.md or a CSV (one row per model, or per load level)."""
    from bench.report.export import export_csv, export_markdown, export_sweep_csv

    rdir = config_mod.results_dir(results_dir)
    run = store.load_run(_find_run(rdir, run_ref))
    output = output or Path("benchmark_sweep.csv" if fmt == "sweep" else f"benchmark_report.{fmt}")
    if fmt == "sweep" and not export_sweep_csv(run).count("\n") > 1:
        raise BenchError(f"run {run.run_id} has no load levels: measure them with bench collect --concurrency 1,4,16")
    text = {"md": lambda: export_markdown(run, config_mod.load_profiles()), "csv": lambda: export_csv(run),
            "sweep": lambda: export_sweep_csv(run)}[fmt]()
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as e:
        raise BenchError(f"cannot write {output}: {e.strerror}") from None
    err.print(Text(f"wrote {output}"))


@main.command()
@click.argument("run_ref", default="latest", metavar="[RUN_ID|latest|FILE]")
@click.option("--results-dir", type=click.Path(path_type=Path), help="Where run files are (default results/).")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def show(run_ref: str, results_dir: Path | None, as_json: bool) -> None:
    """Summarize one run per model: requests, TTFT, ITL, e2e, decode tokens/s."""
    rdir = config_mod.results_dir(results_dir)
    run = store.load_run(_find_run(rdir, run_ref))
    if as_json:
        payload = {
            "run_id": run.run_id,
            "status": run.status,
            "workload_hash": run.workload.hash,
            "models": {
                ms.model: {**ms.as_dict(), "status": run.models[ms.model].status, "reason": run.models[ms.model].reason}
                for ms in stats.run_stats(run)
            },
        }
        click.echo(store.json_text(payload))
        return
    out.print(summary_table(run, out.width))
    if (per_level := levels_table(run)) is not None:
        out.print(per_level)
    for line in failure_lines(run):
        out.print(Text("  ") + line)


@main.command()
@click.argument("run_ref", default="latest", metavar="[RUN_ID|latest|FILE]")
@click.option("--slo", help="Service-level objectives, e.g. 'ttft_p95<=0.5,tps_p50>=20' (default: slo: in bench.yaml).")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="bench.yaml with slo:.")
@click.option("--results-dir", type=click.Path(path_type=Path), help="Where run files are (default results/).")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict per model and level as JSON.")
def capacity(run_ref: str, slo: str | None, config_path: Path | None, results_dir: Path | None,
             as_json: bool) -> None:
    """How many concurrent users each model serves within the SLOs (a --concurrency run)."""
    from bench.analysis.capacity import capacity as capacity_of
    from bench.analysis.capacity import parse_slo

    slo = slo or config_mod.load_slo(config_path)
    if not slo:
        raise ConfigError("no SLO: pass --slo 'ttft_p95<=0.5,tps_p50>=20' or set slo: in bench.yaml")
    bounds = parse_slo(slo)
    run = store.load_run(_find_run(config_mod.results_dir(results_dir), run_ref))
    verdict = capacity_of(run, bounds)
    if not verdict:
        raise BenchError(f"run {run.run_id} has no load levels: measure them with bench collect --concurrency 1,4,16")
    if as_json:
        click.echo(store.json_text({"run_id": run.run_id, "slo": slo, "models": verdict}))
        return
    for v in verdict.values():
        out.print(Text(v["sentence"]))
        out.print(capacity_table(v))


@main.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="bench.yaml to use.")
@click.option("--endpoint", help="Check this base URL instead of the configured endpoints.")
@click.option("--models", help="Comma-separated model names to probe.")
@click.option("--timeout", type=float, default=60.0, show_default=True, help="Seconds per probe.")
@click.option("--json", "as_json", is_flag=True, help="Print the checklist as JSON.")
def models(config_path: Path | None, endpoint: str | None, models: str | None, timeout: float,
           as_json: bool) -> None:
    """Validation checklist: is each endpoint reachable, what does it list, does each model answer?"""
    from bench.measure.probe import checklist

    config_mod.check_seconds("--timeout", timeout)
    plan = config_mod.resolve(config_path, env=os.environ, endpoint=endpoint, models=models, require_endpoint=False)
    if not plan.endpoints:
        raise BenchError("no endpoint to check: pass --endpoint http://HOST:PORT/v1 or list endpoints in bench.yaml")
    rows = checklist(plan, env=os.environ, timeout_s=timeout)
    if as_json:
        click.echo(store.json_text([dataclasses.asdict(r) for r in rows]))
        return
    t = Table(title="bench models", title_justify="left")
    for col in ("", "endpoint", "model", "detail"):
        t.add_column(col)
    for row in rows:
        mark = Text("✓", style="green") if row.ok else Text("✗", style="red")
        t.add_row(mark, Text(row.endpoint), Text(row.model or "–"), Text(row.detail))
    out.print(t)
    checked = [r for r in rows if r.checks]
    if checked:
        c = Table(title="each model: what its runtime tells", title_justify="left")
        names = ("present", "loaded", "answers", "memory", "disk", "license")
        for col in ("model", *names):
            c.add_column(col)
        for r in checked:
            c.add_row(Text(r.model or "–"), *(Text(r.checks.get(n, "–")) for n in names))
        out.print(c)
    if not all(r.ok for r in rows):
        sys.exit(1)


@main.group("local")
def local_group() -> None:
    """The embedded llama.cpp runtime (needs: pip install -e '.[local]')."""


@local_group.command("serve")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="bench.yaml with embedded models (path: ...).")
@click.option("--models", help="Comma-separated embedded models (default: the built-in ones).")
def local_serve(config_path: Path | None, models: str | None) -> None:
    """Serve the embedded models for other clients until Ctrl-C; prints their URLs."""
    import contextlib
    import time

    from bench.runtimes import embedded

    embedded.check_runtime()
    plan = config_mod.resolve(config_path, env={}, models=models, require_endpoint=False)
    chosen = [m for m in plan.models if m.embedded]
    if not chosen:
        raise BenchError("no embedded models to serve: give models a 'path' in bench.yaml, or omit --models")
    with contextlib.ExitStack() as stack:
        _sigterm_as_interrupt()
        for m in chosen:
            err.print(Text(f"starting {m.key} …"))
            server = stack.enter_context(embedded.serve(
                m.name, m.path or "", chat_format=m.chat_format, settings=plan.embedded.settings(),
                log_dir=store.work_dir(Path("results")) / "logs"))
            facts = server.facts
            # Plain tab-separated lines, easy to read by scripts: label, URL, details.
            click.echo(f"{m.key}\t{server.base_url}\tmodel '{m.name}', loaded in {textfmt.fmt_s(facts.load_s)} s, "
                       f"{textfmt.fmt_mib(facts.rss_after_load_bytes)} resident")
            sys.stdout.flush()
        err.print("serving; press Ctrl-C to stop")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            err.print("stopping")


def _load_for_update(run_ref: str, results_dir: Path | None) -> tuple[Path, RunWriter]:
    rdir = config_mod.results_dir(results_dir)
    path = _find_run(rdir, run_ref)
    run = store.load_run(path)
    # Holds the run's lock until the process ends: a running collect or judge of it refuses us.
    return path, RunWriter(path, run, new=False, journal=False, purpose=f"bench {click.get_current_context().info_name}")


@main.command()
@click.argument("run_ref", default="latest", metavar="[RUN_ID|latest|FILE]")
@click.option("--results-dir", type=click.Path(path_type=Path))
@click.option("--prompts", type=click.Path(path_type=Path), help="Rubrics from this prompts file (matched by prompt id) instead of the run's own.")
def score(run_ref: str, results_dir: Path | None, prompts: Path | None) -> None:
    """Score a run's responses with other rubrics (scores follow a run's own rubrics on every load)."""
    path, writer = _load_for_update(run_ref, results_dir)
    with writer:  # releases the run's lock, also when the save fails
        run = writer.run
        specs = {p.id: p.rubric for p in config_mod.load_prompts_file(prompts)} if prompts else {}
        scored = store.set_rubrics(run, specs)
        rubrics = [p for p in run.workload.prompts if p.get("rubric")]
        writer.save()
    err.print(Text(f"scored {scored} responses of {run.run_id} against {len(rubrics)} rubric(s); wrote {path}"))


@main.command()
@click.argument("run_ref", default="latest", metavar="[RUN_ID|latest|FILE]")
@click.option("--results-dir", type=click.Path(path_type=Path))
def annotate(run_ref: str, results_dir: Path | None) -> None:
    """Write or extend RUN's annotation file (score each response 1-5 by hand, then bench render)."""
    from bench.quality.annotations import update_annotations

    path, writer = _load_for_update(run_ref, results_dir)
    with writer:
        ann, added, kept = update_annotations(writer.run, path)
    err.print(Text(f"{ann}: {added} new response(s) to score, {kept} kept as they were"))


@main.command()
@click.argument("run_ref", default="latest", metavar="[RUN_ID|latest|FILE]")
@click.option("--endpoint", required=True, help="OpenAI-compatible base URL of the judge.")
@click.option("--model", "judge_model", required=True, help="Judge model as that server names it (never a model of the run judging itself).")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, help="Variable holding the judge endpoint's key.")
@click.option("--results-dir", type=click.Path(path_type=Path))
@click.option("--timeout", type=float, default=120.0, show_default=True)
@click.option("--redo", is_flag=True, help="Judge again responses this judge already scored.")
def judge(run_ref: str, endpoint: str, judge_model: str, api_key_env: str, results_dir: Path | None,
          timeout: float, redo: bool) -> None:
    """Score every response of RUN with an LLM judge against the prompts' rubrics."""
    from bench.quality.judge import judge_run

    ep = config_mod.endpoint_from_url("judge", endpoint, api_key_env)
    config_mod.check_seconds("--timeout", timeout)
    path, writer = _load_for_update(run_ref, results_dir)
    with writer:
        summary = judge_run(writer, ep, judge_model, env=os.environ, timeout_s=timeout, redo=redo)
    for model in summary.skipped_self:
        err.print(Text(f"skipped {model}: a model never judges its own outputs", style="yellow"))
    err.print(Text(f"judged {summary.judged} response(s) ({summary.unparseable} unparseable verdicts, "
                   f"{summary.already} judged before); wrote {path}"))
    if summary.failed:
        raise BenchError(f"{summary.failed} request(s) to the judge failed (last: {summary.last_error}); "
                         "nothing was stored for them: run bench judge again to retry")


@main.command("diff")
@click.argument("a", required=False, metavar="[A]")
@click.argument("b", required=False, metavar="[B]")
@click.option("--results-dir", type=click.Path(path_type=Path))
@click.option("--by-prompt", is_flag=True, help="One row per prompt as well as per model.")
@click.option("--threshold", type=float, help="Relative change below which a metric is 'same' [default: 5%, per metric].")
@click.option("--cross-machine", is_flag=True, help="Compare runs made on different machines.")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "json"]), default="table", show_default=True)
@click.option("--fail-on-regression", is_flag=True, help="Exit 1 when a metric significantly worsened or a model failed.")
def diff_cmd(a: str | None, b: str | None, results_dir: Path | None, by_prompt: bool, threshold: float | None,
             cross_machine: bool, fmt: str, fail_on_regression: bool) -> None:
    """Compare two runs, results files or git revisions (default: the two latest comparable runs).

    With git revisions, each side is the latest run of each model in results/ as of that commit,
    read from git history without a checkout.
    """
    from bench.analysis import compare
    from bench.report import diff as diff_text

    rdir = config_mod.results_dir(results_dir)
    if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
        raise BenchError("--threshold must be a positive fraction, e.g. 0.05 for 5%")
    if a is None:
        a, b = compare.latest_comparable_pair(rdir, cross_machine)
    elif b is None:
        raise BenchError("give two things to compare (A B), or none for the two latest comparable runs")
    side_a, side_b = compare.resolve_side(a, rdir), compare.resolve_side(b, rdir)
    d = compare.diff(side_a, side_b, threshold=threshold, by_prompt=by_prompt, cross_machine=cross_machine,
                     history=side_b.pool)
    if not compare.comparable_models(d):
        reasons = "; ".join(sorted({f"{r.model}: {r.reason}" for r in d.rows})) or "no models in common"
        raise compare.CompareError(f"nothing comparable between {a} and {b}: {reasons}")
    if fmt == "json":
        click.echo(store.json_text(d.as_dict()))
    elif fmt == "md":
        click.echo(diff_text.diff_markdown(d), nl=False)
    else:
        from bench.report.terminal import diff_table

        for part in diff_table(d, f"{a} → {b}"):
            out.print(part)
    if fail_on_regression and d.regressions:
        err.print(Text(f"{len(d.regressions)} significant regression(s)", style="bold red"))
        sys.exit(1)
