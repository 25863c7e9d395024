"""Diffs between runs, results files and git revisions, with significance from raw samples.

A side of a comparison is a set of (model -> samples). A run id or a file gives one run's
models; a git revision gives, for each model, its latest run in ``results/`` as of that commit,
read from git objects without a checkout.

For each model and metric the change is the geometric mean over prompts of the ratio of medians
(B / A) minus one, so prompts with long and short answers weigh the same. A 95% bootstrap
confidence interval (requests resampled within each prompt, seeded) decides significance:

* |change| >= threshold (default 5%) and the interval excludes 0 -> improved / worsened
  (direction-aware: lower latency is better, higher tokens/s is better)
* the interval lies within ±threshold, or it excludes 0 but |change| < threshold -> same
* otherwise (the interval is too wide to tell)          -> not significant
* different workload hash, or machine unless allowed   -> not comparable (never diffed)
* no successful request on one side                    -> failed / fixed
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from bench.analysis import scoring
from bench.errors import BenchError
from bench.results.metrics import Metric, compared
from bench.results.schema import Run, Sample
from bench.results.store import (
    MAX_RESULTS_BYTES,
    find_run,
    load_all,
    load_run,
    parse_run,
)
from bench.util.git import NOT_INSTALLED, git, installed


class _Compared(Mapping[str, Metric]):
    """The registry's compared metrics, read live (a metric registered later is diffed too)."""

    def __getitem__(self, key: str) -> Metric:
        return {m.id: m for m in compared()}[key]

    def __iter__(self) -> Iterator[str]:
        return iter([m.id for m in compared()])

    def __len__(self) -> int:
        return len(compared())


METRICS: Mapping[str, Metric] = _Compared()


class CompareError(BenchError):
    exit_code = 2


@dataclass
class Side:
    label: str  # what the user named
    runs: dict[str, Run]  # model -> the run its samples come from

    def samples(self, model: str) -> list[Sample]:
        run = self.runs[model]
        return [s for s in run.samples if s.model == model and not s.warmup]


@dataclass
class Row:
    model: str
    metric: str
    prompt: str | None
    status: str
    a: float | None = None  # median on side A
    b: float | None = None
    change: float | None = None  # relative, B vs A
    ci: tuple[float, float] | None = None
    n_a: int = 0
    n_b: int = 0
    reason: str | None = None


@dataclass
class Diff:
    a: str
    b: str
    a_runs: list[str]
    b_runs: list[str]
    threshold: float
    rows: list[Row]
    ranking: dict[str, Any] = field(default_factory=dict)

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.status in ("worsened", "failed")]

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "a_runs": self.a_runs, "b_runs": self.b_runs,
                "threshold": self.threshold, "rows": [asdict(r) for r in self.rows], "ranking": self.ranking}


# ----------------------------------------------------------------------------- resolving sides


def _git(args: list[str], cwd: Path, text: bool = True) -> subprocess.CompletedProcess:
    done = git(args, cwd, text=text)
    if done is None:
        raise CompareError(f"{NOT_INSTALLED}: install git to diff commits, or pass run ids or results files")
    return done


def _is_revision(ref: str, cwd: Path) -> bool:
    if not installed(cwd):
        raise CompareError(f"'{ref}' is not a run id or a results file, and {NOT_INSTALLED} to read it as a "
                           "revision: install git, or pass run ids or results files")
    return _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd).returncode == 0


def runs_at_revision(rev: str, results_dir: Path) -> list[Run]:
    """Every readable run in results_dir as of a git revision (no checkout)."""
    results_dir = results_dir.resolve()
    top = _git(["rev-parse", "--show-toplevel"], results_dir if results_dir.exists() else Path.cwd())
    if top.returncode != 0:
        raise CompareError(f"'{rev}' is not a run id or a file, and {results_dir} is not inside a git repository")
    root = Path(top.stdout.strip())
    try:
        rel = results_dir.relative_to(root).as_posix()
    except ValueError:
        raise CompareError(f"{results_dir} is outside the git repository at {root}") from None
    listing = _git(["ls-tree", "-r", "-l", rev, "--", rel], root)
    files = []
    for line in listing.stdout.splitlines():  # "<mode> blob <sha> <size>\t<path>"
        meta, _, name = line.partition("\t")
        mode, _, _, size = (meta.split() + ["", "", "", ""])[:4]
        if name.endswith(".json") and mode in ("100644", "100755") and size.isdigit():
            files.append((name, int(size)))
    if not files:
        raise CompareError(f"revision {rev} has no results under {rel}/: pick a commit that has runs")
    runs = []
    for f, size in files:
        if size > MAX_RESULTS_BYTES:
            continue  # refused unread, like a file on disk
        blob = _git(["show", f"{rev}:{f}"], root, text=False)
        try:
            runs.append(parse_run(blob.stdout, f"{rev}:{f}"))
        except BenchError:
            continue  # an unreadable file at that revision is skipped, like render does
    if not runs:
        raise CompareError(f"revision {rev} has results under {rel}/ but none could be read")
    return sorted(runs, key=lambda r: r.run_id)


