"""Results files on disk: ids, atomic writes, loading with version checks and upgrades."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import secrets
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bench.errors import ResultsError
from bench.results.rubric import RubricError, parse_rubric
from bench.results.rubric import score as score_rubric
from bench.results.schema import (
    SEQUENTIAL,
    EndpointInfo,
    ModelInfo,
    Run,
    Sample,
    Workload,
)
from bench.results.upgrade import upgrade


def new_run_id(now: datetime | None = None) -> str:
    """Unique and sortable by time: 20261122T021631.123Z-3fa9c2."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)




def workload(prompts: list[dict[str, Any]], generation: dict[str, Any], prompt_cache: str = "cold",
             scenario: dict[str, Any] | None = None) -> Workload:
    """Runs are comparable when prompts, generation params, the prompt-cache mode and the scenario
    are identical (rounds may differ). The sequential matrix is left out of the hash, so its runs
    keep the hash they had before scenarios existed."""
    scenario = dict(scenario or SEQUENTIAL)
    canon = json.dumps(
        {"prompts": [{"id": p["id"], "text": p["text"]} for p in prompts], "generation": generation,
         "prompt_cache": prompt_cache, **({"scenario": scenario} if scenario != SEQUENTIAL else {})},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return Workload(
        hash=hashlib.sha256(canon.encode()).hexdigest()[:16], prompts=prompts, generation=generation,
        prompt_cache=prompt_cache, scenario=scenario,
    )


def run_path(results_dir: Path, run_id: str) -> Path:
    return results_dir / f"{run_id}.json"


def ensure_writable(results_dir: Path) -> None:
    if results_dir.exists() and not results_dir.is_dir():
        raise ResultsError(f"{results_dir} is a file, not a folder: pass --results-dir DIR or set "
                           "BENCH_RESULTS_DIR to a folder for run files")
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=results_dir, prefix=".probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ResultsError(
            f"results directory {results_dir} is not writable ({e.strerror}): "
            "pass --results-dir DIR or set BENCH_RESULTS_DIR to a writable folder"
        ) from None


def atomic_write(path: Path, text: str, *, exclusive: bool = False) -> None:
    """Write via a temp file and rename (fsynced); ``exclusive`` refuses to replace an existing file.

    Either the whole new text is in ``path`` or its old content is (no temp file is left); a
    failed write (a full disk, say) raises :class:`WriteError`.
    """
    existed = path.exists()
    try:
        _write_then_rename(path, text, exclusive)
    except OSError as e:
        raise WriteError(path, e, existed) from None


