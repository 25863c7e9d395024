"""Load and validate bench.yaml, then apply environment and flag overrides.

Precedence, weakest first: bench.yaml < environment < command-line flags. The result is a
:class:`Plan`: everything the runner needs, with secrets held only as the *name* of the
environment variable that carries them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import math
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Mapping
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from bench.analysis.scoring import DEFAULT_PROFILES, Profile
from bench.errors import ConfigError
from bench.results.rubric import RubricError, default_rubrics, parse_rubric
from bench.runtimes.embedded import EMBEDDED
from bench.runtimes.embedded import builtin_models as _builtin_models

if TYPE_CHECKING:
    from bench.runtimes.embedded import Settings

DEFAULT_CONFIG_NAME = "bench.yaml"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"
# A silent stream never hangs a run, even when bench.yaml sets no stall timeout.
DEFAULT_STALL_TIMEOUT_S = 60.0
DEFAULT_TIMEOUT_S = 300.0


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Endpoint(_Strict):
    """An OpenAI-compatible server. The key is never stored: only the variable's name."""

    name: str
    base_url: str
    api_key_env: str = DEFAULT_KEY_ENV

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        return check_base_url(v)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError(
                "api_key_env is the NAME of an environment variable (like OPENAI_API_KEY), "
                "not the key itself"
            )
        return v


class Model(_Strict):
    """A model as the server knows it, plus what the selection framework needs about it."""

    name: str
    endpoint: str | None = None
    label: str | None = None
    license: str | None = None
    capabilities: list[str] = Field(default_factory=list)
    notes: str | None = None
    # Served by the embedded runtime (llama-cpp-python) instead of an endpoint:
    path: str | None = Field(None, description="GGUF file, or builtin:NAME")
    chat_format: str | None = None
    quantization: str | None = None
    parameters: int | None = None

    @property
    def embedded(self) -> bool:
        return self.path is not None

    @property
    def key(self) -> str:
        return self.label or self.name


class Prompt(_Strict):
    id: str
    text: str
    rubric: dict[str, Any] | None = None


class Generation(_Strict):
    max_tokens: int = Field(150, ge=1)
    temperature: float = Field(0.0, ge=0, allow_inf_nan=False)
    seed: int | None = 42
    stream: bool = True


class Embedded(_Strict):
    """Options of the embedded llama.cpp servers."""

    threads: int | None = Field(None, ge=1, description="default: physical cores")
    n_ctx: int = Field(2048, ge=256)
    n_batch: int = Field(512, ge=1, description="prompt tokens per llama_decode call")
    extra_bufts: Literal["auto", "on", "off"] = Field(
        "auto", description="llama.cpp extra buffer types (weight repacking, AMX); auto: off on AMX CPUs")
    flash_attn: bool = False

    def settings(self) -> "Settings":
        from bench.runtimes.embedded import Settings

        return Settings(threads=self.threads, n_ctx=self.n_ctx, n_batch=self.n_batch,
                        extra_bufts=self.extra_bufts, flash_attn=self.flash_attn)


class Config(_Strict):
    endpoints: list[Endpoint] = Field(default_factory=list)
    models: list[Model] = Field(default_factory=list)
    prompts: list[Prompt | str] | None = None
    prompts_file: str | None = None
    generation: Generation = Field(default_factory=Generation)
    rounds: int = Field(3, ge=1)
    warmup: int = Field(1, ge=0)
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, gt=0, allow_inf_nan=False)
    stall_timeout_s: float = Field(DEFAULT_STALL_TIMEOUT_S, gt=0, allow_inf_nan=False)
    retries: int = Field(3, ge=0)
    max_consecutive_failures: int = Field(3, ge=1)
    results_dir: str = "results"
    embedded: Embedded = Field(default_factory=Embedded)
    profiles: dict[str, Profile] = Field(default_factory=dict)
    # cold: no measured request can reuse an earlier request's prompt prefill (methodology.md);
    # warm: each measured request follows an identical unmeasured one, so its prefill is cached.
    prompt_cache: Literal["cold", "warm"] = "cold"