def _latest_per_model(runs: list[Run]) -> dict[str, Run]:
    out: dict[str, Run] = {}
    for run in runs:  # oldest first: later runs replace earlier ones
        for model in run.models:
            if any(s.model == model and s.ok and not s.warmup for s in run.samples) or model not in out:
                out[model] = run
    return out


def resolve_side(ref: str, results_dir: Path) -> Side:
    path = Path(ref)
    if path.suffix == ".json" and path.is_file():
        run = load_run(path)
        return Side(ref, {m: run for m in run.models})
    try:
        run = load_run(find_run(results_dir, ref))
        return Side(ref, {m: run for m in run.models})
    except BenchError as e:
        if "matches" in str(e):
            raise
    if _is_revision(ref, results_dir if results_dir.exists() else Path.cwd()):
        return Side(ref, _latest_per_model(runs_at_revision(ref, results_dir)))
    raise CompareError(f"'{ref}' is neither a results file, a run id in {results_dir}, nor a git revision")


def latest_comparable_pair(results_dir: Path, cross_machine: bool = False) -> tuple[str, str]:
    runs, _ = load_all(results_dir)
    if len(runs) < 2:
        raise CompareError(f"{results_dir} has {len(runs)} readable run(s); diff needs two (or name A and B)")
    b = runs[-1]
    for a in reversed(runs[:-1]):
        if a.workload.hash == b.workload.hash and (cross_machine or a.machine.hostname_hash == b.machine.hostname_hash):
            return a.run_id, b.run_id
    raise CompareError(
        f"no earlier run is comparable with the latest ({b.run_id}, workload {b.workload.hash}"
        f"{'' if cross_machine else ', same machine'}); name two runs, or pass --cross-machine")


# ----------------------------------------------------------------------------- statistics


def _by_prompt(samples: list[Sample], fn: Callable[[Sample], float | None]) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {}
    for s in samples:
        if s.ok:
            v = fn(s)
            if v is not None and np.isfinite(v) and v > 0:
                out.setdefault(s.prompt_id, []).append(v)
    return {k: np.asarray(v) for k, v in out.items()}


def relative_change(a: dict[str, np.ndarray], b: dict[str, np.ndarray], *, n_boot: int = 2000,
                    seed: int = 0) -> tuple[float, tuple[float, float]] | None:
    """Geometric mean over common prompts of median(B)/median(A) - 1, with a 95% bootstrap CI."""
    prompts = sorted(set(a) & set(b))
    if not prompts:
        return None
    point = np.mean([np.log(np.median(b[p]) / np.median(a[p])) for p in prompts])
    if min(min(len(a[p]), len(b[p])) for p in prompts) < MIN_SAMPLES:
        # A resample of one value is that value: the interval would have zero width and any
        # noise would look significant. Too few requests: the data cannot tell.
        return float(np.expm1(point)), (-math.inf, math.inf)
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for p in prompts:
        ra = a[p][rng.integers(0, len(a[p]), size=(n_boot, len(a[p])))]
        rb = b[p][rng.integers(0, len(b[p]), size=(n_boot, len(b[p])))]
        boot += np.log(np.median(rb, axis=1) / np.median(ra, axis=1))
    boot /= len(prompts)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(np.expm1(point)), (float(np.expm1(lo)), float(np.expm1(hi)))


MIN_SAMPLES = 3  # successful requests per prompt and side needed for a confidence interval


def classify(change: float, ci: tuple[float, float], higher_better: bool, threshold: float) -> str:
    significant = not (ci[0] <= 0 <= ci[1])
    if abs(change) >= threshold and significant:
        better = change > 0 if higher_better else change < 0
        return "improved" if better else "worsened"
    if -threshold < ci[0] and ci[1] < threshold:
        return "same"  # the whole interval is within the threshold: equivalent
    if abs(change) < threshold and significant:
        return "same"  # real but smaller than the threshold
    return "not significant"  # the data cannot tell


# ----------------------------------------------------------------------------- the diff


# Runtime settings that do not shape performance (or only describe it) are not compared.
_NOT_SETTINGS = {"extra_bufts_reason", "llama_cpp_python", "cpu_features"}


