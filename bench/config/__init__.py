"""Configuration: bench.yaml, the environment and flags become one typed :class:`Plan`.

Precedence, weakest first: bench.yaml < environment < command-line flags. Modules: ``model`` (the
types), ``urls`` (endpoint URL checks and redaction), ``load`` (reading bench.yaml), ``prompts``
(prompt sets), ``profiles`` (selection-framework profiles), ``resolve`` (merging the three sources,
and rebinding a stored plan for a resume).
"""

from bench.config.load import load_config
from bench.config.model import (
                                DEFAULT_KEY_ENV,
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
from bench.config.resolve import (
                                MAX_REQUESTS,
                                check_seconds,
                                endpoint_from_url,
                                load_profiles,
                                load_site_run_pages,
                                load_slo,
                                plan_from_snapshot,
                                rebind,
                                resolve,
                                results_dir,
)
from bench.config.urls import check_base_url, redact_url

__all__ = [
    "DEFAULT_KEY_ENV", "DEFAULT_PROFILES", "MAX_REQUESTS", "Config", "Embedded", "Endpoint", "Generation",
    "Model", "Plan", "Profile", "Prompt", "check_base_url", "check_seconds", "default_prompts",
    "endpoint_from_url", "load_config", "load_profiles", "load_site_run_pages", "load_slo",
    "load_prompts_file", "normalize_prompts",
    "plan_from_snapshot", "rebind", "redact_url", "resolve", "results_dir",
]
