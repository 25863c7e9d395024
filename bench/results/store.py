"""Results files on disk: ids, atomic writes, loading with version checks and upgrades."""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import secrets
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from bench.errors import ResultsError
from bench.results.schema import (
    SEQUENTIAL,
    EndpointInfo,
    ModelInfo,
    Run,
    Sample,
    Workload,
)


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

from bench.results.parse import (  # noqa: E402,F401 (the names other modules read from here)
    MAX_JSON_DEPTH,
    MAX_RESULTS_BYTES,
    parse_json,
    parse_run,
    parse_run_checked,
    score_rubrics,
    set_rubrics,
)


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


def _load_each(results_dir: Path, each: Callable[[Path, Run], Any] | None = None
               ) -> tuple[list[tuple[Path, Any]], list[LoadProblem]]:
    """Every readable run with its path; ``each(path, run)``, when given, turns each run into what
    is kept (as soon as it is read, so a long history need not fit in memory whole)."""
    loaded, problems = [], []
    for p in list_run_files(results_dir):
        try:
            run = load_run(p)
        except ResultsError as e:
            problems.append(LoadProblem(p, str(e)))
            continue
        loaded.append((p, each(p, run) if each is not None else run))
    return loaded, problems


def load_each(results_dir: Path, each: Callable[[Path, Run], Any]) -> tuple[list[tuple[Path, Any]], list[LoadProblem]]:
    return _load_each(results_dir, each)


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
