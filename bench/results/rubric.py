"""Deterministic rubric checks: score one LLM answer against its prompt's rubric (quality dimension).

A rubric is a list of checks; each passes or fails with a human-readable reason, and the score is
passed / total. Checks are reported in this order:

* ``facets`` - expected content, one check each: ``any`` (some term occurs), ``all`` (every term
  occurs) or ``regex`` (matches). Terms are case-insensitive substrings; regexes compile with
  ``re.IGNORECASE | re.DOTALL``.
* ``sentences`` / ``words`` / ``list_items`` - count bounds ``{min, max}`` (either may be omitted)
  or ``{exactly}``.
* ``forbidden`` - one check per entry, FAILS if the entry occurs: a plain string is a
  case-insensitive substring, an entry starting with ``re:`` is a (case-insensitive) regex.

Regexes are compiled when the rubric is parsed; one that matches empty text is rejected (it would
always pass or always fail). ``weight`` is stored only.

Counting rules (bump RUBRIC_ENGINE_VERSION when they change; results record the version used):

* Sentences: fenced code blocks, markdown headings (``# ...``) and title lines that are wholly bold
  without terminal punctuation (``**Overview:**``) are ignored; list markers and emphasis (``*``,
  backticks, ``_`` at word edges) are stripped. Each list item is its own unit; other consecutive
  lines form one paragraph (hard-wrapped text is not split at line ends). A unit splits after
  ``.``, ``!`` or ``?`` (runs like ``?!`` and ``...``, plus closing quotes/brackets) followed by
  whitespace or the end, except after an abbreviation (e.g., i.e., vs., cf., approx., Dr., ... and
  dotted forms like U.S.; "etc." only ends a sentence before a capital letter) or after a bare
  number that starts a sentence or follows ``:``/``;`` (an inline "1." marker). Decimals (3.5)
  never split. A trailing piece without terminal punctuation (e.g. a list item) is one sentence;
  pieces without a letter or digit do not count; empty text is 0 sentences.
* Words: runs of letters/digits joined by inner apostrophes or hyphens, and by ``.``/``,`` between
  digits: "SLM-based model's" = 2, "3.5 GB" = 2, "1,000" = 1. Lone dashes and markup are not words.
* List items: lines that, after stripping, start with ``-``, ``*``, ``•`` or a number followed by
  ``.`` or ``)``, then whitespace and text containing a letter or digit. Nested items count;
  ``---``, ``**bold**`` and ``3.5 GB`` are not items.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

RUBRIC_ENGINE_VERSION = 1
FLAGS = re.IGNORECASE | re.DOTALL


class RubricError(ValueError):
    """A rubric is malformed; the message says what is wrong and where."""


@functools.lru_cache(maxsize=1024)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, FLAGS)


def _valid_regex(pattern: str) -> str:
    try:
        rx = _compile(pattern)
    except re.error as e:
        raise ValueError(f"invalid regex '{pattern}': {e}") from None
    if rx.search(""):
        raise ValueError(f"regex '{pattern}' matches empty text")
    return pattern


def _valid_forbidden(entry: str) -> str:
    if entry.startswith("re:"):
        _valid_regex(entry[3:])
    return entry


Count = Annotated[int, Field(strict=True, ge=0)]
Text = Annotated[str, Field(strict=True, min_length=1)]
Terms = Annotated[list[Text], Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bounds(_Strict):
    min: Count | None = None
    max: Count | None = None
    exactly: Count | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Bounds:
        if self.exactly is not None and (self.min is not None or self.max is not None):
            raise ValueError("'exactly' excludes 'min' and 'max'")
        if self.exactly is None and self.min is None and self.max is None:
            raise ValueError("give min, max or exactly")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    def range(self) -> tuple[int | None, int | None]:
        return (self.min, self.max) if self.exactly is None else (self.exactly, self.exactly)


class Facet(_Strict):
    name: Text | None = None
    any: Terms | None = None
    all: Terms | None = None
    regex: Text | None = None

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return None if v is None else _valid_regex(v)

    @model_validator(mode="after")
    def _one_kind(self) -> Facet:
        given = [k for k in ("any", "all", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"needs exactly one of any/all/regex, got {', '.join(given) or 'none'}")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.regex is not None:
            return f"/{self.regex}/"
        return ("any of " if self.any else "all of ") + ", ".join(self.any or self.all or [])


class Rubric(_Strict):
    facets: list[Facet] = []
    sentences: Bounds | None = None
    words: Bounds | None = None
    list_items: Bounds | None = None
    forbidden: list[Annotated[Text, AfterValidator(_valid_forbidden)]] = []
    weight: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 1.0

    @model_validator(mode="after")
    def _has_checks(self) -> Rubric:
        if not (self.facets or self.forbidden or self.sentences or self.words or self.list_items):
            raise ValueError("rubric defines no checks")
        return self


class Check(BaseModel):
    name: str
    kind: Literal["facet", "sentences", "words", "list_items", "forbidden"]
    passed: bool
    why: str


class RubricResult(BaseModel):
    score: float
    passed: int
    total: int
    checks: list[Check]
    version: int


# ------------------------------------------------------------------------------------ parsing
def _describe(err: Any, data: dict) -> str:
    loc, msg = list(err["loc"]), err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        key = loc.pop()
        model = (Facet if loc[0] == "facets" else Bounds) if loc else Rubric
        msg = f"unknown key '{key}' (allowed: {', '.join(model.model_fields)})"
    elif err["type"] != "value_error":
        msg += f", got {err['input']!r}"
    elif loc and loc[-1] == "regex":
        loc.pop()  # the message already says "invalid regex"
    parts, i = [], 0
    while i < len(loc):
        key = loc[i]
        if key in ("facets", "forbidden") and i + 1 < len(loc) and isinstance(loc[i + 1], int):
            idx = loc[i + 1]
            raw = data[key][idx] if isinstance(data.get(key), list) and idx < len(data[key]) else None
            if key == "facets":
                name = raw.get("name") if isinstance(raw, dict) else None
                parts.append(f"facet '{name}'" if isinstance(name, str) and name else f"facet #{idx + 1}")
            else:
                parts.append(f"forbidden entry '{raw}'" if isinstance(raw, str) else f"forbidden entry #{idx + 1}")
            i += 2
        else:
            parts.append(f"item {key + 1}" if isinstance(key, int) else str(key))
            i += 1
    return ": ".join(parts + [msg])


def parse_rubric(data: dict, where: str) -> Rubric:
    """Validate a rubric mapping; ``where`` (e.g. "rubric of prompt 'p1'") prefixes every error."""
    if not isinstance(data, dict):
        raise RubricError(f"{where}: a rubric must be a mapping, got {type(data).__name__}")
    try:
        return Rubric.model_validate(data)
    except ValidationError as e:
        raise RubricError(f"{where}: " + "; ".join(_describe(err, data) for err in e.errors())) from None


# ----------------------------------------------------------------------------------- counting
_ALNUM = re.compile(r"[^\W_]")
_ITEM = re.compile(r"(?:[-*•]|\d+[.)])\s+(?=.*[^\W_])")
_WORD = re.compile(r"[^\W_]+(?:(?:['’‘\-‐‑]|(?<=\d)[.,](?=\d))[^\W_]+)*")
_HEADING = re.compile(r"#{1,6}(?:\s|$)")
_TITLE = re.compile(r"(\*\*|__)[^*]*?[^*.!?\s]\1:?")
_EMPH = re.compile(r"\*+|`+|(?<![^\W_])_+|_+(?![^\W_])")
_END = re.compile(r"[.!?]+[\"'”’)\]]*(?=\s|$)")
_ABBREV = frozenset("e.g eg i.e ie etc vs cf approx viz resp al fig dr mr mrs ms prof jr sr inc ltd".split())


def count_list_items(text: str) -> int:
    return sum(1 for line in text.splitlines() if _ITEM.match(line.strip()))


def count_words(text: str) -> int:
    return len(_WORD.findall(text))


def _units(text: str) -> list[str]:
    """List items one by one; runs of other lines as paragraphs; code, headings and titles dropped."""
    units: list[str] = []
    para: list[str] = []
    fence = False

    def flush() -> None:
        if para:
            units.append(" ".join(para))
            para.clear()

    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            fence = not fence
            flush()
        elif fence or not line or _HEADING.match(line) or _TITLE.fullmatch(line):
            flush()
        elif item := _ITEM.match(line):
            flush()
            units.append(_EMPH.sub("", line[item.end():]))
        else:
            para.append(_EMPH.sub("", line))
    flush()
    return units


def _not_an_end(head: str, tail: str) -> bool:
    """True if the '.' ending ``head`` closes an abbreviation or an inline "1." marker."""
    words = head.split()
    token = words[-1].lstrip("([\"'“‘").lower() if words else ""
    if token == "etc":
        return not tail.lstrip()[:1].isupper()
    return (token in _ABBREV or re.fullmatch(r"(?:[a-z]\.)+[a-z]", token) is not None
            or re.fullmatch(r"\d+", head.strip()) is not None or re.search(r"[:;]\s*\d+$", head) is not None)


def count_sentences(text: str) -> int:
    n = 0
    for unit in _units(text):
        start = 0
        for m in _END.finditer(unit):
            head = unit[start:m.start()]
            if m.group().rstrip("\"'”’)]") == "." and _not_an_end(head, unit[m.end():]):
                continue
            n += bool(_ALNUM.search(head))
            start = m.end()
        n += bool(_ALNUM.search(unit[start:]))
    return n


# ------------------------------------------------------------------------------------ scoring
def _snip(s: str, n: int = 40) -> str:
    s = " ".join(s.split())
    return s if len(s) <= n else s[:n] + "…"


def _facet(f: Facet, text: str) -> Check:
    low = text.casefold()
    if f.regex is not None:
        m = _compile(f.regex).search(text)
        ok = m is not None
        why = f"matched '{_snip(m.group())}' at char {m.start()}" if m else f"no match for /{f.regex}/"
    elif f.any is not None:
        found = [t for t in f.any if t.casefold() in low]
        ok = bool(found)
        why = "found " + ", ".join(f"'{t}'" for t in found) if ok else f"none of {', '.join(f.any)} found"
    else:
        missing = [t for t in f.all or [] if t.casefold() not in low]
        ok = not missing
        why = f"found all of {', '.join(f.all or [])}" if ok else "missing " + ", ".join(f"'{t}'" for t in missing)
    return Check(name=f"facet: {f.label}", kind="facet", passed=ok, why=why)


def _bounds(kind: Literal["sentences", "words", "list_items"], unit: str, b: Bounds, n: int) -> Check:
    lo, hi = b.range()
    if lo == hi:
        label, want = f"= {lo}", f"exactly {lo}"
    elif hi is None:
        label, want = f"≥ {lo}", f"at least {lo}"
    elif lo is None:
        label, want = f"≤ {hi}", f"at most {hi}"
    else:
        label, want = f"{lo}–{hi}", f"{lo}–{hi}"
    ok = (lo is None or n >= lo) and (hi is None or n <= hi)
    if not ok and lo != hi:
        want = f"at least {lo}" if lo is not None and n < lo else f"at most {hi}"
    what = f"{n} {unit}" + ("" if n == 1 else "s")
    return Check(name=f"{kind.replace('_', ' ')} {label}", kind=kind, passed=ok, why=f"{what}, expected {want}")


def _forbidden(entry: str, text: str) -> Check:
    pattern = entry[3:] if entry.startswith("re:") else re.escape(entry)
    m = _compile(pattern).search(text)
    why = f"matched '{_snip(m.group())}' at char {m.start()}" if m else f"'{entry}' does not occur"
    return Check(name=f"forbidden: {entry}", kind="forbidden", passed=m is None, why=why)


def score(rubric: Rubric, text: str) -> RubricResult:
    text = text or ""
    checks = [_facet(f, text) for f in rubric.facets]
    for kind, unit, count in (("sentences", "sentence", count_sentences), ("words", "word", count_words),
                              ("list_items", "list item", count_list_items)):
        if (b := getattr(rubric, kind)) is not None:
            checks.append(_bounds(kind, unit, b, count(text)))
    checks += [_forbidden(e, text) for e in rubric.forbidden]
    passed = sum(c.passed for c in checks)
    return RubricResult(score=passed / len(checks) if checks else 0.0, passed=passed, total=len(checks),
                        checks=checks, version=RUBRIC_ENGINE_VERSION)


# ----------------------------------------------------------------------------- default rubrics
def default_rubrics() -> dict[str, dict]:
    """Rubrics for the four shipped prompts (fresh dicts; parse with :func:`parse_rubric`).

    Short terms that hide inside common words use word-bounded regexes ("RAM" is in "parameter",
    "edge" in "knowledge").
    """
    return {
        "rag-two-sentences": {
            "facets": [
                {"name": "retrieval", "any": ["retriev", "search", "fetch", "look up", "lookup"]},
                {"name": "generation", "any": ["generat", "produce", "answer", "respon"]},
                {"name": "knowledge source",
                 "any": ["document", "knowledge", "database", "source", "corpus", "context", "external"]},
            ],
            "sentences": {"exactly": 2},
            "forbidden": ["As an AI"],
        },
        "privacy-benefits": {
            "list_items": {"exactly": 3},
            "facets": [
                {"name": "data stays local",
                 "any": ["local", "device", "on-premise", "on premise", "never leaves", "stays"]},
                {"name": "privacy/security",
                 "any": ["privacy", "private", "secur", "confidential", "complian", "GDPR", "breach", "leak"]},
            ],
            "words": {"max": 200},
        },
        "size-latency": {
            "facets": [
                {"name": "size", "any": ["parameter", "size", "larger", "bigger", "billion"]},
                {"name": "compute/memory", "regex": r"memory|\bV?RAM\b|comput|bandwidth|\b[GC]PUs?\b"},
                {"name": "latency", "any": ["latency", "slow", "speed", "time", "fast"]},
            ],
            "words": {"max": 200},
        },
        "slm-scenarios": {
            "facets": [
                {"name": "SLM vs LLM", "regex": r"\bSLMs?\b|small (language )?models?"},
                {"name": "constraints",
                 "regex": r"\bedge\b|device|offline|mobile|\bcost|latency|privacy|resource|embedded|laptop"},
                {"name": "two scenarios", "regex": r"\b(1|first|one)\b.*\b(2|second|two)\b"},
            ],
            "words": {"max": 250},
        },
    }
