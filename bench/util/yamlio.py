"""YAML files: one parser configuration, and reads whose every failure names the file and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from bench.errors import ConfigError


def yaml() -> YAML:
    """A round-trip YAML reader/writer that refuses duplicate keys (they are always a mistake)."""
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    y.width = 100  # how files bench writes (annotations) are laid out; reading ignores these
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def read_text(path: Path, what: str = "file") -> str:
    """A UTF-8 file's text (a BOM is dropped); every way reading fails is a ConfigError naming it."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except IsADirectoryError:
        raise ConfigError(f"{path} is a directory: pass the path of a {what}") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied: make it readable (chmod u+r) or pass another {what}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x}): "
                          "save the file as UTF-8") from None


def read_yaml(path: Path, what: str = "file") -> Any:
    """Parse a YAML (or JSON) file; errors name file:line and say what to fix."""
    text = read_text(path, what)
    try:
        return yaml().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise ConfigError(f"{where}: malformed YAML: {problem}. Fix the syntax and try again.") from None
    except YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None