@dataclass(frozen=True)
class Plan:
    """The resolved benchmark: what to run, where, and how."""

    endpoints: dict[str, Endpoint]
    models: list[Model]
    prompts: list[Prompt]
    generation: Generation
    rounds: int
    warmup: int
    timeout_s: float
    stall_timeout_s: float
    retries: int
    max_consecutive_failures: int
    results_dir: Path
    config_path: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    embedded: Embedded = field(default_factory=Embedded)
    prompt_cache: str = "cold"
    notes: tuple[str, ...] = ()  # what a resume took from the user's config instead of the run file

    def endpoint_of(self, model: Model) -> Endpoint:
        return self.endpoints[model.endpoint or next(iter(self.endpoints))]

    @property
    def uses_embedded(self) -> bool:
        return any(m.embedded for m in self.models)

    def snapshot(self) -> dict[str, Any]:
        """The plan as stored in a results file: no secrets, URLs without credentials."""
        return {
            "config_path": self.config_path,
            "overrides": dict(self.overrides),
            "endpoints": [
                {**e.model_dump(), "base_url": redact_url(e.base_url),
                 # resume must then be given the URL again: the stored one lacks what was cut
                 "url_redacted": redact_url(e.base_url) != e.base_url}
                for e in self.endpoints.values()
            ],
            "models": [m.model_dump(exclude_none=True) for m in self.models],
            "prompts": [p.model_dump(exclude_none=True) for p in self.prompts],
            "generation": self.generation.model_dump(),
            "rounds": self.rounds,
            "warmup": self.warmup,
            "timeout_s": self.timeout_s,
            "stall_timeout_s": self.stall_timeout_s,
            "retries": self.retries,
            "max_consecutive_failures": self.max_consecutive_failures,
            "embedded": self.embedded.model_dump(),
            "prompt_cache": self.prompt_cache,
        }


