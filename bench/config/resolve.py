"""bench.yaml < environment < flags, validated into a :class:`~bench.config.model.Plan`;
and the plan a stored run was made with, rebound to the user's own servers for a resume."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

from pydantic import ValidationError

from bench.config.load import _load_config, _msg, load_config
from bench.config.model import (
    DEFAULT_KEY_ENV,
    MACHINE_NAME,
    Config,
    Embedded,
    Endpoint,
    Generation,
    Model,
    Plan,
    Prompt,
)
from bench.config.profiles import DEFAULT_PROFILES, Profile
from bench.config.prompts import default_prompts, load_prompts_file, normalize_prompts
from bench.config.urls import redact_url
from bench.errors import ConfigError
from bench.runtimes import EMBEDDED_NAME as EMBEDDED
from bench.runtimes.builtin import builtin_models as _builtin_models

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


def _machine(name: str | None) -> str | None:
    """This machine's name (bench.yaml ``machine:``, or BENCH_MACHINE, e.g. per CI runner)."""
    if name is not None and (len(name) > 64 or not re.fullmatch(MACHINE_NAME, name)):
        raise ConfigError(f"machine name {name!r}: use 1-64 letters, digits and ' .:@+()/-', e.g. laptop-16gb")
    return name


def _sessions(value: Any, load: dict[str, Any]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 100:
        raise ConfigError(f"--sessions must be a whole number from 1 to 100; got {value!r}")
    if value > 1 and load:
        raise ConfigError("--sessions repeats the sequential matrix; a load sweep (--concurrency, --rate) takes one "
                          "session: run it again for another")
    return value


def check_matrix(models: int, prompts: int, rounds: int, warmup: int, sessions: int = 1) -> None:
    """Refuse a matrix too large to run before anything builds it."""
    total = models * sessions * (warmup + rounds * prompts)
    if total > MAX_REQUESTS:
        raise ConfigError(
            f"the matrix would make {total:,} requests ({models} model(s) x {sessions} session(s) x ({warmup:,} warmup "
            f"+ {prompts} prompt(s) x {rounds:,} round(s))), over bench's limit of {MAX_REQUESTS:,} per run: "
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


def results_dir(flag: Path | None = None, env: Mapping[str, str] | None = None,
                default: Path = Path("results")) -> Path:
    """Where run files are: the flag, else BENCH_RESULTS_DIR, else ``default`` (the one fallback rule)."""
    env = os.environ if env is None else env
    if flag is not None:
        return Path(flag)
    return Path(env["BENCH_RESULTS_DIR"]) if env.get("BENCH_RESULTS_DIR") else default


class _Picker:
    """Takes each setting from the strongest source that has it, remembering which one did."""

    def __init__(self) -> None:
        self.overrides: dict[str, Any] = {}

    def __call__(self, name: str, flag: Any, env_value: Any, cfg_value: Any) -> Any:
        if flag is not None:
            self.overrides[name] = "flag"
            return flag
        if env_value is not None:
            self.overrides[name] = "env"
            return env_value
        return cfg_value


def _endpoints(cfg: Config, path: Path | None, url: str | None, from_flag: bool) -> dict[str, Endpoint]:
    endpoints = {e.name: e for e in cfg.endpoints}
    if len(endpoints) != len(cfg.endpoints):
        raise ConfigError(f"{path}: two endpoints share a name: give each a unique name")
    if url:
        key_env = cfg.endpoints[0].api_key_env if cfg.endpoints else DEFAULT_KEY_ENV
        source = "--endpoint" if from_flag else "FOUNDRY_LOCAL_ENDPOINT or OPENAI_BASE_URL"
        endpoints = {"default": endpoint_from_url("default", url, key_env, source=source)}
    return endpoints


def _chosen_models(cfg: Config, path: Path | None, names: list[str] | None, endpoints: Mapping[str, Endpoint],
                   builtins: Mapping[str, Model]) -> list[Model]:
    by_key = {m.key: m for m in cfg.models}
    if len(by_key) != len(cfg.models):
        raise ConfigError(
            f"{path}: two models share a name: give each a unique 'label' (the same model on two servers)"
        )
    if names:
        return [by_key.get(n) or (builtins.get(n) if not endpoints else None) or Model(name=n) for n in names]
    if cfg.models:
        return list(cfg.models)
    if not endpoints:
        return list(builtins.values())  # nothing configured: the embedded default models
    return []


def _bind_models(chosen: list[Model], path: Path | None, endpoints: Mapping[str, Endpoint], url: str | None,
                 builtins: Mapping[str, Model], require_endpoint: bool) -> list[Model]:
    """Each model with the endpoint that serves it (or the embedded runtime)."""
    first = next(iter(endpoints), None)
    resolved = []
    for m in chosen:
        if m.embedded and not url:
            resolved.append(m.model_copy(update={"endpoint": EMBEDDED}))
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
        resolved.append(m.model_copy(update={"endpoint": ep}))
    if require_endpoint and not resolved:
        raise ConfigError(
            "no models to benchmark: pass --models a,b (as the server names them), set BENCH_MODELS, "
            "or list models in bench.yaml; `bench models --endpoint URL` shows what a server has"
        )
    return resolved


def _prompts(cfg: Config, path: Path | None, raw: Any, prompts: Path | None, pick: _Picker) -> list[Prompt]:
    if prompts is not None:
        pick.overrides["prompts"] = "flag"
        return load_prompts_file(prompts)
    if cfg.prompts is not None:
        return normalize_prompts(list(cfg.prompts), str(path), raw.get("prompts") if raw else None)
    if cfg.prompts_file:
        base = path.parent if path else Path(".")
        return load_prompts_file(base / cfg.prompts_file)
    return default_prompts()


def resolve(
    config_path: Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    endpoint: str | None = None,
    models: str | None = None,
    prompts: Path | None = None,
    rounds: int | None = None,
    warmup: int | None = None,
    sessions: int | None = None,
    max_tokens: int | None = None,
    timeout: float | None = None,
    stall_timeout: float | None = None,
    results_dir: Path | None = None,
    stream: bool | None = None,
    prompt_cache: str | None = None,
    require_endpoint: bool = True,
    **load_flags: Any,
) -> Plan:
    """bench.yaml < environment < flags, validated into a :class:`Plan`. ``load_flags``: a load
    sweep's concurrency / rate, requests_per_level, duration, max_in_flight (see _load_params)."""
    env = os.environ if env is None else env
    load = _load_params(**load_flags)
    cfg, path, raw = _load_config(config_path)
    pick = _Picker()
    endpoints, resolved_models = _where_and_what(cfg, path, pick, env, endpoint, models, require_endpoint)
    prompt_list = _prompts(cfg, path, raw, prompts, pick)

    gen = cfg.generation
    stream_v = pick("stream", stream, _env_bool(env, "BENCH_STREAM"), gen.stream)
    tokens_v = pick("max_tokens", max_tokens, None, gen.max_tokens)
    rounds_v = pick("rounds", rounds, None, cfg.rounds)
    warmup_v = pick("warmup", warmup, None, cfg.warmup)
    timeout_v = pick("timeout_s", timeout, None, cfg.timeout_s)
    stall_v = pick("stall_timeout_s", stall_timeout, None, cfg.stall_timeout_s)
    check_numbers(rounds=rounds_v, warmup=warmup_v, timeout=timeout_v, stall_timeout=stall_v, max_tokens=tokens_v)
    sessions_v = _sessions(pick("sessions", sessions, None, cfg.sessions), load)
    check_matrix(len(resolved_models), len(prompt_list), rounds_v, warmup_v, sessions_v)
    rdir = pick("results_dir", results_dir, env.get("BENCH_RESULTS_DIR") or None, None) or _configured_dir(cfg, path)
    return Plan(
        endpoints=endpoints,
        models=resolved_models,
        prompts=prompt_list,
        generation=Generation(max_tokens=tokens_v, temperature=gen.temperature, seed=gen.seed, stream=stream_v),
        rounds=rounds_v,
        warmup=warmup_v,
        timeout_s=float(timeout_v),
        stall_timeout_s=float(min(stall_v, timeout_v)),
        retries=cfg.retries,
        max_consecutive_failures=cfg.max_consecutive_failures,
        results_dir=Path(rdir),
        config_path=str(path) if path else None,
        overrides=pick.overrides,
        embedded=cfg.embedded,
        prompt_cache=pick("prompt_cache", prompt_cache, None, cfg.prompt_cache),
        scenario=("rate" if "rates" in load else "concurrency") if load else "sequential",
        load={**load, "seed": gen.seed if gen.seed is not None else 0} if load else {},
        machine_name=_machine(pick("machine", None, env.get("BENCH_MACHINE") or None, cfg.machine)),
        sessions=sessions_v,
    )


def _where_and_what(cfg: Any, path: Path | None, pick: Any, env: Mapping[str, str], endpoint: str | None,
                    models: str | None, require_endpoint: bool) -> tuple[dict[str, Endpoint], list[Model]]:
    """The endpoints and the models bound to them (bench.yaml < environment < flags)."""
    url = pick("endpoint", endpoint, env.get("FOUNDRY_LOCAL_ENDPOINT") or env.get("OPENAI_BASE_URL") or None, None)
    endpoints = _endpoints(cfg, path, url, endpoint is not None)
    builtins = {m["name"]: Model.model_validate(m) for m in _builtin_models()}
    names = pick("models", _split_names(models), _split_names(env.get("BENCH_MODELS")), None)
    chosen = _chosen_models(cfg, path, names, endpoints, builtins)
    return endpoints, _bind_models(chosen, path, endpoints, url, builtins, require_endpoint)


def _configured_dir(cfg: Any, path: Path | None) -> Path:
    """bench.yaml's results_dir, relative to bench.yaml."""
    rdir = Path(cfg.results_dir)
    return rdir if path is None or rdir.is_absolute() else path.parent / rdir


def _load_params(concurrency: list[int] | None = None, requests_per_level: int | None = None,
                 rate: list[float] | None = None, duration: float | None = None,
                 max_in_flight: int | None = None) -> dict[str, Any]:
    """The load scenario's parameters from the flags (checked by the scenario before any request)."""
    if concurrency and rate:
        raise ConfigError("--concurrency (closed loop) and --rate (open loop) are two kinds of sweep: choose one")
    if (duration is not None or max_in_flight is not None) and not rate:
        raise ConfigError("--duration and --max-in-flight belong to an open-loop sweep: give --rate too")
    if requests_per_level is not None and not (concurrency or rate):
        raise ConfigError("--requests-per-level is the size of each --concurrency or --rate level: give one of them")
    if duration is not None and requests_per_level is not None:
        raise ConfigError("--duration and --requests-per-level both size a level: give one")
    n = 32 if requests_per_level is None else requests_per_level
    if rate:
        return {"rates": list(rate), "requests_per_level": n, "max_in_flight": 256 if max_in_flight is None
                else max_in_flight, **({"duration_s": duration} if duration is not None else {})}
    return {"levels": list(concurrency), "requests_per_level": n} if concurrency else {}


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
            sessions=int(snapshot.get("sessions", 1)),
            timeout_s=float(snapshot["timeout_s"]),
            stall_timeout_s=float(snapshot["stall_timeout_s"]),
            retries=int(snapshot["retries"]),
            max_consecutive_failures=int(snapshot["max_consecutive_failures"]),
            results_dir=results_dir,
            config_path=snapshot.get("config_path"),
            overrides=dict(snapshot.get("overrides") or {}),
            embedded=Embedded.model_validate(snapshot.get("embedded") or {}),
            prompt_cache=str(snapshot.get("prompt_cache") or "cold"),
            scenario=str(snapshot.get("scenario") or "sequential"),
            load=dict(snapshot.get("load") or {}),
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
        if redact_url(ep.base_url or "") != (stored.base_url or "") or ep.api_key_env != stored.api_key_env:
            notes.append(f"endpoint '{name}': the run file says {stored.base_url} (key from "
                         f"{stored.api_key_env}); using {redact_url(ep.base_url or '')} (key from {ep.api_key_env}) "
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
        check_matrix(len(plan.models), len(plan.prompts), plan.rounds, plan.warmup, plan.sessions)
    except ConfigError as e:
        raise ConfigError(f"the run file's config snapshot is invalid: {e}; start a new run") from None
    return plan


def load_slo(config_path: Path | None = None) -> str | None:
    """bench.yaml's ``slo:`` (service-level objectives for bench capacity), if any."""
    cfg, _ = load_config(config_path)
    return cfg.slo


def load_site_run_pages(config_path: Path | None = None) -> int:
    """bench.yaml's ``site_run_pages:``: how many of each machine's newest runs get a page."""
    cfg, _ = load_config(config_path)
    return cfg.site_run_pages


def load_profiles(config_path: Path | None = None) -> dict[str, Profile]:
    """The shipped selection profiles, overridden and extended by bench.yaml's ``profiles:``."""
    cfg, _ = load_config(config_path)
    return {**DEFAULT_PROFILES, **cfg.profiles}
