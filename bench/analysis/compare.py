"""Diffs between runs, results files and git revisions: what changed beyond run-to-run noise.

A side of a comparison is a set of (model -> run). A run id or a file gives one run's models; a
git revision gives, for each model, its latest run in ``results/`` as of that commit (failed or
not: a model that started failing is shown failing), read from git objects without a checkout.

Per model and metric, A and B are the same statistic, the geometric mean over the prompts both
sides have of the per-prompt median, and the change is B / A - 1. Whether it is real is decided
by ``bench.analysis.noise`` (run-to-run noise from a prior, earlier comparable runs and
sessions; Holm across models; a practical threshold per metric):

* clear and |change| >= threshold                      -> improved / worsened
* the 95% interval within ±threshold, or clear but small -> same
* otherwise: "not significant", or "too few runs" when no run-to-run noise was measured
  (the prior decided)
* different workload, prompt-cache mode, runtime settings, or machine unless allowed
                                                        -> not comparable (never diffed)
* no successful request in B (A had some) -> failed; the reverse -> fixed; absent from B -> missing
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from bench.analysis import digest, noise, quality_diff, scoring
from bench.errors import BenchError
from bench.results.machines import same_machine
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
    pool: list[Run] = field(default_factory=list)  # the runs it was chosen among (run-to-run noise)

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
    p: float | None = None  # two-sided, before Holm
    noise_sd: float | None = None  # run-to-run sd of the log statistic used
    basis: str | None = None  # where that noise came from
    threshold: float | None = None  # the practical threshold applied


@dataclass
class Diff:
    a: str
    b: str
    a_runs: list[str]
    b_runs: list[str]
    threshold: float
    rows: list[Row]
    ranking: dict[str, Any] = field(default_factory=dict)
    hints: list[str] = field(default_factory=list)  # how many sessions would detect a change here

    @property
    def regressions(self) -> list[Row]:
        return [r for r in self.rows if r.status in ("worsened", "failed")]

    def as_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "a_runs": self.a_runs, "b_runs": self.b_runs,
                "threshold": self.threshold, "rows": [asdict(r) for r in self.rows], "ranking": self.ranking,
                "hints": self.hints, "method": METHOD}


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
    """Each model's latest run, whatever its outcome: a model that now fails is shown failing."""
    out: dict[str, Run] = {}
    for run in runs:  # oldest first: later runs replace earlier ones
        for model in run.models:
            out[model] = run
    return out


def resolve_side(ref: str, results_dir: Path) -> Side:
    """A run id, a results file or a git revision. ``pool``: the runs of results_dir (as of the
    revision, for a revision), from which earlier comparable runs give run-to-run noise."""
    path = Path(ref)
    if path.suffix == ".json" and path.is_file():
        run = load_run(path)
        return Side(ref, {m: run for m in run.models}, _pool(results_dir))
    try:
        run = load_run(find_run(results_dir, ref))
        return Side(ref, {m: run for m in run.models}, _pool(results_dir))
    except BenchError as e:
        if "matches" in str(e):
            raise
    if _is_revision(ref, results_dir if results_dir.exists() else Path.cwd()):
        runs = runs_at_revision(ref, results_dir)
        return Side(ref, _latest_per_model(runs), runs)
    raise CompareError(f"'{ref}' is neither a results file, a run id in {results_dir}, nor a git revision")


def _pool(results_dir: Path) -> list[Run]:
    return load_all(results_dir)[0] if results_dir.is_dir() else []


def latest_comparable_pair(results_dir: Path, cross_machine: bool = False) -> tuple[str, str]:
    runs, _ = load_all(results_dir)
    if len(runs) < 2:
        raise CompareError(f"{results_dir} has {len(runs)} readable run(s); diff needs two (or name A and B)")
    b = runs[-1]
    for a in reversed(runs[:-1]):
        if a.workload.hash == b.workload.hash and (cross_machine or same_machine(a.machine, b.machine) is None):
            return a.run_id, b.run_id
    raise CompareError(
        f"no earlier run is comparable with the latest ({b.run_id}, workload {b.workload.hash}"
        f"{'' if cross_machine else ', same machine'}); name two runs, or pass --cross-machine")


# ----------------------------------------------------------------------------- statistics

METHOD = ("A and B: the geometric mean over the prompts both have of each prompt's median; change: B / A - 1. "
          "Its 95% interval and p come from run-to-run noise (a 5% prior, earlier comparable runs of this "
          "machine, and sessions, as each row says); a change counts when it is clear after Holm's correction "
          "across models (family-wise 5%) and at least the threshold.")


_by_prompt = digest.by_prompt


