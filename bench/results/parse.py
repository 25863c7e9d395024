"""Reading results files: strict, bounded parsing of untrusted bytes into a Run.

Two paths give the same answer: current-format files go from bytes to objects in pydantic's own
JSON parser; everything else (older formats, anything suspicious, every error) takes the checked
path, which parses with Python's json under bounds, upgrades old formats and words each problem.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import ValidationError

from bench.errors import ResultsError
from bench.results.rubric import RubricError, parse_rubric
from bench.results.rubric import score as score_rubric
from bench.results.schema import SCHEMA_VERSION, Run
from bench.results.upgrade import upgrade

# Limits for files from results/ (or from git): bigger or deeper files are refused, never read whole.
MAX_RESULTS_BYTES = 256 * 2**20  # a run of many thousands of requests is a few MB
MAX_JSON_DEPTH = 64  # bench's own files nest about 8 deep
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number (NaN and Infinity are not valid JSON)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is out of range")
    return value


def _bounded_int(text: str) -> int:
    if len(text) > 20:
        raise ValueError(f"integer {text[:24]}... is too large")
    return int(text)


def _too_deep(data: Any, limit: int) -> bool:
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def parse_json(raw: bytes, source: str) -> Any:
    """Strict, bounded JSON from an untrusted file: UTF-8, finite numbers, at most MAX_JSON_DEPTH deep."""
    if len(raw) > MAX_RESULTS_BYTES:
        raise ResultsError(f"{source}: larger than {MAX_RESULTS_BYTES // 2**20} MiB; not read (bench's limit)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ResultsError(f"{source}: not a bench results file (binary, not UTF-8 text at byte {e.start})") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{source}:{e.lineno}: corrupt results file (invalid JSON: {e.msg})") from None
    except ValueError as e:
        raise ResultsError(f"{source}: corrupt results file ({e})") from None
    except RecursionError:
        data = None
    if data is None or _too_deep(data, MAX_JSON_DEPTH):
        raise ResultsError(f"{source}: corrupt results file (nested deeper than {MAX_JSON_DEPTH} levels)")
    return data


def _check_samples(run: Run) -> str | None:
    """What is impossible in a file bench wrote (None when nothing is)."""
    models = run.models
    for i, s in enumerate(run.samples):
        if s.model not in models:
            return f"samples[{i}] names model {s.model[:80]!r}, which is not in models"
        if ((s.ttft_s or 0) < 0 or (s.e2e_s or 0) < 0 or (s.itl_s and min(s.itl_s) < 0)
                or any(a.elapsed_s < 0 for a in s.attempts)):
            return f"samples[{i}] has a negative time"
        if s.round < 0 or s.chunks < 0 or (s.completion_tokens or 0) < 0 or (s.prompt_tokens or 0) < 0:
            return f"samples[{i}] has a negative count"
    return None


def _check_run(run: Run) -> str | None:
    if not _RUN_ID.fullmatch(run.run_id):
        return "run_id may only hold letters, digits, '.', '_' and '-'"
    for i, p in enumerate(run.workload.prompts):
        if not isinstance(p.get("id"), str) or not isinstance(p.get("text"), str):
            return f"workload.prompts[{i}] needs a text 'id' and a text 'text'"
        if not isinstance(p.get("rubric"), (dict, type(None))):
            return f"workload.prompts[{i}].rubric is not an object"
    return _check_samples(run)


# The fast path takes only files that the checked path would accept as they are: the current
# format (bench writes schema_version first) and no run of 21 digits (the checked path's integer
# bound); typed floats refuse NaN and infinity in the schema itself, and the free-form parts
# (config, extra, prompts, scenarios) are walked for depth, non-finite floats and long integers.
# Anything else, and every false alarm, takes the checked path.
_CURRENT = re.compile(rb'\s*\{\s*"schema_version"\s*:\s*%d\s*,' % SCHEMA_VERSION)
_DIGITS = bytes(ord("0") if 48 <= c <= 57 else ord(" ") for c in range(256))


def _free_form_ok(values: list[Any], limit: int) -> bool:
    stack = [(v, 1) for v in values]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, float):
            if not math.isfinite(value):
                return False
        elif isinstance(value, int):
            if abs(value) >= 10**20:
                return False
        elif isinstance(value, (dict, list)):
            if depth > limit:
                return False
            stack.extend((c, depth + 1) for c in (value.values() if isinstance(value, dict) else value))
    return True


def _fast_run(raw: bytes) -> Run | None:
    """Current-format files go from bytes to objects in pydantic's own parser, three to four
    times faster than json + validation (a 1,000-run site loads half a gigabyte). None: take the
    checked path, which also words every error."""
    if not _CURRENT.match(raw, 0, 200) or b"0" * 21 in raw.translate(_DIGITS):
        return None
    try:
        run = Run.model_validate_json(raw)
    except ValueError:
        return None
    free = [run.config, run.workload.prompts, run.workload.generation, run.workload.scenario,
            *(m.extra for m in run.models.values()), *(s.scenario for s in run.samples if s.scenario)]
    if not _free_form_ok(free, MAX_JSON_DEPTH - 8) or _check_run(run):  # the free-form parts sit < 8 deep
        return None
    return run


def parse_run(raw: bytes, source: str) -> Run:
    """A Run from an untrusted file's bytes; any problem is a ResultsError naming ``source``."""
    run = _fast_run(raw) if len(raw) <= MAX_RESULTS_BYTES else None
    return score_rubrics(run) if run is not None else parse_run_checked(raw, source)


def parse_run_checked(raw: bytes, source: str) -> Run:
    """parse_run without the fast path: every check in Python, every error worded."""
    data = parse_json(raw, source)
    if not isinstance(data, dict):
        raise ResultsError(f"{source}: not a bench results file (top level is not an object)")
    data = upgrade(data, source)
    try:
        run = Run.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ResultsError(f"{source}: invalid results file at {where}: {first['msg']}") from None
    problem = _check_run(run)
    if problem:
        raise ResultsError(f"{source}: invalid results file: {problem}")
    return score_rubrics(run)


def set_rubrics(run: Run, rubrics: dict[str, dict[str, Any] | None]) -> int:
    """Replace the rubrics of the run's prompts (matched by id; the workload hash ignores rubrics)
    and score with them; returns how many responses have a score."""
    for p in run.workload.prompts:
        if p["id"] in rubrics:
            p["rubric"] = rubrics[p["id"]]
    score_rubrics(run, strict=True)
    return sum(1 for s in run.samples if s.rubric is not None)


def score_rubrics(run: Run, *, strict: bool = False) -> Run:
    """Rubric scores of every successful response, from the stored outputs and the workload's
    rubrics (like statistics: a better rubric engine re-scores history, no migration). On load a
    rubric that does not parse scores nothing (the file is untrusted, never fatal); ``strict``
    raises a ResultsError naming it instead (``bench score``)."""
    rubrics = {}
    for p in run.workload.prompts:
        if p.get("rubric"):
            try:
                rubrics[p["id"]] = parse_rubric(p["rubric"], f"rubric of prompt '{p['id']}'")
            except (RubricError, ValueError, TypeError) as e:
                if strict:
                    raise ResultsError(str(e)) from None
                continue
    for s in run.samples:
        scored = score_rubric(rubrics[s.prompt_id], s.output) if s.ok and s.prompt_id in rubrics else None
        if scored is not None or s.rubric is not None:  # (assigning a pydantic field costs; most are None)
            s.rubric = scored
    return run