def redact_url(url: str) -> str:
    """Drop user:password, the query string and the fragment (where keys hide) from a URL.

    Never raises, so a message about a malformed URL can show it too (through this only).
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _redact_text(url)
    if not parts.netloc:  # "user:pw@host/v1" has no "//": urlsplit reads "user" as the scheme
        return _redact_text(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port else "")
    return _printable(urlunsplit((parts.scheme, netloc, parts.path, "", "")))


def _redact_text(url: str) -> str:
    """redact_url by hand, for what urlsplit refuses: keep scheme, host, a numeric port, path."""
    text = re.split(r"[?#]", url, maxsplit=1)[0]
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    netloc, slash, path = rest.partition("/")
    netloc = netloc.rpartition("@")[2]
    host, colon, port = netloc.rpartition(":")
    if colon and not port.isdigit() and not netloc.startswith("["):
        netloc = host  # "http://user:pw/v1" (host forgotten): the "port" may be a password
    return _printable(f"{scheme}{sep}{netloc}{slash}{path}")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


URL_EXAMPLE = "http://HOST:PORT/v1"


def check_base_url(url: str) -> str:
    """``url`` without a trailing slash (before any query), or a ValueError that says what is
    wrong and what to pass. Messages show the URL only through :func:`redact_url`."""
    problem = _url_problem(url)
    if problem:
        raise ValueError(f"{redact_url(url)!r}: {problem}; pass a base URL like {URL_EXAMPLE}")
    base, sep, query = url.partition("?")
    return base.rstrip("/") + sep + query


def _url_problem(url: str) -> str | None:
    """What is wrong with an endpoint URL, or None. Nothing here reads ``.port`` unguarded:
    urllib raises ValueError for a port it cannot parse."""
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it contains a space or a control character"
    try:
        parts = urlsplit(url)
    except ValueError:
        return _NOT_IPV6
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return "base_url must start with http:// or https://"
    hostport = parts.netloc.rpartition("@")[2]
    after_host = hostport.rpartition("]")[2]
    port = after_host.rpartition(":")[2] if ":" in after_host else ""
    if port and not port.isdigit():
        return "the port is not a number"
    if port and not 0 < int(port) < 65536:
        return f"port {int(port)} is out of range (1-65535)"
    host = parts.hostname or ""
    if not host:
        return "it has no host name"
    if hostport.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return _NOT_IPV6
    elif not host.isascii():
        return "the host name is not ASCII: write it in its xn-- (punycode) form"
    elif re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "the host is not a valid IPv4 address"
    elif not re.fullmatch(r"[a-z0-9._~%!$&'()*+,;=-]+", host):
        return "the host name has characters a host name cannot have"
    return None


_NOT_IPV6 = "the host is not a valid IPv6 address (write one like http://[::1]:8080/v1)"


# ----------------------------------------------------------------------------- loading YAML


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
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
        return _yaml().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = " ".join(str(x) for x in (e.context, e.problem) if x)
        raise ConfigError(f"{where}: malformed YAML: {problem}. Fix the syntax and try again.") from None
    except YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML: {e}") from None


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
        return Config.model_validate(_plain(data)), path, data
    except ValidationError as e:
        raise ConfigError(_validation_message(path, data, e)) from None


def _plain(data: Any) -> Any:
    """ruamel's CommentedMap/Seq to plain dict/list (pydantic validates plain types)."""
    if isinstance(data, Mapping):
        return {str(k): _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


# ----------------------------------------------------------------------------- prompts


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
        item = _plain(item)
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
    data = _yaml().load(ref.read_text(encoding="utf-8"))
    rubrics = default_rubrics()
    items = [{**_plain(p), "rubric": rubrics.get(p["id"])} for p in data]
    return normalize_prompts(items, "bench/data/prompts.yaml")


# ----------------------------------------------------------------------------- overrides


# A run larger than this is a typo (--rounds 1000000000), not a benchmark: at 0.1 s a request,
# a million requests take more than a day. The runner lists a run's cells up front.
MAX_REQUESTS = 1_000_000


def check_seconds(flag: str, value: Any) -> float:
    """A timeout: a positive, finite number of seconds (nan and inf never time out)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ConfigError(f"{flag} must be a positive, finite number of seconds (got {value})")
    return float(value)


def check_numbers(*, rounds: int, warmup: int, timeout: float, stall_timeout: float, max_tokens: int) -> None:
    """The run's numbers from flags (bench.yaml's are checked by the model), naming the flag."""
    check_seconds("--timeout", timeout)
    check_seconds("--stall-timeout", stall_timeout)
    for flag, value, low in (("--rounds", rounds, 1), ("--warmup", warmup, 0), ("--max-tokens", max_tokens, 1)):
        if value < low:
            raise ConfigError(f"{flag} must be at least {low} (got {value})")


def check_matrix(models: int, prompts: int, rounds: int, warmup: int) -> None:
    """Refuse a matrix too large to run before anything builds it."""
    total = models * (warmup + rounds * prompts)
    if total > MAX_REQUESTS:
        raise ConfigError(
            f"the matrix would make {total:,} requests ({models} model(s) x ({warmup:,} warmup + {prompts} "
            f"prompt(s) x {rounds:,} round(s))), over bench's limit of {MAX_REQUESTS:,} per run: "
            "lower --rounds or --warmup (rounds:, warmup: in bench.yaml), or split the run")


def endpoint_from_url(name: str, url: str, api_key_env: str = DEFAULT_KEY_ENV, *,
                      source: str = "--endpoint") -> Endpoint:
    """An endpoint from a URL given by a flag or the environment (``source`` names it)."""
    try:
        return Endpoint(name=name, base_url=url, api_key_env=api_key_env)
    except ValidationError as e:
        # Only the validator's message: pydantic's own text would repeat the input, secrets and all.
        raise ConfigError(f"{source}: {_msg(e.errors()[0])}") from None


def _env_bool(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    if raw.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if raw.strip().lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r}: use 0 or 1")


def _split_names(raw: str | None) -> list[str] | None:
    if raw is None:
        return None
    names = [n.strip() for n in raw.split(",") if n.strip()]
    return names or None


def resolve(
    config_path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    endpoint: str | None = None,
    models: str | None = None,
    prompts: Path | None = None,
    rounds: int | None = None,
    warmup: int | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    stall_timeout: float | None = None,
    results_dir: Path | None = None,
    stream: bool | None = None,
    prompt_cache: str | None = None,
    require_endpoint: bool = True,
) -> Plan:
    """bench.yaml < environment < flags, validated into a :class:`Plan`."""
    env = os.environ if env is None else env
    cfg, path, raw = _load_config(config_path)
    overrides: dict[str, Any] = {}

    def pick(name: str, flag: Any, env_value: Any, cfg_value: Any) -> Any:
        if flag is not None:
            overrides[name] = "flag"
            return flag
        if env_value is not None:
            overrides[name] = "env"
            return env_value
        return cfg_value

    # Endpoints
    url = pick(
        "endpoint", endpoint, env.get("FOUNDRY_LOCAL_ENDPOINT") or env.get("OPENAI_BASE_URL") or None, None
    )
    endpoints = {e.name: e for e in cfg.endpoints}
    if len(endpoints) != len(cfg.endpoints):
        raise ConfigError(f"{path}: two endpoints share a name: give each a unique name")
    if url:
        key_env = cfg.endpoints[0].api_key_env if cfg.endpoints else DEFAULT_KEY_ENV
        source = "--endpoint" if endpoint else "FOUNDRY_LOCAL_ENDPOINT or OPENAI_BASE_URL"
        endpoints = {"default": endpoint_from_url("default", url, key_env, source=source)}
    # Models
    names = pick("models", _split_names(models), _split_names(env.get("BENCH_MODELS")), None)
    by_key = {m.key: m for m in cfg.models}
    if len(by_key) != len(cfg.models):
        raise ConfigError(
            f"{path}: two models share a name: give each a unique 'label' (the same model on two servers)"
        )
    builtins = {m["name"]: Model.model_validate(m) for m in _builtin_models()}
    if names:
        chosen = []
        for n in names:
            m = by_key.get(n) or (builtins.get(n) if not endpoints else None) or Model(name=n)
            chosen.append(m)
    elif cfg.models:
        chosen = list(cfg.models)
    elif not endpoints:
        chosen = list(builtins.values())  # nothing configured: the embedded default models
    else:
        chosen = []
    first = next(iter(endpoints), None)
    resolved_models = []
    for m in chosen:
        if m.embedded and not url:
            resolved_models.append(m.model_copy(update={"endpoint": EMBEDDED}))
            continue
        if m.embedded and url:
            m = m.model_copy(update={"path": None, "chat_format": None})
        ep = first if url or m.endpoint is None else m.endpoint
        if ep is None and require_endpoint:
            raise ConfigError(
                f"no endpoint for model '{m.key}': pass --endpoint http://HOST:PORT/v1, set OPENAI_BASE_URL, "
                f"list endpoints in bench.yaml, or use a built-in embedded model ({', '.join(builtins)})"
            )
        if ep is not None and ep not in endpoints:
            raise ConfigError(
                f"{path}: model '{m.key}' names endpoint '{m.endpoint}', which is not defined; "
                f"defined: {', '.join(endpoints) or 'none'}"
            )
        resolved_models.append(m.model_copy(update={"endpoint": ep}))
    if require_endpoint and not resolved_models:
        raise ConfigError(
            "no models to benchmark: pass --models a,b (as the server names them), set BENCH_MODELS, "
            "or list models in bench.yaml; `bench models --endpoint URL` shows what a server has"
        )

    # Prompts
    if prompts is not None:
        overrides["prompts"] = "flag"
        prompt_list = load_prompts_file(prompts)
    elif cfg.prompts is not None:
        prompt_list = normalize_prompts(list(cfg.prompts), str(path), raw.get("prompts") if raw else None)
    elif cfg.prompts_file:
        base = path.parent if path else Path(".")
        prompt_list = load_prompts_file(base / cfg.prompts_file)
    else:
        prompt_list = default_prompts()

    gen = cfg.generation
    stream_v = pick("stream", stream, _env_bool(env, "BENCH_STREAM"), gen.stream)
    tokens_v = pick("max_tokens", max_tokens, None, gen.max_tokens)
    rounds_v = pick("rounds", rounds, None, cfg.rounds)
    warmup_v = pick("warmup", warmup, None, cfg.warmup)
    timeout_v = pick("timeout_s", timeout, None, cfg.timeout_s)
    stall_v = pick("stall_timeout_s", stall_timeout, None, cfg.stall_timeout_s)
    check_numbers(rounds=rounds_v, warmup=warmup_v, timeout=timeout_v, stall_timeout=stall_v, max_tokens=tokens_v)
    check_matrix(len(resolved_models), len(prompt_list), rounds_v, warmup_v)
    gen = Generation(max_tokens=tokens_v, temperature=gen.temperature, seed=gen.seed, stream=stream_v)
    rdir = pick("results_dir", results_dir, env.get("BENCH_RESULTS_DIR") or None, None)
    if rdir is None:
        rdir = Path(cfg.results_dir)
        if path is not None and not rdir.is_absolute():
            rdir = path.parent / rdir

    return Plan(
        endpoints=endpoints,
        models=resolved_models,
        prompts=prompt_list,
        generation=gen,
        rounds=rounds_v,
        warmup=warmup_v,
        timeout_s=float(timeout_v),
        stall_timeout_s=float(min(stall_v, timeout_v)),
        retries=cfg.retries,
        max_consecutive_failures=cfg.max_consecutive_failures,
        results_dir=Path(rdir),
        config_path=str(path) if path else None,
        overrides=overrides,
        embedded=cfg.embedded,
        prompt_cache=pick("prompt_cache", prompt_cache, None, cfg.prompt_cache),
    )


def plan_from_snapshot(snapshot: Mapping[str, Any], results_dir: Path) -> Plan:
    """The workload a run file was made with (for --resume). Its endpoints are only names here:
    :func:`rebind` takes URLs and credentials from the user's own configuration."""
    try:
        endpoints = {}
        for e in snapshot["endpoints"]:
            e = {k: v for k, v in dict(e).items() if k != "url_redacted"}
            endpoints[str(e["name"])] = Endpoint.model_validate(e)
        return _check_stored(Plan(
            endpoints=endpoints,
            models=[Model.model_validate(m) for m in snapshot["models"]],
            prompts=[Prompt.model_validate(p) for p in snapshot["prompts"]],
            generation=Generation.model_validate(snapshot["generation"]),
            rounds=int(snapshot["rounds"]),
            warmup=int(snapshot["warmup"]),
            timeout_s=float(snapshot["timeout_s"]),
            stall_timeout_s=float(snapshot["stall_timeout_s"]),
            retries=int(snapshot["retries"]),
            max_consecutive_failures=int(snapshot["max_consecutive_failures"]),
            results_dir=results_dir,
            config_path=snapshot.get("config_path"),
            overrides=dict(snapshot.get("overrides") or {}),
            embedded=Embedded.model_validate(snapshot.get("embedded") or {}),
            prompt_cache=str(snapshot.get("prompt_cache") or "cold"),
        ))
    except ValidationError as e:  # its text would repeat the stored values: show only what is wrong
        first = e.errors()[0]
        raise ConfigError(f"the run file's config snapshot is invalid ({'.'.join(map(str, first['loc']))}: "
                          f"{_msg(first)}); start a new run") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"the run file's config snapshot is incomplete or invalid ({str(e)[:200]}); "
                          "start a new run") from None