def _sessions(samples: list[Sample], fn: Callable[[Sample], float | None], prompts: list[str]) -> list[float]:
    """The log statistic of each session that has every prompt (one value per session)."""
    groups: dict[int, list[Sample]] = {}
    for s in samples:
        groups.setdefault(int(getattr(s, "session", 0) or 0), []).append(s)
    out = []
    for group in groups.values():
        by = _by_prompt(group, fn)
        if all(p in by for p in prompts):
            out.append(noise.log_stat(by, prompts))
    return out


@dataclass
class _Cell:
    """One model × metric (× prompt) comparison before Holm's correction."""

    row: Row
    d: float
    var_d: float
    noise: noise.Noise
    family: tuple[str, str | None]
    within: float = math.inf  # request-level variance of the log statistic (the larger side's)
    rounds: int = 0  # requests per prompt (the fewer side's)


def classify(change: float, ci: tuple[float, float], higher_better: bool, threshold: float, clear: bool,
             prior_decides: bool = False) -> str:
    if clear and abs(change) >= threshold:
        better = change > 0 if higher_better else change < 0
        return "improved" if better else "worsened"
    if -threshold < ci[0] and ci[1] < threshold:
        return "same"  # the whole interval is within the threshold: equivalent
    if clear:
        return "same"  # real but smaller than the threshold
    return "too few runs" if prior_decides and math.isfinite(ci[0]) else "not significant"


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
    differ = None if cross_machine else same_machine(ra.machine, rb.machine)
    if differ:
        return f"{differ} (pass --cross-machine to compare anyway)"
    return _settings_differ(ra, rb, model)


def diff(a: Side, b: Side, *, threshold: float | None = None, by_prompt: bool = False, cross_machine: bool = False,
         seed: int = 0, history: list[Run] | None = None, prior: float = noise.PRIOR_RUN_NOISE) -> Diff:
    """``threshold``: the practical threshold for every metric (default: each metric's own);
    ``history``: runs to take run-to-run noise from (those before B that are comparable with it)."""
    rows: list[Row] = []
    cells: list[_Cell] = []
    for model in [m for m in b.runs if m in a.runs] + [m for m in a.runs if m not in b.runs]:
        head = _model_row(a, b, model, cross_machine)
        if head is not None:
            rows.append(head)
            continue
        earlier = _history(history or [], a.runs[model], b.runs[model], model, cross_machine)
        for m in compared():
            cells += _metric_cells(a, b, model, m, earlier, by_prompt, threshold, seed, prior)
    rows += [Row(m, "*", None, "new", reason=f"not in {a.label}") for m in b.runs if m not in a.runs]
    _decide(cells)
    diffed = list(dict.fromkeys(c.row.model for c in cells))
    rows = [c.row for c in cells] + quality_diff.rows(diffed, a, b, Row) + rows
    order = {m: i for i, m in enumerate(list(b.runs) + list(a.runs))}
    rows.sort(key=lambda r: order.get(r.model, 0))
    return Diff(a.label, b.label, sorted({r.run_id for r in a.runs.values()}),
                sorted({r.run_id for r in b.runs.values()}), threshold or 0.05, rows, _ranking_change(a, b),
                _hints(cells))


def _model_row(a: Side, b: Side, model: str, cross_machine: bool) -> Row | None:
    """The one row of a model that cannot be diffed metric by metric (None: it can)."""
    if model not in b.runs:
        return Row(model, "*", None, "missing", reason=f"not in {b.label}")
    reason = _comparable(a.runs[model], b.runs[model], cross_machine, model)
    if reason:
        return Row(model, "*", None, "not comparable", reason=reason)
    sa, sb = a.samples(model), b.samples(model)
    ok_a, ok_b = sum(s.ok for s in sa), sum(s.ok for s in sb)
    if ok_a and ok_b:
        return None
    if ok_a:
        return Row(model, "*", None, "failed", n_a=ok_a, n_b=0, reason=f"no successful request in {b.label}")
    if ok_b:
        return Row(model, "*", None, "fixed", n_a=0, n_b=ok_b, reason=f"no successful request in {a.label}")
    return Row(model, "*", None, "not comparable", reason="no successful request on either side")


def _history(runs: list[Run], ra: Run, rb: Run, model: str, cross_machine: bool, keep: int = 20) -> list[Run]:
    """Up to ``keep`` latest runs before B, other than B, comparable with B, in which the model ran."""
    out = [r for r in runs if r.run_id < rb.run_id and r.run_id != rb.run_id and model in r.models
           and _comparable(r, rb, cross_machine, model) is None]
    if ra.run_id < rb.run_id and all(r.run_id != ra.run_id for r in out) and model in ra.models:
        out.append(ra)  # A is itself an earlier run, even when it came from a file
    return sorted(out, key=lambda r: r.run_id)[-keep:]


