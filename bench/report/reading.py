"""Reading a long history for the site: every results file parsed, summarised and slimmed (its
samples dropped once its figures and per-prompt medians are computed), in worker processes when
there are many files, since parsing and summarising is nine tenths of a 1,000-run render and each
file is independent of the others.

Workers are started with "spawn" (a fresh interpreter: safe under `mkdocs serve`, whose threads a
fork could deadlock) and send back slim views, a few kilobytes each. A pool that cannot start or
breaks leaves the reading to this process, so the worst case is the sequential time.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from bench.analysis import digest
from bench.errors import ConfigError, ResultsError
from bench.quality import annotations
from bench.report.format import slug
from bench.report.views import RunView
from bench.results.schema import Run
from bench.results.stats import run_stats
from bench.results.store import LoadProblem, list_run_files, load_run

PARALLEL_FROM = 64  # files; below this, starting workers (about 0.6 s each) costs more than it saves
MAX_WORKERS = 8


def make_view(run: Run, manual: dict[str, int]) -> RunView:
    return RunView(run, run_stats(run), slug(run.run_id), annotations.model_quality(run, manual),
                   annotations.agreement(run, manual), manual)


def _read_slim(path: Path) -> tuple[Path, Any, list[LoadProblem]]:
    """One file: (path, (slim view, its medians) or the problem's message, annotation problems)."""
    problems = []
    try:
        run = load_run(path)
    except ResultsError as e:
        return path, str(e), problems
    try:
        manual = annotations.manual_scores(path)
    except annotations.AnnotationError as e:
        problems.append(LoadProblem(annotations.annotation_path(path), str(e)))
        manual = {}
    view = make_view(run, manual)
    view.load_levels  # noqa: B018 (computed while the samples are there)
    digest.slim(run)
    view.slim = True
    return path, (view, digest.slim_digest(run)), problems


def workers_setting() -> int | None:
    """BENCH_RENDER_WORKERS, checked; None when it is not set."""
    env = os.environ.get("BENCH_RENDER_WORKERS", "").strip()
    if not env:
        return None
    if not env.isdecimal() or not 1 <= int(env) <= MAX_WORKERS:
        raise ConfigError(f"BENCH_RENDER_WORKERS={env[:20]!r}: use a whole number from 1 to {MAX_WORKERS} "
                          "(1 reads results in this process), or unset it")
    return int(env)


def workers_for(files: int) -> int:
    """How many worker processes read ``files`` files (1: none, this process reads them)."""
    setting = workers_setting()
    if setting is not None:
        return setting
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 1 if files < PARALLEL_FROM else max(1, min(cpus, MAX_WORKERS))


def read_slim_views(results_dir: Path, workers: int | None = None
                    ) -> tuple[list[tuple[Path, RunView]], list[LoadProblem]]:
    """Every readable run of ``results_dir`` as a slim view with its path, and the problems found
    (a file that cannot be read, an annotation file that cannot), in file order."""
    paths = list_run_files(results_dir)
    workers = workers_for(len(paths)) if workers is None else workers
    results = None
    if workers > 1:
        try:
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                results = list(pool.map(_read_slim, paths, chunksize=max(1, min(32, len(paths) // (4 * workers)))))
        except (BrokenProcessPool, OSError):
            results = None  # read them here instead
    if results is None:
        results = [_read_slim(p) for p in paths]
    loaded, problems, later = [], [], []
    for path, got, annotation_problems in results:
        if isinstance(got, str):
            problems.append(LoadProblem(path, got))
            continue
        view, medians = got
        digest.adopt(view.run, medians)
        loaded.append((path, view))
        later += annotation_problems
    return loaded, problems + later