def rebind(resumed: Plan, current: Plan | None) -> Plan:
    """Servers, keys and model files for a resume come from the user's configuration, never from
    the run file. An endpoint is matched by name, or is the one endpoint the user gave
    (--endpoint, OPENAI_BASE_URL); embedded models other than the built-in ones must be in bench.yaml."""
    mine = dict(current.endpoints) if current else {}
    notes: list[str] = []
    endpoints: dict[str, Endpoint] = {}
    for name, stored in resumed.endpoints.items():
        ep = mine.get(name) or (next(iter(mine.values())) if len(mine) == 1 else None)
        if ep is None:
            raise ConfigError(
                f"the run's endpoint '{name}' is not in your configuration: bench takes servers and keys "
                "only from your bench.yaml, environment or flags, never from a results file; resume with "
                f"--endpoint URL (or define an endpoint named '{name}')")
        if redact_url(ep.base_url) != stored.base_url or ep.api_key_env != stored.api_key_env:
            notes.append(f"endpoint '{name}': the run file says {stored.base_url} (key from "
                         f"{stored.api_key_env}); using {redact_url(ep.base_url)} (key from {ep.api_key_env}) "
                         "from your configuration")
        endpoints[name] = ep.model_copy(update={"name": name})
    own = {m.key: m for m in (current.models if current else [])}
    for m in resumed.models:
        if m.path and not m.path.startswith("builtin:") and (own.get(m.key) is None or own[m.key].path != m.path):
            raise ConfigError(f"model '{m.key}': its file ({m.path}) comes from the run file; bench loads model "
                              "files only from your bench.yaml: add the model there to resume")
    return dataclasses.replace(resumed, endpoints=endpoints, notes=tuple(notes))



def _check_stored(plan: Plan) -> Plan:
    """A run file is untrusted: the numbers it stores get the checks flags get."""
    try:
        check_numbers(rounds=plan.rounds, warmup=plan.warmup, timeout=plan.timeout_s,
                      stall_timeout=plan.stall_timeout_s, max_tokens=plan.generation.max_tokens)
        check_matrix(len(plan.models), len(plan.prompts), plan.rounds, plan.warmup)
    except ConfigError as e:
        raise ConfigError(f"the run file's config snapshot is invalid: {e}; start a new run") from None
    return plan


def load_profiles(config_path: Path | None = None) -> dict[str, Profile]:
    """The shipped selection profiles, overridden and extended by bench.yaml's ``profiles:``."""
    cfg, _ = load_config(config_path)
    return {**DEFAULT_PROFILES, **cfg.profiles}