def _metric_cells(a: Side, b: Side, model: str, m: Metric, earlier: list[Run], by_prompt: bool,
                  threshold: float | None, seed: int, prior: float) -> list[_Cell]:
    sa, sb = a.samples(model), b.samples(model)
    da, db = _by_prompt(sa, m.value), _by_prompt(sb, m.value)
    common = sorted(set(da) & set(db))
    if not common:
        return []
    same_run = a.runs[model].run_id == b.runs[model].run_id
    groups = [common] + ([[p] for p in common] if by_prompt else [])
    cells = []
    for i, prompts in enumerate(groups):
        within = max(noise.within_var(da, prompts, seed=seed), noise.within_var(db, prompts, seed=seed))
        past = []
        for run in earlier:
            medians = digest.prompt_medians(run, model, m)
            if all(p in medians for p in prompts):
                past.append(digest.log_stat(medians, prompts))
        ses_a, ses_b = _sessions(sa, m.value, prompts), _sessions(sb, m.value, prompts)
        nz = noise.pooled(within, past, [ses_a, ses_b], prior)
        la, lb = noise.log_stat(da, prompts), noise.log_stat(db, prompts)
        d = 0.0 if same_run else lb - la
        var_d = 0.0 if same_run else (math.inf if not math.isfinite(within) else
                                      nz.var * (1 / max(1, len(ses_a)) + 1 / max(1, len(ses_b))))
        limit = threshold or m.min_change
        row = Row(model, m.id, prompts[0] if i else None, "",
                  a=math.exp(la), b=math.exp(lb), change=math.expm1(d), ci=noise.interval(d, var_d),
                  n_a=sum(len(da[p]) for p in prompts), n_b=sum(len(db[p]) for p in prompts),
                  p=noise.p_value(d, var_d), noise_sd=nz.sd, basis=nz.basis, threshold=limit)
        rounds = min(min(len(da[p]) // max(1, len(ses_a)) for p in prompts),
                     min(len(db[p]) // max(1, len(ses_b)) for p in prompts))
        cells.append(_Cell(row, d, var_d, nz, (model, row.prompt), within, rounds))
    return cells


def _decide(cells: list[_Cell]) -> None:
    """Holm across families (a model, or a model's prompt): a family is tested at its min p; its
    metrics count as clear at the level its family was rejected at."""
    for scope in ({c.family for c in cells if c.family[1] is None}, {c.family for c in cells if c.family[1]}):
        fams = sorted(scope, key=lambda f: min(c.row.p for c in cells if c.family == f))
        level = {}
        for rank, f in enumerate(fams):
            alpha = noise.ALPHA / (len(fams) - rank)
            if min(c.row.p for c in cells if c.family == f) > alpha:
                break
            level[f] = alpha
        for c in cells:
            if c.family in scope:
                clear = c.family in level and c.row.p <= level[c.family]
                m = METRICS[c.row.metric]
                c.row.status = classify(c.row.change, c.row.ci, m.higher_is_better, c.row.threshold, clear,
                                        c.noise.prior_decides)


def _hints(cells: list[_Cell]) -> list[str]:
    """Per model: the noise seen, and the rounds or sessions that would detect its threshold and 10%."""
    out = []
    families = len({c.family for c in cells if c.family[1] is None})
    for model in dict.fromkeys(c.row.model for c in cells if c.family[1] is None):
        mine = [c for c in cells if c.row.model == model and c.family[1] is None and math.isfinite(c.noise.var)]
        if not mine:
            continue
        worst = max(mine, key=lambda c: c.noise.var)
        ways = []
        for change in dict.fromkeys([worst.row.threshold, 0.10]):
            r = noise.rounds_needed(worst.noise, worst.within, worst.rounds, change, families)
            s = noise.sessions_needed(worst.noise, change, families)
            how = [f"≥ {r} rounds (--rounds {r})"] if r is not None and r <= 10 * max(1, s or 1) else []
            how += [f"≥ {s} sessions (--sessions {s})"] if s is not None else []
            ways.append(f"a {change * 100:g}% change needs {' or '.join(how)}")
        requests = math.sqrt(worst.within) * 100 if math.isfinite(worst.within) else math.nan
        out.append(f"{model}: noise ±{worst.noise.sd * 100:.1f}% per run in {METRICS[worst.row.metric].label} "
                   f"(from {worst.noise.basis}; the requests' own spread: ±{requests:.1f}% at {worst.rounds} rounds); "
                   f"to be seen 80% of the time, {'; '.join(ways)}.")
    return out


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
        if r.workload.hash == run.workload.hash and same_machine(r.machine, run.machine) is None:
            return r
    return None


__all__ = ["Diff", "Row", "Side", "diff", "resolve_side", "latest_comparable_pair"]