def _file_mode() -> int:
    """The mode a plain open() would give a new file: 0666 less the umask (mkstemp gives 0600,
    which would hide results from teammates sharing a checkout)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def _write_then_rename(path: Path, text: str, exclusive: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            # link() fails if the target exists: a run file is never overwritten by a new run.
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise ResultsError(f"{path} already exists; refusing to overwrite a run file") from None
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def run_text(run: Run) -> str:
    """A run file's text (never NaN or Infinity, which are not JSON)."""
    try:
        return json.dumps(run.model_dump(mode="json"), indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    except ValueError:
        raise ResultsError(f"run {run.run_id}: refusing to write NaN or Infinity into a results file (a bug in "
                           "bench: please report it); the file was left as it was") from None


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_text(data: Any, indent: int | None = 2) -> str:
    """JSON that bench prints or exports: valid everywhere (non-finite numbers become null)."""
    return json.dumps(finite(data), indent=indent, ensure_ascii=False, allow_nan=False)


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class WriteError(ResultsError):
    """A file could not be written. ``reason`` and ``advice`` are short phrases for other messages."""

    def __init__(self, path: Path, err: OSError, existed: bool):
        full = err.errno in _DISK_FULL
        self.reason = f"disk full ({err.strerror})" if full else f"cannot write ({err.strerror or err})"
        self.advice = "free space on that disk" if full else "check that disk and the folder's permissions"
        kept = "it keeps its previous content" if existed else "it was not created"
        super().__init__(f"{self.reason}: could not write {path}; {kept}; {self.advice}, then run the command again")


def unsaved_message(path: Path, run_id: str, err: WriteError, existed: bool) -> str:
    """What a failed run-file save lost, and what the file on disk still holds."""
    if not existed:
        return f"{err.reason}: could not create {path}; nothing was measured yet. {err.advice.capitalize()}, then run again"
    try:
        kept = load_run(path)
        n = sum(1 for s in kept.samples if not s.warmup)
        held = f"{n} measured request{'s' if n != 1 else ''}" + (
            f" and {len(kept.judgements)} verdict(s)" if kept.judgements else "")
    except ResultsError:
        held = "its last complete save"
    return (f"{err.reason}: could not save {path}. It still holds {held}, as last saved; only the result being "
            f"saved now is missing, and running again redoes it. {err.advice.capitalize()}, then run the "
            f"command again (a collect run continues with: bench collect --resume {run_id})")


# ----------------------------------------------------------------------------- loading

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
    for i, s in enumerate(run.samples):
        if s.model not in run.models:
            return f"samples[{i}] names model {s.model[:80]!r}, which is not in models"
        times = [s.ttft_s, s.e2e_s, *s.itl_s, *(a.elapsed_s for a in s.attempts)]
        if any(t is not None and t < 0 for t in times):
            return f"samples[{i}] has a negative time"
        if any(n is not None and n < 0 for n in (s.round, s.chunks, s.completion_tokens, s.prompt_tokens)):
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


def parse_run(raw: bytes, source: str) -> Run:
    """A Run from an untrusted file's bytes; any problem is a ResultsError naming ``source``."""
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
        s.rubric = score_rubric(rubrics[s.prompt_id], s.output) if s.ok and s.prompt_id in rubrics else None
    return run


def read_bounded(path: Path, limit: int = MAX_RESULTS_BYTES) -> bytes:
    """A regular file's bytes, refusing (ResultsError) anything bigger than ``limit``."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ResultsError(f"{path}: not a regular file")
        if st.st_size > limit:
            raise ResultsError(f"{path}: larger than {limit // 2**20} MiB; not read (bench's limit)")
        with open(path, "rb") as f:
            return f.read(limit + 1)
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except OSError as e:
        raise ResultsError(f"{path}: cannot read it ({e.strerror})") from None


# ----------------------------------------------------------------------------- journals (read side)
# bench.results.journal writes them; a run a crash left unfolded is completed from its journal on load.

WORK_DIR = ".bench"
MAX_RECORD = 64 << 20  # a longer journal line is not one bench wrote


def work_dir(results_dir: Path) -> Path:
    """bench's git-ignored working folder beside results/: journals, locks, server logs."""
    return results_dir.resolve().parent / WORK_DIR


def journal_path(run_file: Path) -> Path:
    return work_dir(run_file.parent) / "journals" / f"{run_file.stem}.jsonl"


def read_records(path: Path) -> list[dict[str, Any]]:
    """A journal's records; a torn last line (a crash mid-write) and anything odd are skipped."""
    if path.is_symlink() or not path.is_file():
        return []
    records = []
    with open(path, "rb") as f:
        for line in f:
            if len(line) > MAX_RECORD or not line.endswith(b"\n"):
                continue
            try:
                rec = parse_json(line, str(path))
            except ResultsError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
    return records


def apply(run: Run, records: list[dict[str, Any]]) -> Run:
    """Fold journal records into a run (in memory). Records that do not validate are skipped."""
    for rec in records:
        try:
            if "sample" in rec:
                run.samples.append(Sample.model_validate(rec["sample"]))
            elif isinstance(rec.get("state"), dict):
                _apply_state(run, rec["state"])
        except (ValidationError, TypeError, ValueError):
            continue
    return run


def _apply_state(run: Run, state: dict[str, Any]) -> None:
    models = {k: ModelInfo.model_validate(v) for k, v in (state.get("models") or {}).items()}
    endpoints = [EndpointInfo.model_validate(e) for e in state.get("endpoints") or []]
    run.models.update(models)
    if endpoints:
        run.endpoints = endpoints
    if state.get("status") in ("running", "complete", "partial", "interrupted"):
        run.status = state["status"]
    if isinstance(state.get("ended_at"), str):
        run.ended_at = state["ended_at"]


def load_run(path: Path) -> Run:
    if path.is_symlink():
        raise ResultsError(f"{path}: a symlink; bench does not follow symlinks to results files "
                           "(pass the file it points to)")
    run = parse_run(read_bounded(path), str(path))
    records = read_records(journal_path(path))  # a run a crash left unfolded: its journal has the rest
    return score_rubrics(apply(run, records)) if records else run


@dataclass(frozen=True)
class LoadProblem:
    path: Path
    message: str


def list_run_files(results_dir: Path) -> list[Path]:
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.glob("*.json") if not p.name.startswith("."))


def _load_each(results_dir: Path) -> tuple[list[tuple[Path, Run]], list[LoadProblem]]:
    loaded, problems = [], []
    for p in list_run_files(results_dir):
        try:
            loaded.append((p, load_run(p)))
        except ResultsError as e:
            problems.append(LoadProblem(p, str(e)))
    return loaded, problems


def load_all(results_dir: Path) -> tuple[list[Run], list[LoadProblem]]:
    """Every readable run, oldest first, plus a problem per file that could not be read."""
    loaded, problems = _load_each(results_dir)
    return sorted((run for _, run in loaded), key=lambda r: r.run_id), problems


def _started(run: Run) -> datetime:
    try:
        t = datetime.fromisoformat(run.started_at.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def latest_run(results_dir: Path, problems: list[LoadProblem] | None = None) -> Path:
    """The newest readable run by its recorded start time (ties: the larger run id); files that
    cannot be read are skipped and added to ``problems``."""
    loaded, skipped = _load_each(results_dir)
    if problems is not None:
        problems.extend(skipped)
    if not loaded:
        why = f" ({len(skipped)} file(s) could not be read)" if skipped else ""
        raise ResultsError(f"no readable results in {results_dir}{why}: run `bench collect` first")
    return max(loaded, key=lambda pr: (_started(pr[1]), pr[1].run_id))[0]


def find_run(results_dir: Path, ref: str, problems: list[LoadProblem] | None = None) -> Path:
    """A run id, 'latest', a unique id prefix, or a path to a results file. With 'latest', files
    that cannot be read are skipped and added to ``problems``."""
    as_path = Path(ref)
    if ref.endswith(".json") and (as_path.is_file() or as_path.is_symlink()):
        return as_path
    if ref == "latest":
        return latest_run(results_dir, problems)
    files = list_run_files(results_dir)
    exact = results_dir / f"{ref}.json"
    if exact in files:
        return exact
    matches = [p for p in files if p.stem.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(p.stem for p in files[-5:]) or "none"
        raise ResultsError(f"no run '{ref}' in {results_dir} (latest runs: {known})")
    raise ResultsError(f"'{ref}' matches {len(matches)} runs in {results_dir}; give more of the id")


__all__ = ["atomic_write", "find_run", "load_all", "load_run", "run_text", "workload"]
