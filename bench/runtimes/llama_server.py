"""Launcher for one embedded llama-cpp-python server (runs in the child process).

``python -m bench.runtimes.llama_server SETTINGS.json`` does what ``python -m llama_cpp.server`` does, plus
what its command line cannot: it sets ``use_extra_bufts`` (llama.cpp's extra buffer types: weight
repacking and AMX kernels), a field of the C struct ``llama_model_params`` that neither
``Llama()`` nor the server settings expose. llama-cpp-python 0.3.36 built natively on an AMX CPU
crashes (SIGSEGV in ``ggml_backend_amx_mul_mat``) on the first request unless it is off.

Before serving, it writes what it runs with (llama-cpp-python version, settings, the CPU
features llama.cpp reports) to the ``facts`` path in the settings file, so the parent records
them per model. Nothing here is imported by bench itself.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def _patch_extra_bufts(enabled: bool) -> None:
    import llama_cpp.llama_cpp as lib

    original = lib.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = enabled
        return p

    lib.llama_model_default_params = params  # llama.Llama reads the defaults through this name


def cpu_features(system_info: str) -> list[str]:
    """'CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 0 | REPACK = 1 |' -> ['AVX2', 'REPACK', 'SSE3']."""
    feats = set()
    for part in system_info.replace("|", "\n").splitlines():
        name, sep, value = part.rpartition("=")
        name = name.split(":")[-1].strip()
        if sep and name and value.strip() not in ("0", ""):
            feats.add(name)
    return sorted(feats)


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    import llama_cpp
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    _patch_extra_bufts(bool(cfg["extra_bufts"]))
    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    facts = {"llama_cpp_python": llama_cpp.__version__, "system_info": info.strip(),
             "cpu_features": cpu_features(info)}
    with open(cfg["facts"], "w", encoding="utf-8") as f:
        json.dump(facts, f)
    server = ServerSettings(host="127.0.0.1", port=cfg["port"])
    model = ModelSettings(**cfg["model"])
    uvicorn.run(create_app(server_settings=server, model_settings=[model]),
                host="127.0.0.1", port=cfg["port"], log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
