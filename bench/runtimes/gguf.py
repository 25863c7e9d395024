"""Read the metadata header of a GGUF file (no tensors, no llama.cpp needed).

Used before any request to check what llama.cpp would otherwise only say when the server
crashes or misbehaves: that the file is a GGUF at all, its architecture, and the context length
it was trained for. Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, BinaryIO

from bench.errors import ConfigError

MAGIC = b"GGUF"
# value types: uint8 int8 uint16 int16 uint32 int32 float32 bool string array uint64 int64 float64
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_KEYS = 100_000
_MAX_STRING = 16 << 20  # no metadata string is larger; a bigger length means a corrupt file


class GGUFError(ConfigError):
    pass


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise GGUFError("the file ends inside its metadata (truncated?)")
    return data


def _unpack(f: BinaryIO, fmt: str) -> Any:
    return struct.unpack(fmt, _read(f, struct.calcsize(fmt)))[0]


def _string(f: BinaryIO) -> str:
    n = _unpack(f, "<Q")
    if n > _MAX_STRING:
        raise GGUFError(f"a metadata string claims {n} bytes (corrupt file)")
    return _read(f, n).decode("utf-8", errors="replace")


def _value(f: BinaryIO, vtype: int, keep: bool) -> Any:
    if vtype in _SCALARS:
        return _unpack(f, _SCALARS[vtype])
    if vtype == _STRING:
        return _string(f)
    if vtype == _ARRAY:
        etype, n = _unpack(f, "<I"), _unpack(f, "<Q")
        if etype in _SCALARS and not keep:  # skip big arrays (token lists) without reading them one by one
            f.seek(n * struct.calcsize(_SCALARS[etype]), 1)
            return None
        items = [_value(f, etype, keep) for _ in range(n)]
        return items if keep else None
    raise GGUFError(f"unknown metadata value type {vtype} (corrupt file, or a GGUF version newer than bench knows)")


def read_metadata(path: Path) -> dict[str, Any]:
    """The key/value metadata of a GGUF file (arrays skipped); GGUFError if it is not one."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != MAGIC:
                raise GGUFError("not a GGUF file (the first bytes are not 'GGUF')")
            version = _unpack(f, "<I")
            if version < 2:
                raise GGUFError(f"GGUF version {version} is too old for llama.cpp; convert the model again")
            _unpack(f, "<Q")  # tensor count
            n_kv = _unpack(f, "<Q")
            if n_kv > _MAX_KEYS:
                raise GGUFError(f"the header claims {n_kv} metadata keys (corrupt file)")
            meta: dict[str, Any] = {"GGUF.version": version}
            for _ in range(n_kv):
                key = _string(f)
                vtype = _unpack(f, "<I")
                meta[key] = _value(f, vtype, keep=False)
            return meta
    except OSError as e:
        raise GGUFError(f"cannot read it ({e.strerror})") from None


def context_length(meta: dict[str, Any]) -> int | None:
    """The context length the model was trained with (``<arch>.context_length``)."""
    arch = meta.get("general.architecture")
    value = meta.get(f"{arch}.context_length") if isinstance(arch, str) else None
    return value if isinstance(value, int) and value > 0 else None
