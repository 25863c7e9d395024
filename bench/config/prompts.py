"""Prompt sets: bench.yaml's ``prompts:``, a prompts file, or the shipped workshop set."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from bench.config.load import _line_of, _msg, plain
from bench.config.model import Prompt
from bench.errors import ConfigError
from bench.results.rubric import RubricError, default_rubrics, parse_rubric
from bench.util.yamlio import read_text, read_yaml, yaml


def _slug(text: str, taken: set[str]) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:6]
    base = "-".join(words) or "prompt"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}-{n}", n + 1
    taken.add(slug)
    return slug


def normalize_prompts(items: Any, source: str, data: Any = None) -> list[Prompt]:
    """A list of strings or of {id, text, rubric} objects -> prompts with unique ids."""
    if not isinstance(items, list) or not items:
        raise ConfigError(
            f"{source}: prompts must be a non-empty list of strings or of objects with 'text' "
            f"(and optional 'id', 'rubric'); got {_kind(items)}"
        )
    taken: set[str] = set()
    out: list[Prompt] = []
    for i, item in enumerate(items):
        if isinstance(item, Prompt):
            item = item.model_dump(exclude_none=True)
        if isinstance(item, str):
            item = {"text": item}
        if not isinstance(item, Mapping):
            raise ConfigError(f"{source}: prompt #{i + 1} must be a string or an object with 'text'")
        item = plain(item)
        if "id" not in item and isinstance(item.get("text"), str):
            item = {"id": _slug(item["text"], taken), **item}
        try:
            prompt = Prompt.model_validate(item)
        except ValidationError as e:
            where = source
            line = _line_of(data, (i,)) if data is not None else None
            if line:
                where = f"{source}:{line}"
            first = e.errors()[0]
            raise ConfigError(
                f"{where}: prompt #{i + 1}: {'.'.join(map(str, first['loc']))}: {_msg(first)}"
            ) from None
        if not prompt.text.strip():
            raise ConfigError(f"{source}: prompt '{prompt.id}' has empty text")
        if prompt.rubric is not None:
            where = source
            line = _line_of(data, (i, "rubric")) if data is not None else None
            if line:
                where = f"{source}:{line}"
            try:
                parse_rubric(prompt.rubric, f"{where}: rubric of prompt '{prompt.id}'")
            except RubricError as e:
                raise ConfigError(str(e)) from None
        out.append(prompt)
    ids = [p.id for p in out]
    dupes = sorted({x for x in ids if ids.count(x) > 1})
    if dupes:
        raise ConfigError(f"{source}: duplicate prompt ids {', '.join(dupes)}: give each prompt a unique id")
    return out


def _kind(value: Any) -> str:
    """What a parsed value is, in words, for messages."""
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    return type(value).__name__


def load_prompts_file(path: Path) -> list[Prompt]:
    if path.suffix.lower() == ".json":
        text = read_text(path, "prompts file")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}:{e.colno}: malformed JSON: {e.msg}") from None
    else:
        data = read_yaml(path, "prompts file")
    return normalize_prompts(data, str(path), data)


def default_prompts() -> list[Prompt]:
    ref = resources.files("bench") / "data" / "prompts.yaml"
    data = yaml().load(ref.read_text(encoding="utf-8"))
    rubrics = default_rubrics()
    items = [{**plain(p), "rubric": rubrics.get(p["id"])} for p in data]
    return normalize_prompts(items, "bench/data/prompts.yaml")
