"""bench.yaml loading, validation with file:line, and the precedence yaml < env < flags."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.config import default_prompts, load_prompts_file, redact_url, resolve
from bench.errors import ConfigError

YAML = """\
endpoints:
  - name: lab
    base_url: http://127.0.0.1:9999/v1
    api_key_env: LAB_KEY
models:
  - name: qwen2.5-0.5b
    license: Apache-2.0
    capabilities: [summarize]
  - name: phi-4-mini
generation:
  max_tokens: 64
rounds: 2
"""


def write(tmp_path: Path, text: str, name: str = "bench.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_defaults_and_shipped_prompts(tmp_path):
    plan = resolve(write(tmp_path, YAML), env={})
    assert [m.name for m in plan.models] == ["qwen2.5-0.5b", "phi-4-mini"]
    assert plan.models[0].license == "Apache-2.0" and plan.models[0].endpoint == "lab"
    assert plan.generation.max_tokens == 64 and plan.generation.temperature == 0
    assert plan.generation.stream is True
    assert (plan.rounds, plan.warmup) == (2, 1)
    assert plan.stall_timeout_s > 0  # a default stall timeout always applies
    texts = [p.text for p in plan.prompts]
    assert texts[0] == "Explain the principle of retrieval augmented generation in 2 sentences."
    assert len(texts) == 4 and len({p.id for p in plan.prompts}) == 4


def test_bench_yaml_in_cwd_is_picked_up(tmp_path):
    write(tmp_path, YAML)
    assert resolve(None, env={}).endpoints["lab"].base_url == "http://127.0.0.1:9999/v1"


def test_precedence_yaml_env_flags(tmp_path):
    cfg = write(tmp_path, YAML)
    env = {"BENCH_MODELS": "a,b", "OPENAI_BASE_URL": "http://env:1/v1", "BENCH_STREAM": "0",
           "BENCH_RESULTS_DIR": str(tmp_path / "env-results")}
    plan = resolve(cfg, env=env)
    assert [m.name for m in plan.models] == ["a", "b"]
    assert [e.base_url for e in plan.endpoints.values()] == ["http://env:1/v1"]
    assert plan.endpoints["default"].api_key_env == "LAB_KEY"
    assert plan.generation.stream is False
    assert plan.results_dir == tmp_path / "env-results"
    plan = resolve(cfg, env=env, models="qwen2.5-0.5b", endpoint="http://flag:2/v1", stream=True,
                   rounds=5, results_dir=tmp_path / "flag")
    assert [m.name for m in plan.models] == ["qwen2.5-0.5b"]
    assert plan.models[0].license == "Apache-2.0"  # the yaml entry is kept, rebound to the endpoint
    assert plan.endpoint_of(plan.models[0]).base_url == "http://flag:2/v1"
    assert plan.generation.stream is True and plan.rounds == 5
    assert plan.overrides["endpoint"] == "flag" and plan.overrides["models"] == "flag"


def test_foundry_endpoint_env_wins_over_openai_base_url(tmp_path):
    plan = resolve(None, env={"FOUNDRY_LOCAL_ENDPOINT": "http://foundry:5555/v1",
                              "OPENAI_BASE_URL": "http://other/v1", "BENCH_MODELS": "x"})
    assert plan.endpoints["default"].base_url == "http://foundry:5555/v1"


def test_malformed_yaml_names_file_and_line(tmp_path):
    cfg = write(tmp_path, "models:\n  - name: a\n    license: [unclosed\nrounds: 2\n")
    with pytest.raises(ConfigError, match=r"bench\.yaml:\d+:\d+: malformed YAML"):
        resolve(cfg, env={})


def test_unknown_key_names_line_and_allowed_keys(tmp_path):
    cfg = write(tmp_path, YAML.replace("    license: Apache-2.0", "    licence: Apache-2.0"))
    with pytest.raises(ConfigError) as e:
        resolve(cfg, env={})
    msg = str(e.value)
    assert "bench.yaml:7" in msg and "unknown key 'licence'" in msg and "license" in msg


def test_unknown_top_level_key(tmp_path):
    cfg = write(tmp_path, YAML + "modles: []\n")
    with pytest.raises(ConfigError, match=r"bench\.yaml:13: unknown key 'modles'"):
        resolve(cfg, env={})


@pytest.mark.parametrize("flag,value,message", [
    ("rounds", 0, "--rounds must be at least 1"),
    ("warmup", -1, "--warmup must be at least 0"),
    ("max_tokens", 0, "--max-tokens must be at least 1"),
    ("timeout", 0, "--timeout must be a positive, finite number of seconds"),
])
def test_bad_numbers(tmp_path, flag, value, message):
    with pytest.raises(ConfigError, match=message):
        resolve(write(tmp_path, YAML), env={}, **{flag: value})


def test_rounds_below_one_in_yaml(tmp_path):
    with pytest.raises(ConfigError, match=r"bench\.yaml:12: rounds: Input should be greater than or equal to 1"):
        resolve(write(tmp_path, YAML.replace("rounds: 2", "rounds: 0")), env={})


def test_api_key_env_must_be_a_name_not_a_key(tmp_path):
    cfg = write(tmp_path, YAML.replace("LAB_KEY", "sk-abc123/secret"))
    with pytest.raises(ConfigError, match="NAME of an environment variable"):
        resolve(cfg, env={})


def test_bad_bench_stream_value(tmp_path):
    with pytest.raises(ConfigError, match="BENCH_STREAM='maybe': use 0 or 1"):
        resolve(write(tmp_path, YAML), env={"BENCH_STREAM": "maybe"})


def test_no_endpoint_and_no_models_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="no endpoint for model 'x': pass --endpoint"):
        resolve(None, env={"BENCH_MODELS": "x"})
    with pytest.raises(ConfigError, match="--models"):
        resolve(None, env={"OPENAI_BASE_URL": "http://h/v1"})


def test_model_pointing_at_undefined_endpoint(tmp_path):
    cfg = write(tmp_path, YAML.replace("  - name: phi-4-mini", "  - name: phi-4-mini\n    endpoint: nowhere"))
    with pytest.raises(ConfigError, match="names endpoint 'nowhere'"):
        resolve(cfg, env={})


def test_same_model_on_two_servers_needs_labels(tmp_path):
    text = YAML.replace("generation:", "  - name: qwen2.5-0.5b\n    endpoint: lab\ngeneration:")
    with pytest.raises(ConfigError, match="label"):
        resolve(write(tmp_path, text), env={})
    text = text.replace("    endpoint: lab\ngeneration", "    endpoint: lab\n    label: qwen-on-lab\ngeneration")
    assert [m.key for m in resolve(write(tmp_path, text), env={}).models][-1] == "qwen-on-lab"


def test_prompts_file_strings_and_objects(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps(["Say hi.", "Say hi.", "Count to 3."]))
    prompts = load_prompts_file(tmp_path / "p.json")
    assert [p.id for p in prompts] == ["say-hi", "say-hi-2", "count-to-3"]
    (tmp_path / "p.yaml").write_text("- id: a\n  text: One\n  rubric: {facets: [{any: [x]}]}\n- Two\n")
    prompts = load_prompts_file(tmp_path / "p.yaml")
    assert [(p.id, p.text) for p in prompts] == [("a", "One"), ("two", "Two")]
    assert prompts[0].rubric == {"facets": [{"any": ["x"]}]}


@pytest.mark.parametrize("content,message", [
    ("[]", "non-empty list"),
    ('{"a": 1}', "non-empty list"),
    ('[{"id": "a"}]', "text"),
    ('[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]', "duplicate prompt ids a"),
    ('[{"text": "x", "colour": 1}]', "colour"),
    ("[1,", "malformed JSON"),
])
def test_bad_prompts_files(tmp_path, content, message):
    (tmp_path / "p.json").write_text(content)
    with pytest.raises(ConfigError, match=message):
        load_prompts_file(tmp_path / "p.json")


def test_shipped_prompts_have_stable_ids():
    assert [p.id for p in default_prompts()] == [
        "rag-two-sentences", "privacy-benefits", "size-latency", "slm-scenarios"]


def test_snapshot_holds_no_secret_and_no_credentials_in_urls(tmp_path):
    plan = resolve(None, env={"OPENAI_API_KEY": "sk-canary-123"}, models="m",
                   endpoint="https://user:pw@api.example.com:8443/v1?api-key=sk-canary-123")
    text = json.dumps(plan.snapshot())
    assert "sk-canary-123" not in text and "pw" not in text
    assert plan.snapshot()["endpoints"][0]["base_url"] == "https://api.example.com:8443/v1"
    assert redact_url("http://[::1]:8080/v1") == "http://[::1]:8080/v1"


def test_shipped_example_config_is_valid():
    from bench.config import load_config

    cfg, _ = load_config(Path(__file__).resolve().parent.parent / "bench.example.yaml")
    assert len(cfg.endpoints) == 3 and cfg.models[2].path
