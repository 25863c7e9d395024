"""Everything outside bench is untrusted: each bad input below ends in one clean ``error:`` line
and an exit code, never a traceback, and no message ever shows a secret from a URL.

The real CLI runs in-process (CliRunner with catch_exceptions=False): a traceback fails the test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Script, cli, collect

CANARY = "s3cr3t-CANARY-7f1d"


def one_error_line(r, code: int) -> str:
    """The run ended with exactly one 'error:' line on stderr and ``code``; returns that line."""
    assert "Traceback" not in r.output
    assert r.exit_code == code, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def no_canary(r) -> None:
    for text in (r.output, r.stdout, r.stderr):
        assert CANARY not in text, text


# ----------------------------------------------------------------------------- endpoint URLs

BAD_URLS = {
    "port out of range": (f"http://user:{CANARY}@127.0.0.1:99999/v1?api_key={CANARY}", "port 99999"),
    "port not a number": (f"http://user:{CANARY}@127.0.0.1:abc/v1?api_key={CANARY}", "port"),
    "bad IPv6 literal": (f"http://user:{CANARY}@[::1/v1?api_key={CANARY}", "IPv6"),
    "mistyped scheme": (f"htp://user:{CANARY}@host/v1?api_key={CANARY}", "http:// or https://"),
    "no scheme": (f"user:{CANARY}@host/v1?api_key={CANARY}", "http:// or https://"),
    "no host": (f"http://user:{CANARY}@/v1?api_key={CANARY}", "host"),
    "port zero": (f"http://user:{CANARY}@127.0.0.1:0/v1?api_key={CANARY}", "port 0"),
    "space in host": (f"http://user:{CANARY}@my host/v1?api_key={CANARY}", "space"),
    "bad IPv4 address": (f"http://user:{CANARY}@256.1.1.1/v1?api_key={CANARY}", "IPv4"),
    "non-ASCII host": (f"http://user:{CANARY}@ﬀ.example/v1?api_key={CANARY}", "punycode"),
}


@pytest.fixture
def a_run(server):
    """A partial run in ./results (judge and resume need one): 'gone' is not served."""
    server.set_model("m", Script())
    out = collect(server, "m,gone", rounds=1, warmup=0)
    assert out.run.status == "partial"
    return out


def _url_commands(url: str, run_id: str) -> dict[str, tuple[list[str], dict]]:
    return {
        "collect --endpoint": (["collect", "--endpoint", url, "--models", "m", "-q"], {}),
        "collect with OPENAI_BASE_URL": (["collect", "--models", "m", "-q"], {"OPENAI_BASE_URL": url}),
        "collect --resume --endpoint": (["collect", "--resume", run_id, "--endpoint", url, "-q"], {}),
        "models --endpoint": (["models", "--endpoint", url, "--models", "m"], {}),
        "judge --endpoint": (["judge", run_id, "--endpoint", url, "--model", "j"], {}),
    }


@pytest.mark.parametrize("case", BAD_URLS)
def test_bad_url_is_one_redacted_line_in_every_command(case, a_run):
    url, expected = BAD_URLS[case]
    for name, (args, env) in _url_commands(url, a_run.run.run_id).items():
        r = cli(*args, env=env)
        line = one_error_line(r, 2)
        no_canary(r)
        assert expected in line, (name, line)
        assert "http://HOST:PORT/v1" in line, (name, line)  # says what to pass instead


@pytest.mark.parametrize("case", BAD_URLS)
def test_bad_url_in_bench_yaml_is_one_redacted_line(case):
    url, expected = BAD_URLS[case]
    Path("bench.yaml").write_text(
        f"endpoints:\n  - name: lab\n    base_url: '{url}'\nmodels:\n  - name: m\n")
    for args in (["collect", "-q"], ["models"]):
        r = cli(*args)
        line = one_error_line(r, 2)
        no_canary(r)
        assert line.startswith("error: bench.yaml:3: endpoints.0.base_url:") and expected in line, line


def test_redact_url_never_raises_and_never_shows_secrets():
    from bench.config import redact_url

    for url, _ in BAD_URLS.values():
        shown = redact_url(url)
        assert CANARY not in shown and "user" not in shown, shown
    assert redact_url(f"http://u:{CANARY}@Host:8080/v1?k={CANARY}#{CANARY}") == "http://host:8080/v1"
