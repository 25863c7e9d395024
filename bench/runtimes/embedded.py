"""The embedded runtime: llama-cpp-python's OpenAI-compatible server, one process per model.

Each server runs on a free loopback port, is health-checked on ``/v1/models``, measured
(cold load time, resident memory after load and its peak while serving, disk footprint, threads)
and stopped: on success, on errors, on Ctrl-C, and (Linux) even when bench itself is killed,
because the child asks the kernel for SIGTERM when its parent dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator
from urllib.error import URLError
from urllib.request import Request, urlopen

import psutil

from bench.errors import BenchError, ConfigError
from bench.runtimes.base import EMBEDDED_NAME
from bench.runtimes.builtin import (  # noqa: F401
    BUILTINS,
    INSTALL_HINT,
    Builtin,
    RuntimeMissing,
    builtin_facts,
    builtin_models,
    resolve_model_path,
)
from bench.runtimes.generic import OpenAICompatible
from bench.runtimes.process import MemorySampler

EMBEDDED = EMBEDDED_NAME  # the endpoint name models served by the embedded runtime point at
class ServerStartError(BenchError):
    pass


def known_chat_formats() -> list[str]:
    """The chat formats llama-cpp-python knows (imports it: only called when one is configured)."""
    try:
        from llama_cpp.llama_chat_format import LlamaChatCompletionHandlerRegistry
    except Exception:  # noqa: BLE001 - missing or broken runtime: check_runtime says so elsewhere
        return []
    return sorted(LlamaChatCompletionHandlerRegistry()._chat_handlers)


def preflight(label: str, path: str, chat_format: str | None, settings: "Settings") -> Path:
    """Check an embedded model before any request: the file, its format, chat format, context.

    Raises ConfigError with one line naming the model and what to change.
    """
    from bench.runtimes import gguf

    try:
        model_path = resolve_model_path(path)
    except BenchError as e:
        raise ConfigError(f"model {label}: {e}") from None
    try:
        meta = gguf.read_metadata(model_path)
    except gguf.GGUFError as e:
        raise ConfigError(f"model {label}: {model_path} cannot be loaded: {e}; point 'path' at a GGUF file") from None
    trained = gguf.context_length(meta)
    if trained is not None and settings.n_ctx > trained:
        raise ConfigError(f"model {label}: embedded.n_ctx {settings.n_ctx} is larger than the {trained} tokens "
                          f"the model was trained for; set embedded.n_ctx to {trained} or less in bench.yaml")
    if chat_format:
        known = known_chat_formats()
        if known and chat_format not in known:
            close = [k for k in known if chat_format.lower()[:4] in k][:8] or known[:12]
            raise ConfigError(f"model {label}: llama-cpp-python does not know chat_format '{chat_format}'; "
                              f"known formats include: {', '.join(close)}")
    return model_path


# ----------------------------------------------------------------------------- the server process


def runtime_version() -> str:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        raise RuntimeMissing(INSTALL_HINT) from None


def check_runtime() -> str:
    """The llama-cpp-python version, or RuntimeMissing with both ways out."""
    version = runtime_version()
    if importlib.util.find_spec("llama_cpp.server") is None or importlib.util.find_spec("uvicorn") is None:
        raise RuntimeMissing(INSTALL_HINT)
    return version


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def default_threads() -> int:
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclass(frozen=True)
class Settings:
    """What shapes an embedded server's performance; recorded per model with every run.

    ``extra_bufts``: llama.cpp's extra buffer types (CPU weight repacking, AMX kernels).
    ``auto`` turns them off on CPUs with AMX (llama-cpp-python 0.3.36 crashes there) and
    otherwise on, falling back to off, recorded, when the server dies on its first request.
    """

    threads: int | None = None
    n_ctx: int = 2048
    n_batch: int = 512
    extra_bufts: str = "auto"  # auto | on | off
    flash_attn: bool = False


def cpu_has_amx() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return any(f in flags.split() for f in ("amx_tile", "amx_int8", "amx_bf16"))


def exit_text(code: int) -> str:
    """'exited with code 1', or 'was killed by SIGSEGV (signal 11)' for a negative Popen code."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = "an unknown signal"
    hint = "; the kernel's out-of-memory killer sends SIGKILL: check `dmesg`" if -code == signal.SIGKILL else ""
    return f"was killed by {name} (signal {-code}{hint})"


