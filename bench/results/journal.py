"""Writing a run: an append-only journal per run, a lock per run, one folded file at the end.

While a run goes on, ``results/<run-id>.json`` holds its header (everything but the samples) and
each finished request is appended, fsync'd, as one line to ``.bench/journals/<run-id>.jsonl``
(bench's git-ignored working folder beside ``results/``): the cost of saving a request does not
grow with the run. State changes (a model's status, the endpoints) are appended the same way.
At the end, on an interrupt and on resume, the journal is folded into the run file (one atomic
rename) and removed; a run file whose journal is left by a crash is folded when it is loaded.

Reading a journal back (and folding it into a loaded run) is :mod:`bench.results.store`'s job.

A run has a lock (``.bench/locks/<run-id>.lock``, an advisory ``flock``): a second writer (a
resume, a judge, a re-score) refuses with a message naming the holder. The kernel releases the
lock when its process dies, so a lock left by ``kill -9`` is never stale.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from bench.errors import BenchError, ResultsError
from bench.results import store
from bench.results.schema import Run, Sample
from bench.results.store import journal_path, work_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks (documented)
    fcntl = None  # type: ignore[assignment]



class RunLocked(BenchError):
    exit_code = 75  # EX_TEMPFAIL: try again when the other writer is done


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _holder(fd: int, tries: int = 20, wait_s: float = 0.025) -> str:
    """Who holds a lock, as it wrote itself into the file: the holder writes right after it
    locks, so a reader that came in between waits a moment for the line."""
    for attempt in range(tries):
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 512).decode("utf-8", "replace").strip()
        if text:
            return text
        if attempt + 1 < tries:
            time.sleep(wait_s)
    return "another bench process"


class RunLock:
    """An exclusive advisory lock on one run, held for as long as this object is open."""

    def __init__(self, run_file: Path, purpose: str):
        self.path = work_dir(run_file.parent) / "locks" / f"{run_file.stem}.lock"
        self.run_id, self.purpose = run_file.stem, purpose
        self.fd: int | None = None

    def acquire(self) -> "RunLock":
        if fcntl is None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RunLocked(f"run {self.run_id} is being written by {holder}; wait until it finishes "
                            "(or stop it), then try again") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({self.purpose})".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


class Journal:
    """Append-only JSON lines, each fsync'd; never follows a symlink."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def append(self, record: dict[str, Any]) -> None:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)
            self._fd = os.open(self.path, flags, 0o644)
        data = (_dump(record) + "\n").encode("utf-8")
        os.write(self._fd, data)
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def remove(self) -> None:
        self.close()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """A second Ctrl-C must not cut the final fold short (the journal would still have it all)."""
    try:
        old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class RunWriter:
    """Writes one run. ``journal=True`` (collect): samples and state changes are appended to the
    run's journal and folded into the run file by :meth:`finish`; ``journal=False`` (judge, score,
    annotate): every :meth:`save` rewrites the run file atomically. Holds the run's lock."""

    def __init__(self, path: Path, run: Run, *, new: bool, journal: bool = False, purpose: str = "bench"):
        self.path, self.run, self.journaled = path, run, journal
        self._finished = False
        self._mutex = threading.RLock()  # load scenarios add samples from several threads
        self.lock = RunLock(path, purpose).acquire()
        self.journal = Journal(journal_path(path))
        try:
            if new:
                self._write(exclusive=True, existed=False)
            elif journal:
                self.fold()  # a resume starts from one folded file
        except BaseException:
            self.lock.release()
            raise

    def add(self, sample: Sample) -> None:
        with self._mutex:
            if self.journaled:
                self._append({"sample": sample.model_dump(mode="json")})
                self.run.samples.append(sample)
            else:
                self.run.samples.append(sample)
                self.save()

    def save(self) -> None:
        with self._mutex:
            if not self.journaled:
                self.fold()
                return
            self._append({"state": {
                "models": {k: v.model_dump(mode="json") for k, v in self.run.models.items()},
                "endpoints": [e.model_dump(mode="json") for e in self.run.endpoints],
                "status": self.run.status, "ended_at": self.run.ended_at,
            }})

    def _append(self, record: dict[str, Any]) -> None:
        try:
            self.journal.append(record)
        except OSError as e:
            err = store.WriteError(self.journal.path, e, True)
            n = sum(1 for s in self.run.samples if not s.warmup)
            raise ResultsError(
                f"{err.reason}: could not save to {self.journal.path}. {self.path} and that journal keep the "
                f"{n} measured request{'s' if n != 1 else ''} saved before; only the request being saved now is "
                f"missing. {err.advice.capitalize()}, then run: bench collect --resume {self.run.run_id}") from None

    def _write(self, *, exclusive: bool = False, existed: bool = True) -> None:
        try:
            store.atomic_write(self.path, store.run_text(self.run), exclusive=exclusive)
        except store.WriteError as e:
            if self.journaled and existed:
                raise ResultsError(f"{e.reason}: could not fold the run into {self.path}; every request is kept "
                                   f"in {self.journal.path}. {e.advice.capitalize()}, then run: bench collect "
                                   f"--resume {self.run.run_id}") from None
            raise ResultsError(store.unsaved_message(self.path, self.run.run_id, e, existed)) from None

    def fold(self) -> None:
        with _signals_deferred():
            self._write()
            self.journal.remove()

    def finish(self) -> None:
        """Fold (if journaled) and release the lock; safe to call twice."""
        if self._finished:
            return
        self._finished = True
        try:
            if self.journaled:
                self.save()
                self.fold()
        finally:
            self.journal.close()
            self.lock.release()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.finish()