def _settings_differ(ra: Run, rb: Run, model: str) -> str | None:
    def shaping(run: Run) -> dict[str, Any] | None:
        info = run.models.get(model)
        got = info.extra.get("runtime_settings") if info is not None else None
        return {k: v for k, v in got.items() if k not in _NOT_SETTINGS} if isinstance(got, dict) else None

    a, b = shaping(ra), shaping(rb)
    if a is None or b is None or a == b:
        return None
    changed = ", ".join(f"{k} {a.get(k)} → {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))
    return f"different runtime settings ({changed})"


def _comparable(ra: Run, rb: Run, cross_machine: bool, model: str = "") -> str | None:
    ca, cb = ra.workload.prompt_cache, rb.workload.prompt_cache
    if ca != cb:
        why = " (recorded before bench kept measured prompts cold)" if "unknown" in (ca, cb) else ""
        return f"different prompt-cache modes ({ca} vs {cb}{why}): TTFT would not measure the same thing"
    if ra.workload.hash != rb.workload.hash:
        return f"different workloads ({ra.workload.hash} vs {rb.workload.hash}: prompts or generation params differ)"
    if not cross_machine and ra.machine.hostname_hash != rb.machine.hostname_hash:
        return "different machines (pass --cross-machine to compare anyway)"
    return _settings_differ(ra, rb, model)


def diff(a: Side, b: Side, *, threshold: float = 0.05, by_prompt: bool = False, cross_machine: bool = False,
         seed: int = 0) -> Diff:
    rows: list[Row] = []
    models = [m for m in b.runs if m in a.runs] + [m for m in a.runs if m not in b.runs]
    for model in models:
        if model not in b.runs:
            rows.append(Row(model, "*", None, "not comparable", reason=f"not in {b.label}"))
            continue
        reason = _comparable(a.runs[model], b.runs[model], cross_machine, model)
        if reason:
            rows.append(Row(model, "*", None, "not comparable", reason=reason))
            continue
        sa, sb = a.samples(model), b.samples(model)
        ok_a, ok_b = any(s.ok for s in sa), any(s.ok for s in sb)
        if not ok_a or not ok_b:
            if ok_a or ok_b:
                status = "failed" if ok_a else "fixed"
                rows.append(Row(model, "*", None, status, n_a=sum(s.ok for s in sa), n_b=sum(s.ok for s in sb),
                                reason="no successful request in " + (b.label if ok_a else a.label)))
            else:
                rows.append(Row(model, "*", None, "not comparable", reason="no successful request on either side"))
            continue
        prompts: list[str | None] = [None]
        if by_prompt:
            prompts += sorted({s.prompt_id for s in sb} & {s.prompt_id for s in sa})
        for m in compared():
            metric, higher = m.id, m.higher_is_better
            da, db = _by_prompt(sa, m.value), _by_prompt(sb, m.value)
            for p in prompts:
                pa = da if p is None else {k: v for k, v in da.items() if k == p}
                pb = db if p is None else {k: v for k, v in db.items() if k == p}
                result = relative_change(pa, pb, seed=seed)
                if result is None:
                    continue
                change, ci = result
                if a.runs[model].run_id == b.runs[model].run_id:
                    change, ci = 0.0, (0.0, 0.0)  # the very same samples: no resampling noise to invent
                rows.append(Row(
                    model, metric, p, classify(change, ci, higher, threshold),
                    a=float(np.median(np.concatenate(list(pa.values())))),
                    b=float(np.median(np.concatenate(list(pb.values())))),
                    change=change, ci=ci, n_a=sum(len(v) for v in pa.values()), n_b=sum(len(v) for v in pb.values()),
                ))
    return Diff(a.label, b.label, sorted({r.run_id for r in a.runs.values()}),
                sorted({r.run_id for r in b.runs.values()}), threshold, rows, _ranking_change(a, b))


def _ranking_change(a: Side, b: Side) -> dict[str, Any]:
    """Top pick per shipped profile on each side (from each side's latest run)."""
    out: dict[str, Any] = {}
    if not a.runs or not b.runs:
        return out
    ra, rb = max(a.runs.values(), key=lambda r: r.run_id), max(b.runs.values(), key=lambda r: r.run_id)
    from bench.quality.annotations import model_quality

    def qual(run: Run) -> dict[str, tuple[float, tuple[str, ...]]]:
        return {k: (q.combined, q.sources) for k, q in model_quality(run).items() if q.combined is not None}

    ca, cb = scoring.candidates(ra, qual(ra)), scoring.candidates(rb, qual(rb))
    for name, profile in scoring.DEFAULT_PROFILES.items():
        ta = scoring.rank(ca, name, profile, perturbations=0).top
        tb = scoring.rank(cb, name, profile, perturbations=0).top
        out[name] = {"a": ta.model if ta else None, "b": tb.model if tb else None}
    return out


def comparable_models(d: Diff) -> int:
    return len({r.model for r in d.rows if r.status != "not comparable"})


def previous_comparable(runs: list[Run], run: Run) -> Run | None:
    for r in reversed([x for x in runs if x.run_id < run.run_id]):
        if r.workload.hash == run.workload.hash and r.machine.hostname_hash == run.machine.hostname_hash:
            return r
    return None


__all__ = ["Diff", "Row", "Side", "diff", "resolve_side", "latest_comparable_pair"]
