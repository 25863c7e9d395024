"""Reading bench.yaml: validation errors name file:line and say what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from pydantic import BaseModel, ValidationError

from bench.config.model import (
    DEFAULT_CONFIG_NAME,
    Config,
    Endpoint,
    Generation,
    Model,
    Prompt,
)
from bench.errors import ConfigError
from bench.util.yamlio import read_yaml


def _line_of(data: Any, loc: tuple) -> int | None:
    """Best-effort 1-based line of the YAML node at a pydantic error location."""
    line = None
    node = data
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(part, str) and part in node:
                line = lc.key(part)[0] + 1
            elif lc is not None and isinstance(part, int) and part < len(node):
                line = lc.item(part)[0] + 1
            node = node[part]
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    if line is None and getattr(data, "lc", None) is not None:
        line = data.lc.line + 1
    return line


def _msg(first: Mapping[str, Any]) -> str:
    return str(first["msg"]).removeprefix("Value error, ")


def _validation_message(path: Path | str, data: Any, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = tuple(p for p in first["loc"] if not (isinstance(p, str) and p in ("str", "Prompt")))
    line = _line_of(data, loc)
    where = f"{path}:{line}" if line else str(path)
    dotted = ".".join(str(p) for p in loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        hint = f" Allowed keys here: {', '.join(allowed)}." if allowed else ""
        msg = f"{where}: unknown key '{loc[-1]}' at {dotted}.{hint}"
    else:
        msg = f"{where}: {dotted}: {_msg(first)}"
    more = len(err.errors()) - 1
    return msg + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def _allowed_keys(parent: tuple) -> list[str]:
    model: type[BaseModel] = Config
    for part in parent:
        if isinstance(part, int):
            continue
        ann = model.model_fields.get(str(part))
        if ann is None:
            return []
        sub = {"endpoints": Endpoint, "models": Model, "prompts": Prompt, "generation": Generation}
        model = sub.get(str(part), model)
    return list(model.model_fields)


def load_config(path: Path | None) -> tuple[Config, Path | None]:
    """Load bench.yaml (the given path, or ./bench.yaml when present, or built-in defaults)."""
    cfg, path, _ = _load_config(path)
    return cfg, path


def _load_config(path: Path | None) -> tuple[Config, Path | None, Any]:
    """load_config plus the parsed YAML (its nodes know their line numbers, for later errors)."""
    if path is None:
        candidate = Path(DEFAULT_CONFIG_NAME)
        if not candidate.exists():  # a directory or an unreadable file there is an error, not "no config"
            return Config(), None, None
        path = candidate
    data = read_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of keys (endpoints:, models:, ...)")
    try:
        return Config.model_validate(plain(data)), path, data
    except ValidationError as e:
        raise ConfigError(_validation_message(path, data, e)) from None


def plain(data: Any) -> Any:
    """ruamel's CommentedMap/Seq to plain dict/list (pydantic validates plain types)."""
    if isinstance(data, Mapping):
        return {str(k): plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [plain(v) for v in data]
    return data