@dataclass
class ServerFacts:
    """What the selection framework needs about a model served here."""

    runtime: str
    load_s: float
    rss_after_load_bytes: int
    peak_rss_bytes: int = 0
    disk_bytes: int = 0
    threads: int = 0
    n_ctx: int = 0
    pid: int = 0
    runtime_settings: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "pid" and v is not None}


class ServerDied(ServerStartError):
    pass


def _post_json(url: str, body: dict, timeout_s: float) -> Any:
    req = Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST")
    with urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - our own loopback server
        return json.loads(resp.read())


class LocalServer:
    """One llama-cpp-python server process for one GGUF model, started through bench's launcher.

    Its output goes to ``log_path`` (kept after it stops: ``.bench/logs/`` by default), so a
    server that dies can be reported with its exit signal, its last lines and its full log.
    """

    def __init__(self, alias: str, model_path: Path, *, chat_format: str | None = None,
                 settings: Settings | None = None, ready_timeout_s: float = 180.0,
                 log_path: Path | None = None):
        self.alias = alias
        self.model_path = model_path
        self.chat_format = chat_format
        self.settings = settings or Settings()
        self.threads = self.settings.threads or default_threads()
        self.ready_timeout_s = ready_timeout_s
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.sampler: MemorySampler | None = None
        self.facts: ServerFacts | None = None
        self.extra_bufts = False
        self.extra_bufts_reason = ""
        if log_path is None:
            log_dir = Path(".bench") / "logs"
            log_path = log_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{safe_name(alias)}.log"
        self.log_path = log_path
        self._workdir = Path(tempfile.mkdtemp(prefix=f"bench-{safe_name(alias)}-"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def launcher_settings(self) -> dict[str, Any]:
        model: dict[str, Any] = {
            "model": str(self.model_path), "model_alias": self.alias, "n_ctx": self.settings.n_ctx,
            "n_threads": self.threads, "n_threads_batch": self.threads, "n_batch": self.settings.n_batch,
            "flash_attn": self.settings.flash_attn, "verbose": False,
        }
        if self.chat_format:
            model["chat_format"] = self.chat_format
        return {"port": self.port, "extra_bufts": self.extra_bufts, "model": model,
                "facts": str(self._workdir / "facts.json")}

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.runtimes.llama_server", str(self._workdir / "settings.json")]

    def log_tail(self, lines: int = 8) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, 2) - 65536))
                text = f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(deque((ln for ln in text.splitlines() if ln.strip()), maxlen=lines))

    def died(self) -> str | None:
        """None while the process runs; else what happened, its last output and the log's path."""
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return None
        return self._exit_message(code)

    def _exit_message(self, code: int, while_: str = "") -> str:
        tail = " | ".join(line.strip() for line in self.log_tail(4).splitlines())
        return (f"the embedded server for {self.alias} {exit_text(code)}{while_}"
                + (f"; last output: {tail[-400:]}" if tail else "") + f"; full log: {self.log_path}")

    def _decide_extra_bufts(self) -> None:
        mode = self.settings.extra_bufts
        if mode in ("on", "off"):
            self.extra_bufts, self.extra_bufts_reason = mode == "on", "set in bench.yaml (embedded.extra_bufts)"
        elif cpu_has_amx():
            self.extra_bufts = False
            self.extra_bufts_reason = ("auto: off, this CPU has AMX and llama-cpp-python 0.3.36 crashes in "
                                       "its AMX kernels")
        else:
            self.extra_bufts, self.extra_bufts_reason = True, "auto: on (llama.cpp's default)"

    def _spawn(self) -> float:
        self.port = free_port()
        (self._workdir / "settings.json").write_text(json.dumps(self.launcher_settings()), encoding="utf-8")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(self.log_path, "ab") as log:
            log.write(f"--- bench: starting {self.alias} with extra_bufts={self.extra_bufts}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        self.sampler = MemorySampler(self.proc.pid)
        self.sampler.start()
        self._wait_ready(t0)
        return time.perf_counter() - t0

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.ready_timeout_s
        while True:
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None:
                self._halt()
                raise ServerStartError(self._exit_message(code, f" while loading {self.model_path}"))
            if time.perf_counter() > deadline:
                self._halt()
                raise ServerStartError(f"the embedded server for {self.alias} was not ready within "
                                       f"{self.ready_timeout_s:.0f} s; full log: {self.log_path}")
            try:
                with urlopen(self.base_url + "/models", timeout=1) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        return
            except (URLError, OSError):
                pass
            time.sleep(0.02)

    def _first_request_survives(self) -> bool:
        """One tiny completion: the AMX crash (and its kind) happens on the first request."""
        try:
            _post_json(self.base_url + "/chat/completions", {
                "model": self.alias, "max_tokens": 1, "temperature": 0,
                "messages": [{"role": "user", "content": "Hello."}]}, timeout_s=60)
        except (URLError, OSError, ValueError):
            pass
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=0.5)
        return self.died() is None

    def start(self) -> ServerFacts:
        version = check_runtime()
        self._decide_extra_bufts()
        load_s = self._spawn()
        if self.settings.extra_bufts == "auto" and self.extra_bufts and not self._first_request_survives():
            crash = self.died() or "it died"
            self._halt()
            self.extra_bufts = False
            self.extra_bufts_reason = f"auto: off after the server died on its first request with them on ({crash})"
            load_s = self._spawn()
        assert self.proc is not None and self.sampler is not None
        rss = self.sampler.rss()
        self.facts = ServerFacts(
            runtime=f"llama-cpp-python {version}", load_s=load_s, rss_after_load_bytes=rss,
            peak_rss_bytes=rss, disk_bytes=self.model_path.stat().st_size, threads=self.threads,
            n_ctx=self.settings.n_ctx, pid=self.proc.pid, runtime_settings=self._runtime_settings(version),
        )
        return self.facts

    def _runtime_settings(self, version: str) -> dict[str, Any]:
        try:
            launched = json.loads((self._workdir / "facts.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            launched = {}
        return {
            "llama_cpp_python": launched.get("llama_cpp_python") or version,
            "threads": self.threads, "n_ctx": self.settings.n_ctx, "n_batch": self.settings.n_batch,
            "flash_attn": self.settings.flash_attn, "extra_bufts": self.extra_bufts,
            "extra_bufts_reason": self.extra_bufts_reason,
            "chat_format": self.chat_format or "the GGUF's own template",
            "cpu_features": launched.get("cpu_features") or [],
        }

    def _halt(self) -> None:
        if self.sampler is not None:
            peak = self.sampler.stop()
            if self.facts is not None:
                self.facts.peak_rss_bytes = max(self.facts.peak_rss_bytes, peak)
            self.sampler = None
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def stop(self) -> None:
        self._halt()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def safe_name(name: str) -> str:
    """A name as it may appear in a file name (logs, temp folders)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80]


@contextlib.contextmanager
def serve(alias: str, path: str, *, chat_format: str | None = None, settings: Settings | None = None,
          log_dir: Path | None = None) -> Iterator[LocalServer]:
    """Start, yield, and always stop one embedded server (errors and Ctrl-C included)."""
    log_path = (log_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-{safe_name(alias)}.log") if log_dir else None
    server = LocalServer(alias, resolve_model_path(path), chat_format=chat_format, settings=settings,
                         log_path=log_path)
    try:
        server.start()
        yield server
    finally:
        server.stop()


class EmbeddedRuntime(OpenAICompatible):
    """The runtime protocol over one :class:`LocalServer`: bench starts it, watches it, stops it.
    Its server is llama-cpp-python's, so tokens are counted by the generic runtime's tokenize
    routes; memory, disk and load time come from the server bench started."""

    name = EMBEDDED
    label = "embedded llama.cpp (llama-cpp-python)"

    def __init__(self, server: LocalServer, model_path: str | None = None):
        super().__init__(None)
        self.server = server
        self.model_path = model_path

    def start(self) -> None:
        """Start the server (ServerStartError says why it could not); the caller then connects to
        ``server.base_url`` and sets ``conn``."""
        self.server.start()

    def version(self) -> str | None:
        return runtime_version()

    def model_facts(self, model_id: str) -> dict[str, Any]:
        facts = builtin_facts(self.model_path)
        if self.server.facts is not None:
            facts.update(self.server.facts.as_dict())
            facts.setdefault("sources", {})["disk_bytes"] = "size of the GGUF file bench served"
        return facts

    def died(self) -> str | None:
        return self.server.died()

    def stop(self) -> None:
        self.server.stop()


__all__ = ["EmbeddedRuntime", "BUILTINS", "EMBEDDED", "LocalServer", "RuntimeMissing", "ServerDied", "ServerFacts", "Settings", "builtin_models",
           "check_runtime", "resolve_model_path", "serve"]
