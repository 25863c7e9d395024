"""Results files on disk: ids, atomic writes, loading with version checks and upgrades."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from bench.errors import ResultsError
from bench.journal import RunWriter, apply, journal_path, read_records
from bench.schema import SCHEMA_VERSION, Run, Workload


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id(now: datetime | None = None) -> str:
    """Unique and sortable by time: 20261122T021631.123Z-3fa9c2."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z-" + secrets.token_hex(3)


def workload(prompts: list[dict[str, Any]], generation: dict[str, Any], prompt_cache: str = "cold") -> Workload:
    """Runs are comparable when prompts, generation params and the prompt-cache mode are identical
    (rounds may differ)."""
    canon = json.dumps(
        {"prompts": [{"id": p["id"], "text": p["text"]} for p in prompts], "generation": generation,
         "prompt_cache": prompt_cache},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return Workload(
        hash=hashlib.sha256(canon.encode()).hexdigest()[:16], prompts=prompts, generation=generation,
        prompt_cache=prompt_cache,
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


def _write_then_rename(path: Path, text: str, exclusive: bool) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
    return json.dumps(run.model_dump(mode="json"), indent=1, ensure_ascii=False, allow_nan=False) + "\n"


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class WriteError(ResultsError):
    """A file could not be written. ``reason`` and ``advice`` are short phrases for other messages."""

    def __init__(self, path: Path, err: OSError, existed: bool):
        full = err.errno in _DISK_FULL
        self.reason = f"disk full ({err.strerror})" if full else f"cannot write ({err.strerror or err})"
        self.advice = "free space on that disk" if full else "check that disk and the folder's permissions"
        kept = "it keeps its previous content" if existed else "it was not created"
        super().__init__(f"{self.reason}: could not write {path}; {kept}; {self.advice}, then run the command again")


def _unsaved_message(path: Path, run_id: str, err: WriteError, existed: bool) -> str:
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

# Upgrades: _UPGRADES[n] turns a version-n dict into a version-(n+1) dict.
def _upgrade_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added rubric results per sample and LLM-judge verdicts per run."""
    for s in data.get("samples") or []:
        if isinstance(s, dict):
            s.setdefault("rubric", None)
    data.setdefault("judgements", [])
    return data


def _upgrade_to_3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 records the prompt-cache mode; older runs may have measured cached prompts."""
    if isinstance(data.get("workload"), dict):
        data["workload"].setdefault("prompt_cache", "unknown")
    return data


_UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _upgrade_to_2, 2: _upgrade_to_3}


def upgrade(data: dict[str, Any], source: str) -> dict[str, Any]:
    version = data.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise ResultsError(f"{source}: not a bench results file (no integer schema_version)")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{source}: written by a newer bench (schema_version {version}, this bench reads up to "
            f"{SCHEMA_VERSION}); upgrade bench: pip install -U bench"
        )
    while version < SCHEMA_VERSION:
        data = _UPGRADES[version](data)
        version += 1
        data["schema_version"] = version
    return data


def load_run(path: Path) -> Run:
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except OSError as e:
        raise ResultsError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}:{e.lineno}: corrupt results file (invalid JSON: {e.msg})") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: not a bench results file (top level is not an object)")
    data = upgrade(data, str(path))
    try:
        run = Run.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ResultsError(f"{path}: invalid results file at {where}: {first['msg']}") from None
    records = read_records(journal_path(path))  # a run a crash left unfolded: its journal has the rest
    return apply(run, records) if records else run


@dataclass(frozen=True)
class LoadProblem:
    path: Path
    message: str


def list_run_files(results_dir: Path) -> list[Path]:
    if not results_dir.is_dir():
        return []
    return sorted(p for p in results_dir.glob("*.json") if not p.name.startswith("."))


def load_all(results_dir: Path) -> tuple[list[Run], list[LoadProblem]]:
    """Every readable run, oldest first, plus a problem per file that could not be read."""
    runs, problems = [], []
    for p in list_run_files(results_dir):
        try:
            runs.append(load_run(p))
        except ResultsError as e:
            problems.append(LoadProblem(p, str(e)))
    runs.sort(key=lambda r: r.run_id)
    return runs, problems


def find_run(results_dir: Path, ref: str) -> Path:
    """A run id, 'latest', a unique id prefix, or a path to a results file."""
    as_path = Path(ref)
    if ref.endswith(".json") and as_path.is_file():
        return as_path
    files = list_run_files(results_dir)
    if ref == "latest":
        if not files:
            raise ResultsError(f"no results in {results_dir}: run `bench collect` first")
        return files[-1]
    exact = results_dir / f"{ref}.json"
    if exact.is_file():
        return exact
    matches = [p for p in files if p.stem.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(p.stem for p in files[-5:]) or "none"
        raise ResultsError(f"no run '{ref}' in {results_dir} (latest runs: {known})")
    raise ResultsError(f"'{ref}' matches {len(matches)} runs in {results_dir}; give more of the id")


__all__ = ["RunWriter", "atomic_write", "find_run", "load_all", "load_run", "run_text", "workload"]
